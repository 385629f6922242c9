"""The sweeper and the schedule: what turns the database's pending work into job messages.

Everything here only *enqueues* ids; the jobs themselves are idempotent (a queued run is claimed
once, an inbox event's status says whether it is done). So the sweeper may run on every worker,
twice, or after a Redis restart lost every message: the worst case is a message that finds
nothing to do.

* :func:`tick_incremental`: one queued ``pull`` run per configured (CRM, object), unless one
  already waits (a slow CRM does not pile up ticks).
* :func:`tick_nightly`: one queued ``recompute`` run with ``push`` (then every CRM is pushed).
* :func:`sweep`: queued runs waiting longer than the grace (message lost), runs whose worker died
  (heartbeat stopped: a resumption is queued; its pass closes the dead row as abandoned and goes
  on from the cursor), inbox events due (in batch jobs of ``CRMSYNC_WEBHOOKS__BATCH_SIZE``,
  see :func:`sweep`), retriable sync errors due (not while their CRM's share of the daily API
  budget is spent: they stay due), onboarding notices due.

Schedules fire on every worker's huey scheduler; a *slot lease* (``schedule:<name>`` in
``job_leases``, never released, expiring just before the next slot) lets only the first one of
each slot act.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import SyncKind
from app.db import job_store, leases, partition_runs
from app.db.base import utcnow
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.settings import Settings
from app.sync.holder import new_holder
from app.sync.partitions import KIND_PREFIX, MAX_PARTITIONS

log = get_logger("crmsync.jobs.sweep")

#: Kinds whose stalled runs (worker killed) the sweeper resumes. An incremental pull is not:
#: the next scheduled tick is its resumption.
RESUMED_KINDS = (
    str(SyncKind.BACKFILL),
    str(SyncKind.PUSH),
    str(SyncKind.RECOMPUTE),
    # The children of a partitioned backfill (ADR 0008): resumed from their own checkpoint.
    *(f"{KIND_PREFIX}{i}" for i in range(MAX_PARTITIONS)),
)


@dataclass
class SweepReport:
    requeued_runs: list[int] = field(default_factory=list)
    resumed_runs: dict[int, int] = field(default_factory=dict)  # dead run -> its resumption
    inbox_events: list[int] = field(default_factory=list)
    sync_errors: list[int] = field(default_factory=list)
    notices: list[int] = field(default_factory=list)  # plans whose notice was enqueued

    def as_dict(self) -> dict[str, Any]:
        return {
            "requeued_runs": self.requeued_runs,
            "resumed_runs": {str(k): v for k, v in self.resumed_runs.items()},
            "inbox_events": self.inbox_events,
            "sync_errors": self.sync_errors,
            "notices": self.notices,
        }


def take_slot(factory: sessionmaker[Session], name: str, ttl: timedelta) -> bool:
    """Whether this scheduler is the first to act in the current slot of schedule ``name``."""
    with factory() as session:
        try:
            leases.acquire(session, f"schedule:{name}", new_holder(), utcnow(), ttl)
        except leases.LeaseHeld:
            return False
    return True


def tick_incremental(
    settings: Settings, factory: sessionmaker[Session], enqueue: Callable[[int], None]
) -> list[int]:
    """Queue (and enqueue) an incremental pull of every configured CRM object."""
    made: list[int] = []
    for crm in settings.enabled_crms:
        mapping_set = load_mapping_set(
            crm, settings.mapping_file, default_currency=settings.default_currency
        )
        for object_name in mapping_set.object_names:
            with factory() as session:
                run_id, created = job_store.queue_run(
                    session,
                    kind=str(SyncKind.PULL),
                    crm=crm,
                    object_name=object_name,
                    triggered_by="schedule",
                    params={},
                    dedupe=True,
                )
            if created:
                enqueue(run_id)
                made.append(run_id)
    log.info("jobs.schedule.incremental", queued=made)
    return made


def tick_nightly(factory: sessionmaker[Session], enqueue: Callable[[int], None]) -> int | None:
    """Queue the nightly recompute of every due account, then a push of every CRM."""
    with factory() as session:
        run_id, created = job_store.queue_run(
            session,
            kind=str(SyncKind.RECOMPUTE),
            crm="cs",
            object_name="accounts",
            triggered_by="schedule",
            params={"push": True},
            dedupe=True,
        )
    if created:
        enqueue(run_id)
    log.info("jobs.schedule.nightly", run_id=run_id, created=created)
    return run_id if created else None


def sweep(
    settings: Settings,
    factory: sessionmaker[Session],
    *,
    enqueue_run: Callable[[int], None],
    enqueue_inbox: Callable[[int], None] | None,
    enqueue_error: Callable[[int], None] | None,
    enqueue_notice: Callable[[int], None] | None = None,
    enqueue_inbox_batch: Callable[[Sequence[int]], None] | None = None,
) -> SweepReport:
    """Enqueue what the database says is pending (see the module docstring).

    ``enqueue_inbox`` / ``enqueue_error`` are None while no job can process them (the webhook
    processing or the error retry is not part of this installation yet): those rows are then
    left alone, not spun on.

    Due inbox events go to ``enqueue_inbox_batch`` when given, in chunks of
    ``settings.webhooks.batch_size`` (the size the webhook routes enqueue a delivery with):
    after an outage or a worker restart thousands can be due at once, and the batch path
    processes won events in one transaction at about a quarter of the CPU per event. The batch
    job keeps what one job per event gave: it claims its events itself (one conditional
    ``UPDATE``: an event finished, leased by a live worker, or not yet due again is skipped),
    starts each opportunity's onboarding once, and fails a bad event alone. Otherwise each
    event goes to ``enqueue_inbox`` on its own.
    """
    now = utcnow()
    grace = timedelta(seconds=settings.jobs.sweep_seconds)
    ttl = timedelta(seconds=settings.sync.lease_seconds)
    report = SweepReport()
    settled: list[int] = []
    retrying = enqueue_error is not None and settings.jobs.retry_errors
    spent = _budget_spent(settings, factory) if retrying else set()
    with factory() as session:
        for run_id in job_store.queued_runs(session, now - grace):
            enqueue_run(run_id)
            report.requeued_runs.append(run_id)
        for dead in job_store.stalled_runs(session, now - 2 * ttl, RESUMED_KINDS):
            if partition_runs.is_parent(dead.params):
                # A partitioned backfill's parent has no pass of its own (no heartbeat): its
                # children do the work. Close it if they are done (a child killed after its
                # last commit and before settling it leaves that to here).
                settled.append(dead.id)
                continue
            if job_store.has_pending_run(session, dead.kind, dead.crm, dead.object):
                continue
            params = {**dict(dead.params or {}), "resumes": dead.id}
            run_id, _created = job_store.queue_run(
                session,
                kind=dead.kind,
                crm=dead.crm,
                object_name=dead.object,
                triggered_by=dead.triggered_by or "sweeper",
                params={k: v for k, v in params.items() if k in _CARRIED},
            )
            enqueue_run(run_id)
            report.resumed_runs[dead.id] = run_id
        if enqueue_inbox_batch is not None or enqueue_inbox is not None:
            due = job_store.due_inbox_events(session, now, now - grace)
            if enqueue_inbox_batch is not None:
                size = settings.webhooks.batch_size
                for start in range(0, len(due), size):
                    enqueue_inbox_batch(due[start : start + size])
            elif enqueue_inbox is not None:
                for event_id in due:
                    enqueue_inbox(event_id)
            report.inbox_events.extend(due)
        if enqueue_error is not None and settings.jobs.retry_errors:
            for error in job_store.due_sync_errors(session, now):
                if error.crm in spent:
                    continue  # scheduled work waits for budget; still due at the next sweep
                # The next attempt waits longer each time; the retry job itself resolves it.
                error.next_retry_at = now + job_store.backoff(error.attempts)
                report.sync_errors.append(error.id)
            session.commit()
            for error_id in report.sync_errors:
                enqueue_error(error_id)
        if enqueue_notice is not None:
            for plan_id in job_store.due_notices(session, now - grace):
                enqueue_notice(plan_id)
                report.notices.append(plan_id)
    for parent_id in settled:
        with factory() as session:
            partition_runs.settle(session, parent_id)
    if any(report.as_dict().values()):
        log.info("jobs.sweep", **report.as_dict())
    return report


def _budget_spent(settings: Settings, factory: sessionmaker[Session]) -> set[str]:
    """The configured CRMs with no API budget left for a pass (docs/budget.md)."""
    from app.wiring.budget import pass_need, scheduled_wait

    need = pass_need(settings)
    return {
        crm
        for crm in settings.enabled_crms
        if scheduled_wait(settings, factory, [crm], need) is not None
    }


#: Request params a resumption keeps (the pass's own params are added again when it starts).
_CARRIED = frozenset(
    {
        "since",
        "all",
        "push",
        "resumes",
        "allow_over_budget",
        # A partition's identity: its parent, its range and the parent's generation.
        "parent",
        "partition",
        "generation",
    }
)  # not "restart"
