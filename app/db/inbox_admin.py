"""The webhook inbox as admins see and repair it: events by status (newest first, id cursor)
and replaying one, which puts it back in the queue (``received``) for processing.

Statuses are :class:`app.db.enums.InboxStatus`: ``received -> processing -> done | failed
(retried) -> dead``, or ``ignored``. ``pending`` in a filter means not finished: ``received``,
``processing`` or ``failed``. Replaying an event that is ``dead``, ``failed``, ``done`` or
``ignored`` resets its attempts and clears when it was handled; its last error stays until the
next attempt overwrites it. Processing is idempotent per event (the inbox row is the truth), so
replaying a ``done`` event does no double work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.audit import record_audit
from app.db.base import utcnow
from app.db.enums import PENDING, InboxStatus
from app.db.enums import STATUS_FILTERS as STATUS_FILTERS  # defined beside the enum
from app.db.models import WebhookEvent

PENDING_STATUSES = (InboxStatus.RECEIVED, InboxStatus.PROCESSING, InboxStatus.FAILED)
REPLAYABLE = (InboxStatus.DEAD, InboxStatus.FAILED, InboxStatus.DONE, InboxStatus.IGNORED)


class EventNotFound(LookupError):
    pass


class NotReplayable(ValueError):
    pass


def statuses_of(name: str) -> list[str]:
    """The stored statuses a filter value means (``pending``: the three unfinished ones)."""
    if name == PENDING:
        return [s.value for s in PENDING_STATUSES]
    return [InboxStatus(name).value]


def list_inbox(
    session: Session,
    *,
    status: str | None = None,
    source: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Sequence[WebhookEvent]:
    stmt = select(WebhookEvent)
    if status is not None:
        stmt = stmt.where(WebhookEvent.status.in_(statuses_of(status)))
    if source is not None:
        stmt = stmt.where(WebhookEvent.source == source)
    if before_id is not None:
        stmt = stmt.where(WebhookEvent.id < before_id)
    return session.scalars(stmt.order_by(WebhookEvent.id.desc()).limit(limit)).all()


def inbox_counts(session: Session) -> dict[str, int]:
    """Events per stored status (every status listed, zeros included)."""
    counts = {s.value: 0 for s in InboxStatus}
    rows = session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
    ).all()
    for status, count in rows:
        counts[str(status)] = int(count)
    return counts


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


#: States whose note says what processing did (``plan 7 (full, low, 13 tasks), ...``,
#: ``not won in the CRM now``) rather than why it failed.
_SETTLED = (InboxStatus.DONE.value, InboxStatus.IGNORED.value)


def event_dict(event: WebhookEvent, *, body: bool = True) -> dict[str, Any]:
    """An event as listed: never its headers (they carry the sender's signature).

    The inbox keeps one note per attempt. For a ``done`` or ``ignored`` event it is the
    outcome, shown as ``outcome``; otherwise it is the last failure, shown as ``last_error``:
    an admin must not read "plan 7 created" under an error heading.
    """
    settled = event.status in _SETTLED
    out: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "external_id": event.external_id,
        "event_type": event.event_type,
        "object_id": event.object_id,
        "status": event.status,
        "attempts": event.attempts,
        "occurred_at": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
        "next_attempt_at": _iso(event.next_attempt_at),
        "handled_at": _iso(event.handled_at),
        "outcome": event.last_error if settled else None,
        "last_error": None if settled else event.last_error,
    }
    if body:
        out["body"] = event.raw_body
    return out


#: Header names (lower case) whose value is a credential: never shown, even to admins.
_SECRET_HEADER_WORDS = ("signature", "authorization", "secret", "token", "cookie", "api-key")


def event_headers(event: WebhookEvent) -> dict[str, str]:
    """The stored request headers for display, with signatures and credentials masked (a
    signature lets whoever holds it replay the request to the receiver)."""
    out: dict[str, str] = {}
    for name, value in sorted((event.headers or {}).items()):
        lowered = str(name).lower()
        secret = any(word in lowered for word in _SECRET_HEADER_WORDS)
        out[str(name)] = "•••• (hidden)" if secret else str(value)
    return out


def get_event(session: Session, event_id: int) -> WebhookEvent:
    event = session.get(WebhookEvent, event_id)
    if event is None:
        raise EventNotFound(f"webhook event {event_id} not found")
    return event


def replay_event(
    session: Session, event_id: int, *, actor: str, now: datetime | None = None
) -> WebhookEvent:
    """Put an event back to ``received`` (due now), audited; commits both."""
    event = get_event(session, event_id)
    if event.status not in {s.value for s in REPLAYABLE}:
        raise NotReplayable(
            f"webhook event {event_id} is {event.status}: it is already queued or being "
            "processed; only dead, failed, done or ignored events are replayed"
        )
    was = event.status
    now = now or utcnow()
    event.status = InboxStatus.RECEIVED.value
    event.attempts = 0
    event.next_attempt_at = now
    event.handled_at = None
    record_audit(
        session,
        actor,
        "webhook_event.replay",
        f"webhook_event:{event.id}",
        {"was": was, "source": event.source, "external_id": event.external_id},
    )
    session.commit()
    return event
