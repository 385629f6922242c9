"""Sync runs as the admin API and CLI show them: filtered lists (newest first, id cursor) and
one run with its live counts, API calls, rate and ETA (:mod:`app.domain.run_progress`).

A running run's counters are written with each committed page (``update_run_progress``), so
reading the row is reading its progress; nothing here talks to the process running it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.runs import RunStatus
from app.db.base import utcnow
from app.db.models import SyncErrorRecord, SyncRun
from app.domain.run_progress import run_progress


@dataclass(frozen=True)
class RunFilters:
    crm: str | None = None
    object: str | None = None
    kind: str | None = None
    status: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"crm": self.crm, "object": self.object, "kind": self.kind, "status": self.status}


def list_runs(
    session: Session, filters: RunFilters, *, before_id: int | None = None, limit: int = 50
) -> Sequence[SyncRun]:
    """Runs matching ``filters``, newest first, ids below ``before_id`` (the cursor)."""
    stmt = select(SyncRun)
    if filters.crm is not None:
        stmt = stmt.where(SyncRun.crm == filters.crm)
    if filters.object is not None:
        stmt = stmt.where(SyncRun.object == filters.object)
    if filters.kind is not None:
        stmt = stmt.where(SyncRun.kind == filters.kind)
    if filters.status is not None:
        stmt = stmt.where(SyncRun.status == filters.status)
    if before_id is not None:
        stmt = stmt.where(SyncRun.id < before_id)
    return session.scalars(stmt.order_by(SyncRun.id.desc()).limit(limit)).all()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _expected(run: SyncRun) -> int | None:
    value = (run.params or {}).get("expected")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_dict(run: SyncRun, now: datetime | None = None) -> dict[str, Any]:
    """A run for lists: what, status, counts, API calls, rate and ETA."""
    now = now or utcnow()
    progress = run_progress(
        started_at=run.started_at,
        finished_at=run.finished_at,
        now=now,
        read=run.read_count,
        api_calls=run.api_calls,
        expected=_expected(run),
    )
    running = run.status == RunStatus.RUNNING
    return {
        "id": run.id,
        "kind": run.kind,
        "crm": run.crm,
        "object": run.object,
        "status": run.status,
        "triggered_by": run.triggered_by,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "heartbeat_age_seconds": (
            round((now - run.heartbeat_at).total_seconds(), 1)
            if running and run.heartbeat_at is not None
            else None
        ),
        "counts": {
            "read": run.read_count,
            "created": run.created_count,
            "updated": run.updated_count,
            "unchanged": run.unchanged_count,
            "deleted": run.deleted_count,
            "skipped": run.skipped_count,
            "failed": run.failed_count,
        },
        "api_calls": run.api_calls,
        "progress": {
            "elapsed_seconds": progress.elapsed_seconds,
            "records_per_second": progress.records_per_second,
            "api_calls_per_minute": progress.api_calls_per_minute,
            "expected": progress.expected,
            "remaining": progress.remaining if running else None,
            "percent": progress.percent,
            "eta_seconds": progress.eta_seconds,
            "eta_at": _iso(progress.eta_at),
        },
        "error": run.error,
    }


def run_detail(session: Session, run: SyncRun, now: datetime | None = None) -> dict[str, Any]:
    """One run: :func:`run_dict` plus its parameters, cursors and the errors it left open."""
    out = run_dict(run, now)
    open_errors = session.scalar(
        select(func.count())
        .select_from(SyncErrorRecord)
        .where(SyncErrorRecord.run_id == run.id, SyncErrorRecord.resolved_at.is_(None))
    )
    out.update(
        {
            "params": run.params,
            "cursor_from": run.cursor_from,
            "cursor_to": run.cursor_to,
            "open_errors": int(open_errors or 0),
        }
    )
    return out
