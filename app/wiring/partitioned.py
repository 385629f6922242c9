"""Partitioned backfill: plan a parent into child runs, run one child, settle the parent.

``docs/adr/0008-partitioned-backfill.md`` says why it is built this way. In short, a backfill
queued with ``partitions: N`` (API ``POST /api/v1/sync/runs``, CLI ``crmsync sync backfill
--partitions N``) is carried out in three steps, each a job on the ordinary ``crmsync.run``
task:

1. :func:`plan` (the parent's job): splits the object's stamp range into up to N partitions
   balanced by the CRM's counts (:func:`app.sync.partitions.plan_partitions`, about ten count
   calls per boundary), then claims the parent and inserts one queued child per partition in
   one transaction (:func:`app.db.partition_runs.claim_and_split`) and enqueues them. When
   the object's last partitioned backfill ended failed or cancelled (same ``since``, no
   ``restart``), it is resumed instead: its plan again, no count calls, and children only for
   the partitions it did not complete, each from its own checkpoint;
2. :func:`run_child` (each child's job, on any worker): the partition's pass
   (:meth:`app.sync.pull.PullEngine.pull_partition`) under its own lease and checkpoint; a
   child killed is resumed from that checkpoint by the sweeper like any backfill;
3. :func:`settle` after every child (and from the sweeper): the parent is closed once its
   children allow it, moving the object's ``changes`` cursor on success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.core.types import CRM_NAMES, CrmName
from app.crm import usage
from app.crm.base import ReadFrom
from app.crm.factory import build_client
from app.db import partition_runs
from app.db.base import utcnow
from app.db.models import SyncRun
from app.db.sync_store import SqlSyncStore
from app.errors import ConfigError
from app.logging import get_logger
from app.settings import Settings
from app.sync import backfill as backfills
from app.sync.partitions import Partition, plan_partitions
from app.sync.pull import PassInterrupted, PullEngine, PullResult
from app.sync.run_scope import RunSpec, build_result
from app.wiring.gc_passes import fewer_gc_passes
from app.wiring.sync import (
    SyncInterrupted,
    _keep_budget,
    plan_sync,
    remember_expected,
)

log = get_logger("crmsync.sync.partitions")


@dataclass(frozen=True)
class Planned:
    """What planning a parent did: ``children`` queued (empty: none, see ``status``)."""

    parent_id: int
    children: list[int]
    status: str
    message: str | None = None


def _crm(name: str) -> CrmName:
    if name not in CRM_NAMES:
        raise ConfigError(f"unknown CRM {name!r}")
    return name


def _since(params: dict[str, Any]) -> datetime | None:
    value = params.get("since")
    if not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _close(factory: sessionmaker[Session], run_id: int, status: RunStatus, error: str) -> None:
    with factory() as session:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == RunStatus.QUEUED)
            .values(status=status, error=error, finished_at=utcnow())
        )
        session.commit()


def plan(
    settings: Settings,
    factory: sessionmaker[Session],
    run_id: int,
    crm: str,
    object_name: str,
    params: dict[str, Any],
    enqueue: Callable[[int], None],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Planned:
    """Split queued parent ``run_id`` into its children and enqueue them (step 1)."""
    wanted = int(params.get("partitions") or 1)
    with factory() as session:
        running = partition_runs.open_parent(session, crm, object_name)
    if running is not None and running != run_id:
        message = (
            f"not started: the partitioned backfill of {crm} {object_name} run {running} is "
            "still running; cancel it or wait for it"
        )
        _close(factory, run_id, RunStatus.CANCELLED, message)
        return Planned(run_id, [], str(RunStatus.CANCELLED), message)
    plan_sync(settings, [_crm(crm)], [object_name])  # the object must exist in the mapping
    if not params.get("restart"):
        with factory() as session:
            unfinished = partition_runs.resumable(session, crm, object_name, params.get("since"))
        if unfinished is not None:
            return _resume(factory, run_id, crm, object_name, unfinished, enqueue)
    since = _since(params)
    until = clock()
    # The plan's count calls are stored on the parent run at its claim (app.crm.usage).
    client = usage.for_runs(build_client(_crm(crm), settings))
    try:

        def count(upper: datetime) -> int:
            found = client.estimate_changes(object_name, ReadFrom(lower=since, upper=upper))
            return int(found or 0)

        parts = plan_partitions(wanted, since=since, until=until, count=count)
        calls = client.api_calls
    except Exception as exc:
        message = f"planning the partitions failed: {type(exc).__name__}: {exc}"
        log.warning("sync.partitions.plan_failed", run_id=run_id, error=message)
        _close(factory, run_id, RunStatus.FAILED, message)
        return Planned(run_id, [], str(RunStatus.FAILED), message)
    finally:
        client.close()
    with factory() as session:
        ids = partition_runs.claim_and_split(session, run_id, parts, until, calls)
    if ids is None:
        return Planned(run_id, [], "skipped", "the run is no longer queued")
    log.info(
        "sync.partitions.planned",
        run_id=run_id,
        crm=crm,
        object=object_name,
        wanted=wanted,
        partitions=[p.as_dict() for p in parts],
        children=ids,
        api_calls=calls,
    )
    _enqueue_all(ids, enqueue)
    return Planned(run_id, ids, str(RunStatus.RUNNING))


def _resume(
    factory: sessionmaker[Session],
    run_id: int,
    crm: str,
    object_name: str,
    unfinished: partition_runs.Resumable,
    enqueue: Callable[[int], None],
) -> Planned:
    """Claim parent ``run_id`` with ``unfinished``'s plan; queue its partitions not done."""
    with factory() as session:
        ids = partition_runs.claim_and_split(
            session,
            run_id,
            unfinished.parts,
            unfinished.generation,
            0,
            resumes=unfinished,
        )
    if ids is None:
        return Planned(run_id, [], "skipped", "the run is no longer queued")
    log.info(
        "sync.partitions.resumed",
        run_id=run_id,
        crm=crm,
        object=object_name,
        resumes=unfinished.parent_id,
        kept=unfinished.kept,
        children=ids,
    )
    _enqueue_all(ids, enqueue)
    if not ids:  # nothing left to read: close it now
        return Planned(run_id, [], settle(factory, run_id) or str(RunStatus.SUCCEEDED))
    return Planned(run_id, ids, str(RunStatus.RUNNING))


