"""The webhook inbox (``webhook_inbox``): store first, act later, exactly once.

A delivery's events are inserted in the request's own transaction with ``INSERT ... ON CONFLICT
(source, external_id) DO NOTHING`` (one statement per request, both databases), so a duplicate
delivery, even 50 of them at once, stores one row and the others see it as a duplicate; the
answer goes out only after the commit.

Processing takes an event with :func:`claim_many`: one conditional ``UPDATE`` that moves it to
``processing`` and sets ``next_attempt_at`` to the end of a lease. Whoever's ``UPDATE`` matched
owns the attempt; an attempt whose process died (kill -9) is simply due again when its lease
ends, and the sweeper (:func:`due_ids`) finds it. States (``app.db.enums.InboxStatus``):
``received`` -> ``processing`` -> ``done`` | ``ignored`` | ``failed`` (retried with backoff) ->
``dead`` after the last attempt, with its error; :func:`retry` puts a dead event back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db.enums import InboxStatus
from app.db.models import WebhookEvent

__all__ = [
    "CLAIMABLE",
    "InboxRow",
    "StoredDelivery",
    "claim_many",
    "counts_by_status",
    "due_ids",
    "fail",
    "finish",
    "finish_many",
    "insert_events",
    "renew_lease",
    "retry",
]

#: States an event can be claimed from (``processing``: its lease ran out, the worker died).
CLAIMABLE = (InboxStatus.RECEIVED.value, InboxStatus.FAILED.value, InboxStatus.PROCESSING.value)


@dataclass(frozen=True)
class InboxRow:
    """What the request path stores per event (``payload`` becomes ``raw_body``)."""

    source: str
    external_id: str
    event_type: str | None
    object_id: str | None
    occurred_at: datetime | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class StoredDelivery:
    """The outcome of one request: the ids of new rows; how many were already there."""

    new_ids: list[int]
    duplicates: int


def insert_events(
    session: Session,
    rows: Sequence[InboxRow],
    *,
    now: datetime,
    headers: Mapping[str, str] | None = None,
) -> StoredDelivery:
    """Insert ``rows`` (not committed); a row whose (source, external_id) is stored is skipped.

    The same key twice in one request counts once. New rows are ``received`` and due now."""
    unique: dict[tuple[str, str], InboxRow] = {}
    for row in rows:
        unique.setdefault((row.source, row.external_id), row)
    if not unique:
        return StoredDelivery([], 0)
    kept_headers = dict(headers or {})
    values = [
        {
            "source": r.source,
            "external_id": r.external_id[:128],
            "event_type": (r.event_type or None) and r.event_type[:64],
            "object_id": (r.object_id or None) and r.object_id[:64],
            "occurred_at": r.occurred_at,
            "received_at": now,
            "headers": kept_headers,
            "raw_body": json.dumps(r.payload, separators=(",", ":"), default=str),
            "status": InboxStatus.RECEIVED.value,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for r in unique.values()
    ]
    connection = session.connection()
    # One cached Core statement run as an executemany on the session's connection (no ORM
    # bulk-insert bookkeeping per row): SQLAlchemy batches it into multi-row INSERTs
    # ("insertmanyvalues") with RETURNING, so only the rows actually inserted come back.
    stmt = _INSERTS[connection.dialect.name == "postgresql"]
    new_ids = [int(i) for i in connection.execute(stmt, values).scalars()]
    return StoredDelivery(sorted(new_ids), len(rows) - len(new_ids))


_TABLE = cast(Table, WebhookEvent.__table__)
#: The inbox INSERT per dialect (PostgreSQL: True), built once.
_INSERTS = {
    postgres: maker(_TABLE)
    .on_conflict_do_nothing(index_elements=["source", "external_id"])
    .returning(_TABLE.c.id)
    for postgres, maker in ((True, pg_insert), (False, sqlite_insert))
}


def due_ids(session: Session, now: datetime, limit: int = 100) -> list[int]:
    """Events to (re)try now: received, failed or abandoned while processing, oldest first."""
    query = (
        select(WebhookEvent.id)
        .where(WebhookEvent.status.in_(CLAIMABLE), WebhookEvent.next_attempt_at <= now)
        .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
        .limit(limit)
    )
    return [int(i) for i in session.scalars(query)]


def claim_many(
    session: Session, event_ids: Sequence[int], now: datetime, lease: timedelta
) -> list[int]:
    """Take one attempt at each of ``event_ids`` in one ``UPDATE .. RETURNING`` (committed): the
    ids this caller owns now (the others are finished, held by another worker or not due)."""
    if not event_ids:
        return []
    result = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id.in_(sorted(set(event_ids))),
            WebhookEvent.status.in_(CLAIMABLE),
            WebhookEvent.next_attempt_at <= now,
        )
        .values(
            status=InboxStatus.PROCESSING.value,
            attempts=WebhookEvent.attempts + 1,
            next_attempt_at=now + lease,
        )
        .returning(WebhookEvent.id)
        .execution_options(synchronize_session=False)
    )
    owned = sorted(int(i) for i in result.scalars())
    session.commit()
    return owned


def finish(
    session: Session, event: WebhookEvent, status: InboxStatus, now: datetime, note: str | None
) -> None:
    """Close the attempt (not committed: the caller commits it with the work it did)."""
    event.status = status.value
    event.handled_at = now
    event.next_attempt_at = None
    event.last_error = note


def finish_many(
    session: Session, outcomes: Sequence[tuple[int, InboxStatus, str | None]], now: datetime
) -> None:
    """:func:`finish` for many events by id, in one executemany ``UPDATE`` (not committed: the
    caller commits it with the work the events did)."""
    if not outcomes:
        return
    session.connection().execute(
        _FINISH,
        [
            {"b_id": event_id, "b_status": status.value, "b_now": now, "b_note": note}
            for event_id, status, note in outcomes
        ],
    )


_FINISH = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        handled_at=bindparam("b_now"),
        next_attempt_at=None,
        last_error=bindparam("b_note"),
    )
)


def renew_lease(session: Session, event_ids: Sequence[int], now: datetime, lease: timedelta) -> int:
    """Move the lease of ``event_ids`` still ``processing`` to ``now + lease`` (not committed).

    The webhook worker's batch transaction starts with it: on SQLite, a write first takes the
    database's write lock, so every read of the batch (plans, loads) sees what the commit will
    build on; on PostgreSQL it locks the batch's own inbox rows. Returns the rows renewed."""
    if not event_ids:
        return 0
    result = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id.in_(sorted(set(event_ids))),
            WebhookEvent.status == InboxStatus.PROCESSING.value,
        )
        .values(next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def fail(
    session: Session,
    event_id: int,
    error: str,
    now: datetime,
    *,
    max_attempts: int,
    backoff: timedelta,
    backoff_cap: timedelta,
) -> str:
    """Record a failed attempt (committed): ``failed`` with its next try after an exponential
    backoff, or ``dead`` once ``max_attempts`` were made. Returns the new status."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return "missing"
    event.last_error = error[:4000]
    if event.attempts >= max_attempts:
        event.status = InboxStatus.DEAD.value
        event.next_attempt_at = None
        event.handled_at = now
    else:
        wait = min(backoff_cap, backoff * (2 ** max(0, event.attempts - 1)))
        event.status = InboxStatus.FAILED.value
        event.next_attempt_at = now + wait
    session.commit()
    return event.status


def retry(session: Session, event_id: int, now: datetime) -> bool:
    """Put a ``dead`` (or ``failed``) event back in line with fresh attempts (committed)."""
    result = session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.status.in_((InboxStatus.DEAD.value, InboxStatus.FAILED.value)),
        )
        .values(status=InboxStatus.RECEIVED.value, attempts=0, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
    ).all()
    return {str(status): int(n) for status, n in rows}
