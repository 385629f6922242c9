"""Incoming CRM webhooks, the pure part: signature checks and wire parsing (no I/O).

The HTTP routes (:mod:`app.api.routes.webhooks`) verify and parse with these functions, store
each event in the inbox (:mod:`app.db.inbox_store`) and answer; processing happens later
(:mod:`app.wiring.webhook_processing`). docs/webhooks.md describes the wire formats.
"""
