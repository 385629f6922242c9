"""The budget guard's data: crmsync's own API calls per rolling 24 h, and each CRM's limit.

Own calls come from ``sync_runs.api_calls`` (every pass records the calls it made, page by page),
each run's calls dated at its last sign of life (finished, else heartbeat, else start). A run
that straddles the window's edge is counted whole while any of it is inside: the count errs on
the side of spending less. Calls made outside a run (a webhook's CRM reads, the guard's own
limit reads, a backfill's count calls) are ``api_usage`` rows, stored by each process as it
makes them (:mod:`app.crm.usage`), and counted beside the runs'.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ApiLimit, ApiUsage, SyncRun
from app.domain.budget import WINDOW


def own_usage(session: Session, crm: str, now: datetime) -> list[tuple[datetime, int]]:
    """(when, calls) of every run of ``crm`` with API calls in the 24 h before ``now``, and of
    the calls made outside runs."""
    at = func.coalesce(SyncRun.finished_at, SyncRun.heartbeat_at, SyncRun.started_at)
    rows = session.execute(
        select(at, SyncRun.api_calls).where(
            SyncRun.crm == crm, SyncRun.api_calls > 0, at > now - WINDOW
        )
    ).all()
    outside = session.execute(
        select(ApiUsage.at, ApiUsage.calls).where(ApiUsage.crm == crm, ApiUsage.at > now - WINDOW)
    ).all()
    return [(when, int(calls)) for when, calls in (*rows, *outside)]


def add_usage(session: Session, calls: dict[str, int], now: datetime | None = None) -> None:
    """Store calls made outside any run (per CRM), and prune rows the window no longer sees;
    commits."""
    now = now or utcnow()
    for crm, made in calls.items():
        if made > 0:
            session.add(ApiUsage(crm=crm, at=now, calls=made))
    session.execute(delete(ApiUsage).where(ApiUsage.at < now - 2 * WINDOW))
    session.commit()


def load_limit(session: Session, crm: str) -> ApiLimit | None:
    return session.get(ApiLimit, crm)


def save_limit(
    session: Session, crm: str, daily_limit: int | None, org_used: int | None, source: str
) -> None:
    """Keep what the CRM (or the configuration) says; commits."""
    row = session.get(ApiLimit, crm)
    if row is None:
        row = ApiLimit(crm=crm, source=source)
        session.add(row)
    row.daily_limit = daily_limit
    row.org_used = org_used
    row.source = source
    row.observed_at = utcnow()
    session.commit()
