"""``GET /api/v1/status`` and ``crmsync status``: where each CRM object stands, in one read.

Per configured CRM and mapped object (and any other pair that has runs): the last successful
sync run (``succeeded`` or ``partial``: it finished; its failed records are in ``open_errors``),
the last run and whether one is running, the lag behind the CRM (now minus the start of the
last successful pass: every CRM change made before that moment is in CS; the change cursor's
watermark, the newest CRM modification seen, is shown beside it but is not the lag, since a
CRM object nobody edited for a month is not a month behind), the live CS records (counted by
the mapping's table even when the CRM is not configured here), and the open
errors (all, and how many are retriable). Plus the webhook inbox by status, the API budget
per configured CRM (crmsync's own calls in the last 24 h against its share of the daily limit,
from the database: no API call, docs/budget.md) and the job queue (the caller passes the
broker's answer, :func:`app.jobs.queue.broker_status`, so this module needs no broker).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, func, select
from sqlalchemy.orm import Session

from app.core.runs import RunStatus, SyncKind
from app.core.types import CRM_NAMES
from app.db.base import Base, utcnow
from app.db.inbox_admin import inbox_counts
from app.db.models import SyncCursor, SyncErrorRecord, SyncRun
from app.mappers.config import load_mapping_set
from app.settings import Settings
from app.wiring.budget import state_for

SYNC_KINDS = (SyncKind.PULL.value, SyncKind.BACKFILL.value)
DONE = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _run_brief(run: SyncRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "read": run.read_count,
        "failed": run.failed_count,
        "api_calls": run.api_calls,
    }


def _targets(settings: Settings, session: Session) -> list[tuple[str, str, bool, str | None, str]]:
    """(crm, object, configured, cs table, id column) of every mapped object of the configured
    CRMs, then any other (crm, object) that has sync runs (a CRM since unconfigured, or a
    database read without the CRM's credentials, like the demo's): its records are still
    counted through the mapping's table when the mapping names that object."""
    seen = sorted(
        (str(crm), str(obj))
        for crm, obj in session.execute(
            select(SyncRun.crm, SyncRun.object).where(SyncRun.kind.in_(SYNC_KINDS)).distinct()
        )
    )
    enabled = set(settings.enabled_crms)
    wanted = enabled | {crm for crm, _ in seen}
    out: list[tuple[str, str, bool, str | None, str]] = []
    tables: dict[tuple[str, str], tuple[str, str]] = {}
    for crm in (c for c in CRM_NAMES if c in wanted):
        mapping_set = load_mapping_set(
            crm, settings.mapping_file, default_currency=settings.default_currency
        )
        for mapping in mapping_set:
            tables[(crm, mapping.crm_object)] = (mapping.cs_table, mapping.id_column)
            if crm in enabled:
                out.append((crm, mapping.crm_object, True, mapping.cs_table, mapping.id_column))
    known = {(c, o) for c, o, *_ in out}
    for other, obj in seen:
        if (other, obj) not in known:
            table, id_column = tables.get((other, obj), (None, ""))
            out.append((other, obj, False, table, id_column))
    return out


def _records(session: Session, table_name: str | None, id_column: str) -> int | None:
    if table_name is None or table_name not in Base.metadata.tables:
        return None
    table: Table = Base.metadata.tables[table_name]
    stmt = select(func.count()).select_from(table).where(table.c[id_column].is_not(None))
    if "deleted_at" in table.c:
        stmt = stmt.where(table.c.deleted_at.is_(None))
    return int(session.scalar(stmt) or 0)


def _budget(settings: Settings, session: Session, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for crm in settings.enabled_crms:
        state = state_for(settings, session, crm, now)
        out[crm] = {
            "daily_limit": state.limit,
            "limit_source": state.limit_source,
            "share": state.share,
            "allowed": state.allowed,
            "used_24h": state.used,
            "left": state.left,
            "org_used": state.org_used,
        }
    return out


def status(
    settings: Settings,
    session: Session,
    now: datetime | None = None,
    *,
    queue: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``queue``: the broker's state (kind, ok, queued_messages), None when not asked."""
    now = now or utcnow()
    errors: dict[tuple[str, str], tuple[int, int]] = {}
    for crm, obj, total, retriable in session.execute(
        select(
            SyncErrorRecord.crm,
            SyncErrorRecord.object,
            func.count(),
            func.sum(case((SyncErrorRecord.retriable.is_(True), 1), else_=0)),
        )
        .where(SyncErrorRecord.resolved_at.is_(None))
        .group_by(SyncErrorRecord.crm, SyncErrorRecord.object)
    ).all():
        errors[(str(crm), str(obj))] = (int(total), int(retriable or 0))
    objects: list[dict[str, Any]] = []
    for crm, obj, configured, table, id_column in _targets(settings, session):
        base = select(SyncRun).where(
            SyncRun.crm == crm, SyncRun.object == obj, SyncRun.kind.in_(SYNC_KINDS)
        )
        last_success = session.scalars(
            base.where(SyncRun.status.in_(DONE)).order_by(SyncRun.id.desc()).limit(1)
        ).first()
        last_run = session.scalars(base.order_by(SyncRun.id.desc()).limit(1)).first()
        running = session.scalars(
            base.where(SyncRun.status == RunStatus.RUNNING.value).order_by(SyncRun.id.desc())
        ).first()
        cursor = session.scalars(
            select(SyncCursor).where(
                SyncCursor.crm == crm, SyncCursor.object == obj, SyncCursor.stream == "changes"
            )
        ).first()
        watermark = cursor.watermark_at if cursor is not None else None
        caught_up_at = last_success.started_at if last_success is not None else None
        total, retriable = errors.get((crm, obj), (0, 0))
        objects.append(
            {
                "crm": crm,
                "object": obj,
                "cs_table": table,
                "configured": configured,
                "last_successful_run": _run_brief(last_success),
                "last_run": _run_brief(last_run),
                "running_run_id": running.id if running is not None else None,
                "watermark_at": _iso(watermark),
                "lag_seconds": (
                    round(max(0.0, (now - caught_up_at).total_seconds()), 1)
                    if caught_up_at is not None
                    else None
                ),
                "records": _records(session, table, id_column),
                "open_errors": total,
                "open_retriable_errors": retriable,
            }
        )
    return {
        "generated_at": now.isoformat(),
        "objects": objects,
        "inbox": inbox_counts(session),
        "budget": _budget(settings, session, now),
        "queue": queue,
    }
