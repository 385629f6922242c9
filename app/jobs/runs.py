"""Carry out one queued ``sync_runs`` row: the body of the ``crmsync.run`` job.

The API (``POST /api/v1/sync/runs``) and the schedule create the row as ``queued`` and enqueue
its id. A worker then:

1. reads the row; anything but ``queued`` means the work is done or being done (a message
   delivered twice, a run cancelled while it waited): nothing to do;
2. runs the ordinary entry point (``run_sync`` for ``pull``/``backfill``, ``run_push``,
   ``run_recompute``) inside :func:`app.sync.run_scope.adopting`, so the pass's scope claims this
   row (``queued`` -> ``running`` once) under the (CRM, object) lease;
3. a pass refused because another pass holds the lease leaves the row ``queued`` and is tried
   again after ``CRMSYNC_JOBS__LEASE_WAIT_SECONDS`` (a scheduled message); if that message is
   lost, the sweeper enqueues the row again later. Nothing is lost and nothing runs twice at
   once;
4. the budget guard (docs/budget.md): before the pass, a run whose CRM has no budget left
   stays ``queued`` (its ``error`` says until when; the sweeper offers it again); during it,
   at each commit point (:class:`app.wiring.budget.RunBudgetGate`), a pass whose CRM's share
   runs out stops there, ``cancelled`` "waiting for API budget", and is listed in
   :attr:`JobOutcome.requeue` for the job to queue again. ``allow_over_budget`` skips both.

When the entry point ends without claiming the row (a backfill already complete, a
configuration error found before any pass), the row is closed here with that outcome, so no
queued row is left behind forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from structlog.contextvars import bound_contextvars

from app.core.runs import BUDGET_SPENT, RunStatus, SyncKind, resumed_elsewhere
from app.core.types import CRM_NAMES, CrmName
from app.db.base import utcnow
from app.db.models import SyncRun
from app.errors import CrmsyncError
from app.logging import get_logger
from app.settings import Settings
from app.sync.partitions import is_partition_kind
from app.sync.run_scope import QueuedRun, RunResult, adopting, budget_gated

log = get_logger("crmsync.jobs")

#: Kinds a queued run may have, and the API's names for them.
API_KINDS: dict[str, str] = {
    "backfill": str(SyncKind.BACKFILL),
    "incremental": str(SyncKind.PULL),
    "push": str(SyncKind.PUSH),
    "recompute": str(SyncKind.RECOMPUTE),
}


@dataclass
class JobOutcome:
    """What one delivery of a run job did."""

    run_id: int
    action: str  # "ran", "skipped" (not queued), "waiting" (lease held), "closed" (no pass)
    status: str | None = None
    error: str | None = None
    seconds: float = 0.0
    #: Seconds after which the run should be tried again (a lease held by another run); None:
    #: nothing to retry soon (a budget wait is re-enqueued by the sweeper when it is over).
    retry_in: float | None = None
    #: Runs this job carried (its own, or the pushes of a recompute) that stopped at a page
    #: boundary to be carried on by a new queued run: their worker stopped, or their CRM's
    #: budget share ran out (:func:`app.core.runs.resumed_elsewhere`).
    requeue: list[int] = field(default_factory=list)


def execute_run(
    settings: Settings,
    factory: sessionmaker[Session],
    run_id: int,
    enqueue: Callable[[int], None] | None = None,
) -> JobOutcome:
    """Carry out queued run ``run_id`` (see the module docstring).

    ``enqueue`` sends the children of a partitioned backfill (``params.partitions`` > 1) to
    the queue once they are planned (None: they wait for the sweeper)."""
    began = time.monotonic()
    with factory() as session:
        row = session.get(SyncRun, run_id)
        if row is None or row.status != RunStatus.QUEUED:
            status = None if row is None else row.status
            log.info("job.run.skipped", run_id=run_id, status=status)
            return JobOutcome(run_id, "skipped", status)
        kind, crm, object_name = row.kind, row.crm, row.object
        params = dict(row.params or {})
        triggered_by = row.triggered_by or "job"
    queued = QueuedRun(run_id, kind, crm, object_name)
    with bound_contextvars(run_id=run_id, crm=crm, object=object_name, kind=kind):
        return _execute(settings, factory, queued, params, triggered_by, began, enqueue)


def _execute(
    settings: Settings,
    factory: sessionmaker[Session],
    queued: QueuedRun,
    params: dict[str, Any],
    triggered_by: str,
    began: float,
    enqueue: Callable[[int], None] | None = None,
) -> JobOutcome:
    run_id, kind, crm, object_name = queued.run_id, queued.kind, queued.crm, queued.object_name
    held = _budget_hold(settings, factory, queued, params)
    if held is not None:
        return held
    if kind == str(SyncKind.BACKFILL) and int(params.get("partitions") or 1) > 1:
        return _plan_partitions(settings, factory, queued, params, began, enqueue)
    log.info("job.run.start", run_id=run_id, kind=kind, crm=crm, object=object_name)
    results: list[RunResult] = []
    error: str | None = None
    gate = None if params.get("allow_over_budget") else _budget_gate(settings, factory)
    try:
        with adopting(queued), budget_gated(gate):
            results = _dispatch(settings, factory, queued, params, triggered_by)
    except CrmsyncError as exc:  # configuration found wrong before the pass: close the row
        error = str(exc)
    mine = [r for r in results if r.run_id == run_id]
    outcome = JobOutcome(run_id, "ran", seconds=time.monotonic() - began)
    outcome.requeue = [
        r.run_id
        for r in results
        if r.run_id is not None and r.status is RunStatus.CANCELLED and resumed_elsewhere(r.error)
    ]
    if mine:
        outcome.status = str(mine[0].status)
        outcome.error = mine[0].error
        if mine[0].status is RunStatus.QUEUED:
            outcome.action = "waiting"
            outcome.retry_in = float(settings.jobs.lease_wait_seconds)
    if not queued.claimed and outcome.action != "waiting":
        # No pass claimed the row: close it with what happened instead.
        first = results[0] if results else None
        status = RunStatus.FAILED if error is not None else RunStatus.SUCCEEDED
        message = error
        if first is not None and error is None:
            status = first.status if first.status is not RunStatus.QUEUED else status
            message = first.error or _described(first)
        _close_unclaimed(factory, run_id, status, message)
        outcome.action, outcome.status, outcome.error = "closed", str(status), message
    log.info(
        "job.run.end",
        run_id=run_id,
        kind=kind,
        crm=crm,
        object=object_name,
        action=outcome.action,
        status=outcome.status,
        duration_s=round(outcome.seconds, 3),
    )
    return outcome


def _plan_partitions(
    settings: Settings,
    factory: sessionmaker[Session],
    queued: QueuedRun,
    params: dict[str, Any],
    began: float,
    enqueue: Callable[[int], None] | None,
) -> JobOutcome:
    """A partitioned backfill's parent: split it into queued children (docs/jobs.md)."""
    from app.wiring.partitioned import plan

    try:
        planned = plan(
            settings,
            factory,
            queued.run_id,
            queued.crm,
            queued.object_name,
            params,
            enqueue or (lambda _run_id: None),
        )
    except CrmsyncError as exc:
        _close_unclaimed(factory, queued.run_id, RunStatus.FAILED, str(exc))
        return JobOutcome(queued.run_id, "closed", str(RunStatus.FAILED), str(exc))
    log.info(
        "job.run.partitioned",
        run_id=queued.run_id,
        children=planned.children,
        status=planned.status,
    )
    action = "planned" if planned.children else "closed"
    return JobOutcome(
        queued.run_id, action, planned.status, planned.message, time.monotonic() - began
    )