def _enqueue_all(ids: list[int], enqueue: Callable[[int], None]) -> None:
    for child in ids:
        try:
            enqueue(child)
        except Exception as exc:  # the broker is down: the sweeper enqueues queued rows
            log.warning("sync.partitions.enqueue_failed", run_id=child, error=str(exc))


def run_child(
    settings: Settings,
    factory: sessionmaker[Session],
    crm: str,
    object_name: str,
    params: dict[str, Any],
    triggered_by: str,
) -> list[PullResult]:
    """One partition's pass (step 2), then :func:`settle` its parent (step 3).

    Run inside :func:`app.sync.run_scope.adopting` by the job, so the pass claims the child's
    queued row. A partition that already finished its generation (a resumption queued for a
    child killed after its last commit) reads nothing and comes back ``succeeded``.
    """
    part = Partition.from_dict(params["partition"])
    generation = backfills.Generation(datetime.fromisoformat(str(params["generation"])), part.lower)
    plans = plan_sync(settings, [_crm(crm)], [object_name])
    store = SqlSyncStore(factory)
    try:
        stored = store.load_cursor(crm, object_name, part.stream)
        if backfills.is_complete(stored, generation):
            spec = RunSpec(part.kind, crm, object_name, triggered_by, partition=part.index)
            done = build_result(spec, RunStatus.SUCCEEDED)
            done.extra["backfill"] = {**generation.as_dict(), "step": "already_complete"}
            return [done]
        client = usage.for_runs(build_client(_crm(crm), settings))
        try:
            engine = PullEngine(
                store,
                client,
                plans[0].mappings,
                settings.sync,
                on_page=remember_expected(factory, None),
            )
            with fewer_gc_passes():
                try:
                    result = engine.pull_partition(
                        object_name, part, generation, triggered_by=triggered_by
                    )
                except PassInterrupted as exc:
                    raise SyncInterrupted([exc.result]) from exc
        finally:
            _keep_budget(store, _crm(crm), client)
            client.close()
        return [result]
    finally:
        settle(factory, int(params["parent"]))


def settle(factory: sessionmaker[Session], parent_id: int) -> str | None:
    """Close the parent if its children allow it (step 3); returns its status."""
    with factory() as session:
        found = partition_runs.settle(session, parent_id)
    if found.closed:
        log.info("sync.partitions.settled", run_id=parent_id, status=found.status)
    return found.status
