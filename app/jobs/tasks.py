"""The job kinds on huey, their schedule, and the functions other code enqueues with.

:class:`JobQueue` registers every task on one huey instance (:func:`app.jobs.queue.build_huey`);
the API process and each worker build their own from the same settings, and huey finds a task by
its name (``crmsync.run``, ...). Payloads are ids only: the data stays in the database.

========================  =================================================================
task                      does
========================  =================================================================
``crmsync.run``           carry out one queued ``sync_runs`` row: backfill / incremental per
                          CRM and object, push, recompute (:mod:`app.jobs.runs`)
``crmsync.webhook``       process one webhook inbox event (``process_inbox_event(event_id)``
                          in ``app.wiring.webhook_processing``): what the sweeper sends when
                          the batch handler is not installed
``crmsync.webhooks``      process inbox events as one batch (``process_inbox_events(event_ids)``,
                          up to ``CRMSYNC_WEBHOOKS__BATCH_SIZE``): what the webhook routes send
                          when the API runs without its embedded worker, and the sweeper sends
                          for due events
``crmsync.notice``        one delivery round of a plan's pending onboarding notice
                          (``deliver_notice(plan_id)`` in ``app.wiring.notices``)
``crmsync.retry_error``   re-sync the record of one retriable ``sync_errors`` row
                          (``retry_sync_error(error_id)`` in ``app.wiring.error_retry``)
``crmsync.incremental``   periodic, every ``CRMSYNC_JOBS__INCREMENTAL_MINUTES``
``crmsync.nightly``       periodic, recompute + push at ``NIGHTLY_HOUR:NIGHTLY_MINUTE`` UTC
``crmsync.sweep``         periodic, every minute (:mod:`app.jobs.sweep`)
========================  =================================================================

The three handlers in other modules are looked up when a job runs (:func:`handler`): a module
that is not installed yet means the sweeper leaves those rows alone and a stray message is
logged and dropped (the row, the truth, stays pending).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from huey import crontab
from huey.api import Huey
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import make_engine, make_session_factory
from app.jobs import runs as run_jobs
from app.jobs import sweep as sweeps
from app.jobs.queue import build_huey
from app.logging import get_logger
from app.metrics import observe_job
from app.settings import Settings
from app.wiring.budget import install_usage_store, store_usage

log = get_logger("crmsync.jobs")

#: (module, function) of the handlers other issues provide; see :func:`handler`.
HANDLERS: dict[str, tuple[str, str]] = {
    "webhook": ("app.wiring.webhook_processing", "process_inbox_event"),
    "webhooks": ("app.wiring.webhook_processing", "process_inbox_events"),
    "notice": ("app.wiring.notices", "deliver_notice"),
    "retry_error": ("app.wiring.error_retry", "retry_sync_error"),
}


def handler(kind: str) -> Callable[[Any], Any] | None:
    """The function that processes one id of ``kind`` (a list of ids for ``webhooks``), or None
    while it is not installed."""
    module_name, function = HANDLERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    found = getattr(module, function, None)
    return found if callable(found) else None


class JobQueue:
    """One huey instance with crmsync's tasks registered, over one database."""

    def __init__(
        self,
        settings: Settings,
        *,
        session_factory: sessionmaker[Session] | None = None,
        huey: Huey | None = None,
        periodic: bool = True,
    ) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        if session_factory is None:
            self._engine = make_engine(settings.database_url)
            session_factory = make_session_factory(self._engine)
        self.factory = session_factory
        self.huey = huey if huey is not None else build_huey(settings)
        self.on_job_done: list[Callable[[str, float, str], None]] = [observe_job]
        # CRM calls made outside runs (a webhook's CRM reads) are stored as they pile up and
        # after every job, so the budget guard counts them (docs/budget.md).
        self._uninstall_usage = install_usage_store(session_factory)
        self._register(periodic)

    # -- registration --------------------------------------------------------------------------

    def _register(self, periodic: bool) -> None:
        huey = self.huey
        self.run_task = huey.task(name="crmsync.run")(self._run)
        self.webhook_task = huey.task(name="crmsync.webhook")(self._webhook)
        self.webhooks_task = huey.task(name="crmsync.webhooks")(self._webhooks)
        self.notice_task = huey.task(name="crmsync.notice")(self._notice)
        self.retry_error_task = huey.task(name="crmsync.retry_error")(self._retry_error)
        if not periodic:
            return
        jobs = self.settings.jobs
        if jobs.incremental_minutes > 0:
            every = jobs.incremental_minutes
            huey.periodic_task(crontab(minute=f"*/{every}"), name="crmsync.incremental")(
                self.incremental
            )
        if jobs.nightly_hour >= 0:
            huey.periodic_task(
                crontab(minute=str(jobs.nightly_minute), hour=str(jobs.nightly_hour)),
                name="crmsync.nightly",
            )(self.nightly)
        huey.periodic_task(crontab(), name="crmsync.sweep")(self.scheduled_sweep)

    def close(self) -> None:
        self._uninstall_usage()
        if self._engine is not None:
            self._engine.dispose()

    # -- enqueueing (what the API and other code call) -----------------------------------------

    def enqueue_run(self, run_id: int) -> None:
        self.run_task(int(run_id))

    def enqueue_webhook(self, event_id: int) -> None:
        self.webhook_task(int(event_id))

    def enqueue_webhooks(self, event_ids: Sequence[int]) -> None:
        """One job for a delivery's new events (ids only): processed as one batch."""
        self.webhooks_task([int(i) for i in event_ids])

    def enqueue_notice(self, notice_id: int) -> None:
        self.notice_task(int(notice_id))

    def enqueue_error_retry(self, error_id: int) -> None:
        self.retry_error_task(int(error_id))

    def depth(self) -> int:
        """Messages waiting in the broker (not counting scheduled retries)."""
        return int(self.huey.pending_count())

    # -- the tasks -----------------------------------------------------------------------------

    def _timed(self, kind: str, began: datetime, outcome: str) -> None:
        seconds = (datetime.now().astimezone() - began).total_seconds()
        store_usage(self.factory)
        for hook in self.on_job_done:
            hook(kind, seconds, outcome)

    def _run(self, run_id: int) -> str:
        began = datetime.now().astimezone()
        outcome = run_jobs.execute_run(self.settings, self.factory, run_id, self.enqueue_run)
        if outcome.requeue:
            # Stopped at a page boundary (worker stopping, budget spent): a new queued run goes
            # on from the cursor; one waiting for budget stays queued until it frees.
            for stopped in outcome.requeue:
                self._requeue(stopped)
        elif outcome.retry_in is not None:
            # Another run holds this (CRM, object): try again soon rather than at the next sweep.
            self.run_task.schedule(args=(int(run_id),), delay=outcome.retry_in)
            log.info("job.run.retry_scheduled", run_id=run_id, delay_s=outcome.retry_in)
        self._timed("run", began, outcome.action)
        return outcome.action

    def _requeue(self, run_id: int) -> None:
        """A run stopped at a page boundary (its worker shutting down, its CRM's budget share
        spent) is queued again, to go on from its cursor."""
        from app.db import job_store
        from app.db.models import SyncRun

        with self.factory() as session:
            row = session.get(SyncRun, run_id)
            if row is None:
                return
            params = {k: v for k, v in dict(row.params or {}).items() if k in sweeps._CARRIED}
            params["resumes"] = run_id
            new_id, _ = job_store.queue_run(
                session,
                kind=row.kind,
                crm=row.crm,
                object_name=row.object,
                triggered_by=row.triggered_by or "job",
                params=params,
                dedupe=True,
            )
        self.enqueue_run(new_id)
        log.info("job.run.requeued", run_id=run_id, resumption=new_id)

    def _by_handler(self, kind: str, item_id: int | list[int]) -> str:
        began = datetime.now().astimezone()
        found = handler(kind)
        if found is None:
            log.warning("job.not_wired", kind=kind, id=item_id, handler=HANDLERS[kind])
            self._timed(kind, began, "not_wired")
            return "not_wired"
        found(item_id)
        self._timed(kind, began, "ran")
        return "ran"

    def _webhook(self, event_id: int) -> str:
        return self._by_handler("webhook", event_id)

    def _webhooks(self, event_ids: list[int]) -> str:
        return self._by_handler("webhooks", event_ids)

    def _notice(self, notice_id: int) -> str:
        return self._by_handler("notice", notice_id)

    def _retry_error(self, error_id: int) -> str:
        return self._by_handler("retry_error", error_id)

    # -- the schedule --------------------------------------------------------------------------

    def _slot(self, name: str, every: timedelta) -> bool:
        # Expire a little before the next slot, so that slot's first scheduler takes it again.
        return sweeps.take_slot(self.factory, name, max(every - timedelta(seconds=15), every / 2))

    def incremental(self) -> list[int]:
        every = timedelta(minutes=self.settings.jobs.incremental_minutes)
        if not self._slot("incremental", every):
            return []
        return sweeps.tick_incremental(self.settings, self.factory, self.enqueue_run)

    def nightly(self) -> int | None:
        if not self._slot("nightly", timedelta(hours=23)):
            return None
        return sweeps.tick_nightly(self.factory, self.enqueue_run)

    def scheduled_sweep(self) -> sweeps.SweepReport | None:
        if not self._slot("sweep", timedelta(seconds=60)):
            return None
        return self.sweep()

    def sweep(self) -> sweeps.SweepReport:
        return sweeps.sweep(
            self.settings,
            self.factory,
            enqueue_run=self.enqueue_run,
            # Due events in batch jobs when the batch handler is there (a backlog after an
            # outage costs a quarter of the CPU); one job per event otherwise.
            enqueue_inbox=self.enqueue_webhook if handler("webhook") else None,
            enqueue_inbox_batch=self.enqueue_webhooks if handler("webhooks") else None,
            enqueue_error=self.enqueue_error_retry if handler("retry_error") else None,
            enqueue_notice=self.enqueue_notice if handler("notice") else None,
        )
