"""Salesforce emulator of ``crmsync sandbox``: REST, SOQL, Collections and Bulk API 2.0.

Entry point: :func:`build_emulator` returns the :class:`SalesforceEmulator` the core mounts.
Module map: ``schema`` (objects, ids, values), ``soql`` (grammar and AST), ``compiler`` (AST to
SQL), ``store`` (tables, the write path, cursors, seed), ``rest`` and ``bulk`` (handlers),
``http`` (wire helpers), ``emulator`` (routes, auth, API usage, core hooks).
"""

from __future__ import annotations

from crmsync_sandbox.context import SandboxContext
from crmsync_sandbox.salesforce.emulator import SalesforceEmulator

__all__ = ["SalesforceEmulator", "build_emulator"]


def build_emulator(ctx: SandboxContext) -> SalesforceEmulator:
    """Create the emulator's tables in ``ctx.db`` and return it (routes via ``.routes()``)."""
    return SalesforceEmulator(ctx)
