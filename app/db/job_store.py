"""What the job sweeper and the run-control API read and write: queued runs, runs whose worker
died, inbox events and sync errors whose time has come.

The database is the truth about pending work; a job message only carries an id. So every
question "what should run now?" is a query here, and enqueueing the answer twice is harmless
(the run's claim, the lease and the inbox row's status make the second delivery a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.core.runs import RunStatus
from app.db.models import OnboardingPlan, SyncErrorRecord, SyncRun, WebhookEvent
from app.db.runs import ACTIVE_STATUSES, create_queued_run


def queue_run(
    session: Session,
    *,
    kind: str,
    crm: str,
    object_name: str,
    triggered_by: str,
    params: dict[str, Any],
    dedupe: bool = False,
) -> tuple[int, bool]:
    """A queued run: with ``dedupe``, the one already queued for (kind, CRM, object) if any.

    Returns (run id, created). The schedule dedupes (a tick while the last one still waits adds
    nothing); an operator's request always gets its own row.
    """
    if dedupe:
        found = session.scalar(
            select(SyncRun.id)
            .where(
                SyncRun.kind == kind,
                SyncRun.crm == crm,
                SyncRun.object == object_name,
                SyncRun.status == RunStatus.QUEUED,
            )
            .order_by(SyncRun.id)
            .limit(1)
        )
        if found is not None:
            return int(found), False
    run = create_queued_run(
        session,
        kind=kind,
        crm=crm,
        object_name=object_name,
        triggered_by=triggered_by,
        params=params,
    )
    return run.id, True


def queued_runs(session: Session, older_than: datetime) -> list[int]:
    """Queued runs waiting since before ``older_than``: their message may be lost."""
    return list(
        session.scalars(
            select(SyncRun.id)
            .where(SyncRun.status == RunStatus.QUEUED, SyncRun.started_at <= older_than)
            .order_by(SyncRun.id)
        )
    )


def stalled_runs(session: Session, older_than: datetime, kinds: Sequence[str]) -> list[SyncRun]:
    """Runs marked running whose heartbeat stopped before ``older_than``: their worker died."""
    beat = func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at)
    return list(
        session.scalars(
            select(SyncRun)
            .where(
                SyncRun.status.in_(ACTIVE_STATUSES),
                SyncRun.kind.in_(list(kinds)),
                beat <= older_than,
            )
            .order_by(SyncRun.id)
        )
    )


def has_pending_run(session: Session, kind: str, crm: str, object_name: str) -> bool:
    """A queued run of this (kind, CRM, object), or a running one with a live heartbeat."""
    found = session.scalar(
        select(SyncRun.id)
        .where(
            SyncRun.kind == kind,
            SyncRun.crm == crm,
            SyncRun.object == object_name,
            SyncRun.status == RunStatus.QUEUED,
        )
        .limit(1)
    )
    return found is not None


def due_inbox_events(session: Session, now: datetime, received_before: datetime) -> list[int]:
    """Inbox events to process: the inbox's own rule (:func:`app.db.inbox_store.due_ids`:
    received, failed, or abandoned while processing, whose next attempt is due), received
    before ``received_before`` so an event just stored is left to its first attempt."""
    from app.db.inbox_store import due_ids

    due = due_ids(session, now, limit=1000)
    if not due:
        return []
    fresh = set(
        session.scalars(
            select(WebhookEvent.id).where(
                WebhookEvent.id.in_(due), WebhookEvent.received_at > received_before
            )
        )
    )
    return [i for i in due if i not in fresh]


def due_notices(session: Session, due_before: datetime, limit: int = 1000) -> list[int]:
    """Plans whose onboarding notice is pending and was due before ``due_before`` (the sweep's
    grace ago: a notice just stored is left to the webhook job that stored it)."""
    plan = OnboardingPlan
    return list(
        session.scalars(
            select(plan.id)
            .where(plan.notice_status == "pending", plan.notice_due_at <= due_before)
            .order_by(plan.notice_due_at, plan.id)
            .limit(limit)
        )
    )


def due_sync_errors(session: Session, now: datetime) -> list[SyncErrorRecord]:
    """Open, retriable pull errors whose retry time has come (or was never set)."""
    return list(
        session.scalars(
            select(SyncErrorRecord)
            .where(
                SyncErrorRecord.resolved_at.is_(None),
                SyncErrorRecord.retriable.is_(True),
                SyncErrorRecord.direction == "pull",
                or_(SyncErrorRecord.next_retry_at.is_(None), SyncErrorRecord.next_retry_at <= now),
            )
            .order_by(SyncErrorRecord.id)
        )
    )


def backoff(attempts: int, base: timedelta = timedelta(minutes=5)) -> timedelta:
    """Wait before the next retry of a record that failed ``attempts`` times: 5 min doubling,
    at most a day."""
    wait: timedelta = base * (2 ** max(0, attempts - 1))
    return min(wait, timedelta(days=1))
