"""Sync runs and per-record sync errors: the admin's view of what the engine did."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.runs import RunStatus
from app.db.base import utcnow
from app.db.models import SyncErrorRecord, SyncRun
from app.sync.ports import Counts


@dataclass
class NewSyncError:
    crm: str
    object: str
    record_id: str | None
    category: str
    message: str
    retriable: bool
    payload: dict[str, Any] | None = None
    direction: str = "pull"
    extra: dict[str, Any] = field(default_factory=dict)
    #: The CRM field of a field-level error (the record was stored without it); kept in the
    #: payload as ``field`` and part of the row's key. None: the record itself failed.
    field: str | None = None


#: Categories of field-level rows: their ``payload["field"]`` is part of their key.
FIELD_ERROR_CATEGORIES = frozenset({"invalid_field", "missing_field", "conflict"})
#: ``sync_errors.record_id`` is ``String(64)``: a longer (bad) id is cut, never the page failed.
_RECORD_ID_LENGTH = 64


def _field_of(row: SyncErrorRecord) -> str | None:
    """The CRM field a stored row is about, or None for a record-level row."""
    if row.category in FIELD_ERROR_CATEGORIES and isinstance(row.payload, dict):
        found = row.payload.get("field")
        return str(found) if found is not None else None
    return None


def _count_columns(counts: Counts) -> dict[str, int]:
    """Counters as ``sync_runs`` columns (``read`` -> ``read_count``; API calls as they are)."""
    return {
        (name if name == "api_calls" else f"{name}_count"): value
        for name, value in counts.as_dict().items()
    }


def start_run(
    session: Session,
    *,
    kind: str,
    crm: str,
    object_name: str,
    triggered_by: str,
    params: dict[str, Any],
    cursor_from: dict[str, Any] | None,
) -> SyncRun:
    """Insert and commit a ``running`` row, so an admin sees the run while it works."""
    run = SyncRun(
        kind=kind,
        crm=crm,
        object=object_name,
        status=RunStatus.RUNNING,
        triggered_by=triggered_by,
        params=params,
        cursor_from=cursor_from,
        heartbeat_at=utcnow(),
    )
    session.add(run)
    session.commit()
    return run


#: A run a worker is on (or was on, if it died): the heartbeat beats it, the next holder of its
#: lease closes it as abandoned.
ACTIVE_STATUSES = (RunStatus.RUNNING, RunStatus.CANCELLING)


def create_queued_run(
    session: Session,
    *,
    kind: str,
    crm: str,
    object_name: str,
    triggered_by: str,
    params: dict[str, Any],
) -> SyncRun:
    """Insert and commit a ``queued`` row: the work a job will pick up by this id.

    ``started_at`` is when it was queued until a worker claims it (:func:`claim_queued_run`).
    """
    run = SyncRun(
        kind=kind,
        crm=crm,
        object=object_name,
        status=RunStatus.QUEUED,
        triggered_by=triggered_by,
        params=params,
    )
    session.add(run)
    session.commit()
    return run


def claim_queued_run(
    session: Session,
    run_id: int,
    *,
    params: dict[str, Any],
    cursor_from: dict[str, Any] | None,
) -> bool:
    """``queued`` -> ``running`` in one conditional UPDATE: of two deliveries of the same job
    message exactly one claims the row. Keeps the row's own params (the request), adding the
    pass's. Commits; False when the row is not queued."""
    row = session.get(SyncRun, run_id)
    if row is None or row.status != RunStatus.QUEUED:
        session.rollback()
        return False
    merged = {**dict(row.params or {}), **params}
    now = utcnow()
    result = session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.status == RunStatus.QUEUED)
        .values(
            status=RunStatus.RUNNING,
            params=merged,
            cursor_from=cursor_from,
            started_at=now,
            heartbeat_at=now,
            error=None,  # why it waited (a budget wait), if it did
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0) == 1


def request_cancel(session: Session, run_id: int) -> str | None:
    """Ask a run to stop. A queued run is cancelled at once; a running one becomes
    ``cancelling`` and stops after its current page. Returns the status the row now has (None:
    no such run); a finished run is left as it is. Commits."""
    row = session.get(SyncRun, run_id)
    if row is None:
        return None
    plan = (row.params or {}).get("plan")
    if isinstance(plan, dict) and row.status == RunStatus.RUNNING:
        # A partitioned backfill: its children stop (queued ones at once, running ones after
        # their page); the last of them to end closes the parent ``cancelled``.
        for child in plan.get("children") or []:
            request_cancel(session, int(child))
    if row.status == RunStatus.QUEUED:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == RunStatus.QUEUED)
            .values(
                status=RunStatus.CANCELLED,
                error="cancelled on request before it started",
                finished_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
    elif row.status == RunStatus.RUNNING:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == RunStatus.RUNNING)
            .values(status=RunStatus.CANCELLING)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    status = session.scalar(
        select(SyncRun.status).where(SyncRun.id == run_id).execution_options(populate_existing=True)
    )
    return None if status is None else str(status)


