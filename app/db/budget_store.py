"""The budget guard's data: crmsync's own API calls per rolling 24 h, and each CRM's limit.

Own calls come from ``sync_runs.api_calls`` (every pass records the calls it made, page by page),
each run's calls dated at its last sign of life (finished, else heartbeat, else start). A run
that straddles the window's edge is counted whole while any of it is inside: the count errs on
the side of spending less. Calls made outside a run (``crm check``, the guard's own limit
reads) are not counted; they are a handful a day.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ApiLimit, SyncRun
from app.domain.budget import WINDOW


def own_usage(session: Session, crm: str, now: datetime) -> list[tuple[datetime, int]]:
    """(when, calls) of every run of ``crm`` with API calls in the 24 h before ``now``."""
    at = func.coalesce(SyncRun.finished_at, SyncRun.heartbeat_at, SyncRun.started_at)
    rows = session.execute(
        select(at, SyncRun.api_calls).where(
            SyncRun.crm == crm, SyncRun.api_calls > 0, at > now - WINDOW
        )
    ).all()
    return [(when, int(calls)) for when, calls in rows]


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