def _budget_gate(settings: Settings, factory: sessionmaker[Session]) -> Any:
    from app.wiring.budget import RunBudgetGate

    return RunBudgetGate(settings, factory)


def _budget_hold(
    settings: Settings, factory: sessionmaker[Session], queued: QueuedRun, params: dict[str, Any]
) -> JobOutcome | None:
    """The budget guard before a run starts (docs/budget.md): a backfill over crmsync's share is
    refused (closed ``cancelled``) unless ``allow_over_budget``; any run waits, queued, while a
    CRM it calls has no budget left for a pass's next pages (the run's ``error`` says until
    when). None: go ahead."""
    from app.wiring.budget import (
        OverBudgetError,
        check_backfill,
        pass_need,
        refresh_limit,
        scheduled_wait,
    )

    if params.get("allow_over_budget"):
        return None
    crms: list[CrmName] = []
    if queued.crm in CRM_NAMES:
        crms = [_crm(queued.crm)]
    elif queued.kind == str(SyncKind.RECOMPUTE) and params.get("push"):
        crms = list(settings.enabled_crms)
    if not crms:
        return None
    for crm in crms:
        if settings.budget_guarded(crm):
            # The limit the guard works from, here and at each commit point of the pass (one
            # call when none was seen within the hour).
            refresh_limit(settings, factory, crm)
    until = scheduled_wait(settings, factory, crms, pass_need(settings))
    if until is not None:
        message = f"{BUDGET_SPENT} until about {until.isoformat(timespec='minutes')}"
        log.info("job.run.budget_wait", run_id=queued.run_id, crms=crms, until=until.isoformat())
        _note_queued(factory, queued.run_id, message)
        return JobOutcome(queued.run_id, "waiting", str(RunStatus.QUEUED), message)
    if queued.kind == str(SyncKind.BACKFILL):
        try:
            check_backfill(settings, factory, crms, [queued.object_name], _since(params))
        except OverBudgetError as exc:
            _close_unclaimed(factory, queued.run_id, RunStatus.CANCELLED, f"refused: {exc}")
            log.warning("job.run.over_budget", run_id=queued.run_id, error=str(exc))
            return JobOutcome(queued.run_id, "closed", str(RunStatus.CANCELLED), str(exc))
    return None


