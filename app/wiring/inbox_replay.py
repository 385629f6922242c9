"""Hand a replayed webhook event to the processing, when this build has it.

The webhook processing (``process_inbox_event(event_id)`` in :mod:`app.wiring.webhook_processing`)
is built alongside (issue #20); until it is there, or when it fails, the event simply stays
``received`` in the inbox, where the inbox sweep picks it up: the inbox row is the truth.
"""

from __future__ import annotations

import importlib

from app.logging import get_logger

log = get_logger("crmsync.inbox")


def process_now(event_id: int) -> str:
    """Hand a replayed event to the webhook processing if this build has it: ``processed``,
    ``queued`` (left for the sweep), or ``failed: ...`` (it stays in the inbox, retried)."""
    try:
        module = importlib.import_module("app.wiring.webhook_processing")
    except ImportError:
        return "queued"
    process = getattr(module, "process_inbox_event", None)
    if process is None:
        return "queued"
    try:
        process(event_id)
    except Exception as exc:  # the inbox row is the truth: the sweep retries it
        log.exception("inbox.replay.process_failed", event_id=event_id)
        return f"failed: {type(exc).__name__}: {exc}"
    return "processed"
