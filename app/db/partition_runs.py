"""The rows of a partitioned backfill (``docs/adr/0008-partitioned-backfill.md``).

A backfill run queued with ``params.partitions = N`` is the *parent*. When a worker plans it,
one transaction claims it (``queued`` -> ``running``, with the plan in ``params.plan``) and
inserts its children, one ``queued`` row per partition of kind ``backfill:p<i>`` whose params
name the parent, the partition and the generation. A kill before that commit leaves the parent
queued (the sweeper enqueues it again); after it, the children exist (the sweeper enqueues them
if their messages were lost). Nothing is planned twice: the claim is one conditional UPDATE.

:func:`settle` closes the parent from its children's rows and checkpoints: ``succeeded`` (and
the object's ``changes`` cursor moved up to the newest position any partition read) once every
partition has a succeeded row; ``failed``/``cancelled`` once none is pending and one did not
succeed. Any child, the sweeper, or both at once may call it: the close is a conditional
UPDATE in the same transaction as the cursor, so it happens once.

A partitioned backfill that ended ``failed`` or ``cancelled`` is *resumed* by the next one of
the object (same ``since``, no ``restart``): :func:`resumable` finds it, and the new parent is
claimed with the old plan (same generation and partitions), its succeeded partitions ``kept``
(``params.plan.kept``: index -> the run that read it) and children queued for the others only;
each of those goes on from its own checkpoint, since it belongs to the same generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.runs import RunStatus, SyncKind, resumed_elsewhere
from app.db import cursors
from app.db.base import utcnow
from app.db.models import SyncRun
from app.db.runs import ACTIVE_STATUSES
from app.sync import backfill as backfills
from app.sync import cursor as cursor_rules
from app.sync.cursor import CursorState, encode
from app.sync.partitions import Partition

_DONE = (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
_PENDING = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLING)


def is_parent(params: dict[str, Any] | None) -> bool:
    """A planned partitioned backfill (its children do the work; it is closed by :func:`settle`)."""
    return bool(params) and isinstance(params.get("plan"), dict)  # type: ignore[union-attr]


def open_parent(session: Session, crm: str, object_name: str) -> int | None:
    """The planned partitioned backfill of (crm, object) still running, if any."""
    rows = session.scalars(
        select(SyncRun).where(
            SyncRun.kind == str(SyncKind.BACKFILL),
            SyncRun.crm == crm,
            SyncRun.object == object_name,
            SyncRun.status.in_(ACTIVE_STATUSES),
        )
    )
    for row in rows:
        if is_parent(row.params):
            return int(row.id)
    return None


@dataclass(frozen=True)
class Resumable:
    """An unfinished partitioned backfill to go on with: its plan and the partitions done."""

    parent_id: int
    generation: datetime
    parts: list[Partition]
    kept: dict[int, int]  # partition index -> the run that read it completely

    @property
    def remaining(self) -> list[Partition]:
        return [p for p in self.parts if p.index not in self.kept]


def kept_partitions(params: dict[str, Any] | None) -> dict[int, int]:
    """The partitions a resumed parent took over as done from the one it resumes."""
    plan = (params or {}).get("plan") or {}
    return {int(i): int(run) for i, run in dict(plan.get("kept") or {}).items()}


def resumable(session: Session, crm: str, object_name: str, since: str | None) -> Resumable | None:
    """The last partitioned backfill of (crm, object) if it ended ``failed`` or ``cancelled``
    and read from the same ``since`` (its params' ISO string; None: everything)."""
    rows = session.scalars(
        select(SyncRun)
        .where(
            SyncRun.kind == str(SyncKind.BACKFILL),
            SyncRun.crm == crm,
            SyncRun.object == object_name,
            SyncRun.status.in_((*_DONE, RunStatus.FAILED, RunStatus.CANCELLED)),
        )
        .order_by(SyncRun.id.desc())
    )
    for row in rows:
        if not is_parent(row.params):
            continue  # an unpartitioned backfill, or a request refused before its plan
        if row.status in _DONE or (row.params or {}).get("since") != since:
            return None  # the last one finished (or read something else): begin anew
        generation, parts = _plan(row)
        kept = kept_partitions(row.params)
        for index, found in children(session, row).items():
            done = [r for r in found if r.status in _DONE]
            if done:
                kept[index] = int(done[0].id)
        return Resumable(int(row.id), generation, parts, kept)
    return None


def claim_and_split(
    session: Session,
    parent_id: int,
    parts: Sequence[Partition],
    generation: datetime,
    api_calls: int,
    *,
    resumes: Resumable | None = None,
) -> list[int] | None:
    """Claim queued parent ``parent_id`` and insert one queued child per partition, in one
    transaction; returns the children's ids (None: the parent was no longer queued). Resuming
    an unfinished one (``resumes``), the partitions it completed are kept, not queued."""
    row = session.get(SyncRun, parent_id)
    if row is None or row.status != RunStatus.QUEUED:
        session.rollback()
        return None
    now = utcnow()
    plan: dict[str, Any] = {
        "generation": generation.isoformat(),
        "partitions": [p.as_dict() for p in parts],
    }
    kept = resumes.kept if resumes is not None else {}
    if resumes is not None:
        plan["resumes"] = resumes.parent_id
        plan["kept"] = {str(i): run for i, run in sorted(kept.items())}
    params = {**dict(row.params or {}), "plan": plan}
    claimed = session.execute(
        update(SyncRun)
        .where(SyncRun.id == parent_id, SyncRun.status == RunStatus.QUEUED)
        .values(
            status=RunStatus.RUNNING,
            params=params,
            started_at=now,
            heartbeat_at=now,
            api_calls=api_calls,
        )
        .execution_options(synchronize_session=False)
    )
    if int(getattr(claimed, "rowcount", 0) or 0) != 1:
        session.rollback()
        return None
    carried = {k: v for k, v in params.items() if k in ("allow_over_budget",)}
    children = [
        SyncRun(
            kind=p.kind,
            crm=row.crm,
            object=row.object,
            status=RunStatus.QUEUED,
            triggered_by=row.triggered_by,
            params={
                **carried,
                "parent": parent_id,
                "partition": p.as_dict(),
                "generation": generation.isoformat(),
            },
        )
        for p in parts
        if p.index not in kept
    ]
    session.add_all(children)
    session.flush()
    ids = [int(c.id) for c in children]
    session.execute(
        update(SyncRun)
        .where(SyncRun.id == parent_id)
        .values(params={**params, "plan": {**plan, "children": ids}})
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return ids


@dataclass(frozen=True)
class Settled:
    """What :func:`settle` found: the parent's status now (None: no parent) and whether this
    call closed it."""

    status: str | None
    closed: bool = False


def _plan(row: SyncRun) -> tuple[datetime, list[Partition]]:
    plan = dict((row.params or {})["plan"])
    generation = datetime.fromisoformat(str(plan["generation"]))
    return generation, [Partition.from_dict(p) for p in plan["partitions"]]


def children(session: Session, parent: SyncRun) -> dict[int, list[SyncRun]]:
    """Every row of each partition of ``parent`` (first runs, resumptions), by index."""
    _generation, parts = _plan(parent)
    found: dict[int, list[SyncRun]] = {p.index: [] for p in parts}
    rows = session.scalars(
        select(SyncRun)
        .where(
            SyncRun.crm == parent.crm,
            SyncRun.object == parent.object,
            SyncRun.kind.in_([p.kind for p in parts]),
        )
        .order_by(SyncRun.id)
        .execution_options(populate_existing=True)
    )
    for row in rows:
        params = row.params or {}
        if params.get("parent") == parent.id and "partition" in params:
            found.setdefault(int(params["partition"]["index"]), []).append(row)
    return found


def _pending(row: SyncRun) -> bool:
    if row.status in _PENDING:
        return True
    # A child its worker stopped, or the budget guard, is queued again right after it closed
    # (``JobQueue._requeue``): still pending for its parent.
    return row.status == RunStatus.CANCELLED and resumed_elsewhere(row.error)


def settle(session: Session, parent_id: int) -> Settled:
    """Close parent ``parent_id`` if its children allow it (see the module docstring)."""
    parent = session.get(SyncRun, parent_id, populate_existing=True)
    if parent is None or not is_parent(parent.params):
        return Settled(None)
    if parent.status not in ACTIVE_STATUSES:
        return Settled(str(parent.status))
    generation, parts = _plan(parent)
    rows = children(session, parent)
    done = {i for i, found in rows.items() if any(r.status in _DONE for r in found)}
    done |= set(kept_partitions(parent.params)) & set(rows)  # read by the run it resumes
    pending = {i for i, found in rows.items() if any(_pending(r) for r in found)} - done
    everything = [r for found in rows.values() for r in found]
    totals = _sum_counts(everything)
    # The planning's count calls (stored at the claim) plus every attempt of every partition.
    totals["api_calls"] = int(parent.api_calls or 0) + sum(
        int(r.api_calls or 0) for r in everything
    )
    if len(done) == len(parts):
        partial = any(r.status == RunStatus.PARTIAL for r in everything if r.status in _DONE)
        status = RunStatus.PARTIAL if partial else RunStatus.SUCCEEDED
        best = _newest_read(session, parent.crm, parent.object, generation, parts)
        closed = _close(session, parent_id, status, totals, encode(best) if best else None, None)
        if closed and best is not None:
            changes = cursors.load_cursor(session, parent.crm, parent.object, "changes")
            if cursor_rules.position_key(best.at, best.id) > cursor_rules.position_key(
                changes.at, changes.id
            ):
                cursors.save_cursor(session, parent.crm, parent.object, "changes", best)
        session.commit()
        return Settled(str(status), closed)
    if pending:
        session.rollback()
        return Settled(str(parent.status))
    failed = sorted(set(rows) - done)
    last = [rows[i][-1] for i in failed if rows[i]]
    cancelled = parent.status == RunStatus.CANCELLING or all(
        r.status == RunStatus.CANCELLED for r in last
    )
    status = RunStatus.CANCELLED if cancelled else RunStatus.FAILED
    detail = "; ".join(
        f"p{i} (run {rows[i][-1].id}): {rows[i][-1].error}" for i in failed if rows[i]
    )
    error = (
        f"{len(failed)} of {len(parts)} partitions did not succeed ({detail}); the others are "
        "complete. The object's changes cursor was not moved."
    )
    closed = _close(session, parent_id, status, totals, None, error)
    session.commit()
    return Settled(str(status), closed)


def _close(
    session: Session,
    parent_id: int,
    status: RunStatus,
    totals: dict[str, int],
    cursor_to: dict[str, Any] | None,
    error: str | None,
) -> bool:
    result = session.execute(
        update(SyncRun)
        .where(SyncRun.id == parent_id, SyncRun.status.in_(ACTIVE_STATUSES))
        .values(status=status, cursor_to=cursor_to, error=error, finished_at=utcnow(), **totals)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


_COUNTED = (
    "read_count",
    "created_count",
    "updated_count",
    "unchanged_count",
    "deleted_count",
    "skipped_count",
    "failed_count",
)


def _sum_counts(rows: Sequence[SyncRun]) -> dict[str, int]:
    """The children's counts added up (every attempt: a resumption's re-read counts as read)."""
    return {name: sum(int(getattr(r, name) or 0) for r in rows) for name in _COUNTED}


def _newest_read(
    session: Session, crm: str, object_name: str, generation: datetime, parts: Sequence[Partition]
) -> CursorState | None:
    """The newest (stamp, id) any partition read in this generation: where ``changes`` goes."""
    best: CursorState | None = None
    for part in parts:
        stored = cursors.load_cursor(session, crm, object_name, part.stream)
        read = backfills.read_position(stored, backfills.Generation(generation, part.lower))
        if read is None:
            continue
        if best is None or cursor_rules.position_key(read.at, read.id) > cursor_rules.position_key(
            best.at, best.id
        ):
            best = read
    return best