def _described(result: RunResult) -> str | None:
    step = result.extra.get("backfill")
    return f"backfill: {step}" if step else None


def _close_unclaimed(
    factory: sessionmaker[Session], run_id: int, status: RunStatus, error: str | None
) -> None:
    with factory() as session:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == RunStatus.QUEUED)
            .values(status=status, error=error, finished_at=utcnow())
        )
        session.commit()


def _note_queued(factory: sessionmaker[Session], run_id: int, message: str) -> None:
    """Say on a run that stays ``queued`` why it waits (its claim clears it)."""
    with factory() as session:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == RunStatus.QUEUED)
            .values(error=message)
        )
        session.commit()


def _since(params: dict[str, Any]) -> datetime | None:
    value = params.get("since")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _crm(name: str) -> CrmName:
    if name not in CRM_NAMES:
        raise ValueError(f"unknown CRM {name!r}")
    return name


def _dispatch(
    settings: Settings,
    factory: sessionmaker[Session],
    queued: QueuedRun,
    params: dict[str, Any],
    triggered_by: str,
) -> list[RunResult]:
    """Run the entry point of the row's kind; an interrupt (cancel, worker stopping) returns
    the runs so far, the interrupted one ``cancelled``."""
    kind = queued.kind
    if is_partition_kind(kind):
        from app.wiring.partitioned import run_child
        from app.wiring.sync import SyncInterrupted

        try:
            return run_child(
                settings, factory, queued.crm, queued.object_name, params, triggered_by
            )
        except SyncInterrupted as exc:
            return exc.results
    if kind in (str(SyncKind.PULL), str(SyncKind.BACKFILL)):
        from app.wiring.sync import SyncInterrupted, run_sync

        try:
            return run_sync(
                settings,
                factory,
                kind=SyncKind(kind),
                crms=[_crm(queued.crm)],
                objects=[queued.object_name],
                since=_since(params),
                triggered_by=triggered_by,
                restart=bool(params.get("restart", False)),
            )
        except SyncInterrupted as exc:
            return exc.results
    if kind == str(SyncKind.PUSH):
        from app.wiring.push import PushInterrupted, run_push

        try:
            pushed = run_push(
                settings,
                _crm(queued.crm),
                [queued.object_name],
                triggered_by=triggered_by,
                session_factory=factory,
            )
        except PushInterrupted as exc:
            pushed = exc.outcome
        return list(pushed.results)
    if kind == str(SyncKind.RECOMPUTE):
        from app.wiring.recompute import RecomputeInterrupted, run_recompute

        try:
            outcome = run_recompute(
                settings,
                everything=bool(params.get("all", False)),
                push=bool(params.get("push", False)),
                session_factory=factory,
                triggered_by=triggered_by,
            )
        except RecomputeInterrupted as exc:
            outcome = exc.outcome
        # Its pushes too: one stopped for budget (or by the worker) is queued again on its own.
        pushes = [r for pushed in outcome.pushes for r in pushed.results]
        return ([outcome.result] if outcome.result is not None else []) + pushes
    raise ValueError(f"run {queued.run_id} has kind {kind!r}, which no job runs")
