"""Hand a replayed webhook event over to the processing.

A replay only puts the event back to ``received`` (due now): the inbox row is the truth. In
the API process with the embedded webhook worker (``app.state.webhook_runner``), the event is
also handed to that worker at once (``notified``); otherwise (the CLI, a separate job worker)
the next inbox sweep picks it up (``queued``).
"""

from __future__ import annotations


def hand_over(runner: object | None, event_id: int) -> str:
    """``notified`` when a running worker took the id, else ``queued`` (for the sweep)."""
    notify = getattr(runner, "notify", None)
    if notify is None:
        return "queued"
    notify([event_id])
    return "notified"