def cancel_requested(session: Session, run_id: int) -> bool:
    status = session.scalar(select(SyncRun.status).where(SyncRun.id == run_id))
    return status == RunStatus.CANCELLING


def update_run_progress(session: Session, run_id: int, counts: Counts) -> None:
    """Write the counters (inside the caller's page transaction) and beat the heartbeat."""
    session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id)
        .values(**_count_columns(counts), heartbeat_at=utcnow())
    )


def add_run_progress(session: Session, run_id: int, delta: Counts) -> None:
    """Add ``delta`` to the counters (inside the caller's transaction) and beat the heartbeat.

    For work committed in parts by several processes (a recompute's chunks): each part adds
    its own counts in its own transaction, so the row counts exactly what was committed."""
    values: dict[str, Any] = {
        column: getattr(SyncRun, column) + amount
        for column, amount in _count_columns(delta).items()
        if amount
    }
    session.execute(
        update(SyncRun).where(SyncRun.id == run_id).values(**values, heartbeat_at=utcnow())
    )


def committed_counts(session: Session, run_id: int) -> Counts:
    """The counters of a run as committed (see :func:`add_run_progress`)."""
    row = session.execute(
        select(
            SyncRun.read_count,
            SyncRun.updated_count,
            SyncRun.unchanged_count,
            SyncRun.failed_count,
        ).where(SyncRun.id == run_id)
    ).one()
    return Counts(read=row[0], updated=row[1], unchanged=row[2], failed=row[3])


def record_expected(session: Session, crm: str, object_name: str, kind: str, expected: int) -> None:
    """Store in the running pass's ``params`` how many records it expects (the CRM's count
    with its first page), for the admin API's ETA; commits. One pass runs per (CRM, object)."""
    run = session.scalars(
        select(SyncRun)
        .where(
            SyncRun.crm == crm,
            SyncRun.object == object_name,
            SyncRun.kind == kind,
            SyncRun.status == RunStatus.RUNNING,
        )
        .order_by(SyncRun.id.desc())
        .limit(1)
    ).first()
    if run is not None:
        run.params = {**(run.params or {}), "expected": int(expected)}
        session.commit()


def beat_run(session: Session, run_id: int) -> None:
    """Show the run is alive (``heartbeat_at``), from the heartbeat thread between pages too."""
    session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.status.in_(ACTIVE_STATUSES))
        .values(heartbeat_at=utcnow())
    )


def finish_run(
    session: Session,
    run_id: int,
    counts: Counts,
    *,
    status: RunStatus,
    cursor_to: dict[str, Any] | None = None,
    error: str | None = None,
    finished_at: datetime | None = None,
) -> None:
    session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id)
        .values(
            **_count_columns(counts),
            status=status,
            cursor_to=cursor_to,
            error=error,
            finished_at=finished_at or utcnow(),
        )
    )
    session.commit()


