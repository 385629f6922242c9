"""Composition roots: build the engine's ports (SQL store, CRM clients, mappings) from settings.

The only package that knows both the engine (``app.sync``) and its adapters (``app.db``,
``app.crm``); the CLI, the API and jobs call into it.
"""