def close_abandoned_runs(
    session: Session, crm: str, object_name: str, kinds: list[str], error: str
) -> int:
    """Mark ``running`` rows of these kinds as ``failed``: their process died without finishing.

    Only safe for a caller that holds the (CRM, object) lease, so no live pass can own them.
    They end at their last heartbeat (their last sign of life), not now. The parent of a
    partitioned backfill (``params.plan``) is left alone: it has no pass and holds no lease;
    its children close it (:mod:`app.db.partition_runs`).
    """
    candidates = session.execute(
        select(SyncRun.id, SyncRun.params).where(
            SyncRun.crm == crm,
            SyncRun.object == object_name,
            SyncRun.kind.in_(kinds),
            SyncRun.status.in_(ACTIVE_STATUSES),
        )
    ).all()
    ids = [row_id for row_id, params in candidates if not (params or {}).get("plan")]
    if not ids:
        return 0
    result = session.execute(
        update(SyncRun)
        .where(SyncRun.id.in_(ids), SyncRun.status.in_(ACTIVE_STATUSES))
        .values(
            status=RunStatus.FAILED,
            error=error,
            finished_at=func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at),
        )
    )
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def close_earlier_running(
    session: Session, crm: str, object_name: str, kind: str, error: str
) -> int:
    """Close as ``failed`` every ``running`` run of ``kind`` on (crm, object) but the newest.

    For a pass holding the object's lease whose own run is the newest ``running`` one: the
    others' processes died (killed) without closing them. They end at their last heartbeat.
    """
    newest = session.scalar(
        select(func.max(SyncRun.id)).where(
            SyncRun.crm == crm,
            SyncRun.object == object_name,
            SyncRun.kind == kind,
            SyncRun.status == RunStatus.RUNNING,
        )
    )
    if newest is None:
        return 0
    result = session.execute(
        update(SyncRun)
        .where(
            SyncRun.crm == crm,
            SyncRun.object == object_name,
            SyncRun.kind == kind,
            SyncRun.status == RunStatus.RUNNING,
            SyncRun.id < newest,
        )
        .values(
            status=RunStatus.FAILED,
            error=error,
            finished_at=func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at),
        )
    )
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def storable_payload(value: Any) -> Any:
    """A failed record's payload as JSON both databases store: exact decimals and dates as
    text (the Salesforce client decodes numbers as ``Decimal``), NUL characters (which
    PostgreSQL ``jsonb`` refuses) as U+FFFD, anything else unknown as its ``str``."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(storable_payload(k)): storable_payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_payload(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return storable_payload(str(value))


def record_errors(session: Session, run_id: int | None, errors: list[NewSyncError]) -> None:
    """Store failed records; a record already failing unresolved gets its attempt count bumped.

    Keeps one open row per (crm, object, record, direction, field) so the admin's error list
    shows a record (or one bad field of a stored record) once, with how often it failed, instead
    of one row per pass. ``field`` is None for a record-level error.
    """
    if not errors:
        return
    now = utcnow()
    ids = {_short_id(e.record_id) for e in errors if e.record_id is not None}
    existing: dict[tuple[str, str, str | None, str, str | None], SyncErrorRecord] = {}
    if ids:
        rows = session.scalars(
            select(SyncErrorRecord).where(
                SyncErrorRecord.record_id.in_(ids), SyncErrorRecord.resolved_at.is_(None)
            )
        )
        for found in rows:
            key = (found.crm, found.object, found.record_id, found.direction, _field_of(found))
            existing[key] = found
    for err in errors:
        record_id = _short_id(err.record_id)
        payload = err.payload
        if err.field is not None:
            payload = {**(payload or {}), "field": err.field}
        key = (err.crm, err.object, record_id, err.direction, err.field)
        open_row = existing.get(key) if record_id is not None else None
        if open_row is not None:
            open_row.attempts += 1
            open_row.last_seen_at = now
            open_row.message = storable_payload(err.message)
            open_row.category = err.category
            open_row.retriable = err.retriable
            open_row.payload = storable_payload(payload)
            open_row.run_id = run_id
            continue
        row = SyncErrorRecord(
            run_id=run_id,
            crm=err.crm,
            object=err.object,
            record_id=record_id,
            direction=err.direction,
            category=err.category,
            message=storable_payload(err.message),
            payload=storable_payload(payload),
            retriable=err.retriable,
            first_seen_at=now,
            last_seen_at=now,
        )
        session.add(row)
        if record_id is not None:
            existing[key] = row


def _short_id(record_id: str | None) -> str | None:
    return record_id[:_RECORD_ID_LENGTH] if record_id is not None else None


def has_open_errors(session: Session, crm: str, object_name: str) -> bool:
    found = session.scalar(
        select(SyncErrorRecord.id)
        .where(
            SyncErrorRecord.crm == crm,
            SyncErrorRecord.object == object_name,
            SyncErrorRecord.direction == "pull",
            SyncErrorRecord.resolved_at.is_(None),
        )
        .limit(1)
    )
    return found is not None


def resolve_errors(
    session: Session, crm: str, object_name: str, record_ids: list[str], resolution: str
) -> int:
    """Mark open errors of records that have now synced cleanly as resolved."""
    if not record_ids:
        return 0
    result = session.execute(
        update(SyncErrorRecord)
        .where(
            SyncErrorRecord.crm == crm,
            SyncErrorRecord.object == object_name,
            SyncErrorRecord.record_id.in_(record_ids),
            SyncErrorRecord.resolved_at.is_(None),
            SyncErrorRecord.direction == "pull",
        )
        .values(resolved_at=utcnow(), resolution=resolution)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def resolve_errors_except(
    session: Session,
    crm: str,
    object_name: str,
    record_ids: list[str],
    keep: Collection[tuple[str, str]],
    resolution: str,
) -> int:
    """:func:`resolve_errors`, but leave open the field-level rows named in ``keep``
    (record id, CRM field): the record was stored again with those fields still invalid."""
    kept_records = {record_id for record_id, _field in keep}
    resolved = resolve_errors(
        session, crm, object_name, [r for r in record_ids if r not in kept_records], resolution
    )
    wanted = [r for r in record_ids if r in kept_records]
    if not wanted:
        return resolved
    now = utcnow()
    rows = session.scalars(
        select(SyncErrorRecord).where(
            SyncErrorRecord.crm == crm,
            SyncErrorRecord.object == object_name,
            SyncErrorRecord.record_id.in_(wanted),
            SyncErrorRecord.resolved_at.is_(None),
            SyncErrorRecord.direction == "pull",
        )
    )
    for row in rows:
        field_name = _field_of(row)
        if field_name is not None and (row.record_id, field_name) in keep:
            continue
        row.resolved_at = now
        row.resolution = resolution
        resolved += 1
    return resolved
