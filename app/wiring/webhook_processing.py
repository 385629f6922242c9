"""Processing the webhook inbox: in batches, retried, exactly once in effect.

The contract the job engine registers (``app.jobs``): :func:`process_inbox_event` takes an
event id (a job payload is ids only), and :func:`sweep` processes every event that is due
(received, failed with its backoff over, or abandoned by a dead worker). Until the job engine
runs them, :class:`EmbeddedWorker` does inside ``crmsync serve``: threads fed by the webhook
routes (woken with the new ids) and a sweeper that finds what a killed process left behind.
Both go through :func:`process_inbox_events`, a batch of up to ``webhooks.batch_size``.

One attempt: :func:`app.db.inbox_store.claim_many` (a conditional ``UPDATE .. RETURNING``: an
event is claimed by one caller only), then the handler (:mod:`app.wiring.closed_won`; its
``handle_batch`` reads all the batch's records from the CRM with one call per object), which
commits each event's work **together with** that event's final state, so a kill anywhere leaves
each event either due again or finished. A handler error is recorded with
:func:`app.db.inbox_store.fail`: retried with exponential backoff, ``dead`` with its error after
``CRMSYNC_WEBHOOKS__MAX_ATTEMPTS``. After the commit, the CRM write-backs (handover note, CSM,
onboarding status) are pushed and the new-onboarding notice sent: best effort, since the
stamped columns make the next push send them anyway.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.types import CrmName
from app.crm.salesforce.auth import TokenCache
from app.crm.writes import CrmWriter
from app.db.engine import make_engine, make_session_factory
from app.db.enums import InboxStatus
from app.db.inbox_store import claim_many, due_ids, fail
from app.db.models import WebhookEvent
from app.logging import get_logger
from app.settings import Settings, get_settings

__all__ = [
    "EmbeddedWorker",
    "EventView",
    "HandlerResult",
    "ProcessingContext",
    "WritebackQueue",
    "default_context",
    "process_inbox_event",
    "process_inbox_events",
    "sweep",
]

log = get_logger("crmsync.webhooks")


@dataclass(frozen=True)
class EventView:
    """An inbox row as the handler sees it (detached from any session)."""

    id: int
    source: str
    external_id: str
    event_type: str | None
    object_id: str | None
    raw_body: str
    attempts: int

    @classmethod
    def of(cls, row: WebhookEvent) -> EventView:
        return cls(
            row.id,
            row.source,
            row.external_id,
            row.event_type,
            row.object_id,
            row.raw_body,
            row.attempts,
        )


@dataclass
class HandlerResult:
    """What one event did: its final state and, for after the commit, the rows to push per
    CRM and object, and the new plans to announce."""

    status: InboxStatus
    note: str | None = None
    writebacks: dict[CrmName, dict[str, list[int]]] = field(default_factory=dict)
    new_plan_ids: list[int] = field(default_factory=list)


class EventHandler(Protocol):
    def __call__(self, event: EventView, context: ProcessingContext) -> HandlerResult:
        """Do the event's work and commit it with the event's final state
        (:func:`app.db.inbox_store.finish`); raise to have it retried."""
        ...


class BatchHandler(Protocol):
    def handle_batch(
        self, events: Sequence[EventView], context: ProcessingContext
    ) -> dict[int, HandlerResult | Exception]:
        """Each event's result, or the exception that fails it (retried); every event of
        ``events`` has one or the other. Each event's work commits on its own."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ProcessingContext:
    """What processing needs: settings, the database, the handler and the after-commit steps."""

    settings: Settings
    session_factory: sessionmaker[Session]
    handler: EventHandler | None = None
    clock: Callable[[], datetime] = _utcnow
    #: Called after a handler's commit (write-back pushes, notices); errors are only logged.
    after_commit: list[Callable[[HandlerResult], None]] = field(default_factory=list)
    #: Per-thread state of the handler (CRM clients): built lazily, closed by :meth:`close`.
    local: threading.local = field(default_factory=threading.local)
    #: One Salesforce token for the handler's clients and the write-back pushes' writers,
    #: until it is rejected (401) or old: not a login per push.
    token_cache: TokenCache = field(default_factory=TokenCache)
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_close(self, closer: Callable[[], None]) -> None:
        with self._lock:
            self._closers.append(closer)

    def close(self) -> None:
        with self._lock:
            closers, self._closers = self._closers, []
        for closer in closers:
            try:
                closer()
            except Exception:  # closing a client must not hide anything else
                log.warning("webhooks: closing a client failed", exc_info=True)

    def get_handler(self) -> EventHandler:
        if self.handler is None:
            from app.wiring.closed_won import ClosedWonHandler

            self.handler = ClosedWonHandler()
        return self.handler


_default: ProcessingContext | None = None
_default_lock = threading.Lock()


def default_context() -> ProcessingContext:
    """The process-wide context from :func:`get_settings` (what a job worker uses): write-backs
    are pushed inline after each event."""
    global _default
    with _default_lock:
        if _default is None:
            settings = get_settings()
            factory = make_session_factory(make_engine(settings.database_url))
            context = ProcessingContext(settings, factory)
            if settings.webhooks.push_writebacks:
                context.after_commit.append(WritebackQueue(context).push_now)
            context.after_commit.append(_notice_hook(context))
            _default = context
        return _default


def _notice_hook(context: ProcessingContext) -> Callable[[HandlerResult], None]:
    def send(result: HandlerResult) -> None:
        if result.new_plan_ids and context.settings.webhooks.notice_url:
            from app.wiring.notices import send_onboarding_notices

            send_onboarding_notices(context.settings, context.session_factory, result.new_plan_ids)

    return send


def process_inbox_event(event_id: int, context: ProcessingContext | None = None) -> str:
    """One attempt at inbox event ``event_id``; returns its state afterwards (``not_due`` when
    another worker holds it, it is finished, or its retry time has not come)."""
    return process_inbox_events([event_id], context).get(event_id, "not_due")


def process_inbox_events(
    event_ids: Sequence[int], context: ProcessingContext | None = None
) -> dict[int, str]:
    """One attempt at each of ``event_ids`` that is due, as a batch: one claim for all
    (:func:`app.db.inbox_store.claim_many`), then the handler's ``handle_batch`` when it has one
    (the closed-won handler reads all their deals from the CRM in one call per object) else the
    handler per event. Each event still commits its own work with its final state, so a kill
    leaves each either finished or due again. Returns the state of each event claimed."""
    ctx = context or default_context()
    tuning = ctx.settings.webhooks
    with ctx.session_factory() as session:
        owned = claim_many(
            session, list(event_ids), ctx.clock(), timedelta(seconds=tuning.lease_seconds)
        )
        if not owned:
            return {}
        rows = session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(owned))).all()
        events = sorted((EventView.of(r) for r in rows), key=lambda e: e.id)
    handler = ctx.get_handler()
    outcomes: dict[int, HandlerResult | Exception] = {}
    batch = getattr(handler, "handle_batch", None)
    if batch is not None:
        try:
            outcomes = dict(batch(events, ctx))
        except Exception as exc:  # nothing of the batch is known to be done
            outcomes = {}
            failure: Exception = exc
            for event in events:
                outcomes.setdefault(event.id, failure)
    else:
        for event in events:
            try:
                outcomes[event.id] = handler(event, ctx)
            except Exception as exc:
                outcomes[event.id] = exc
    states: dict[int, str] = {}
    for event in events:
        outcome = outcomes.get(event.id) or RuntimeError("the handler returned nothing")
        if isinstance(outcome, Exception):
            states[event.id] = _failed(ctx, event, outcome)
            continue
        for hook in ctx.after_commit:
            try:
                hook(outcome)
            except Exception:
                log.warning("webhooks.after_commit.failed", event_id=event.id, exc_info=True)
        states[event.id] = outcome.status.value
    return states


def _failed(ctx: ProcessingContext, event: EventView, exc: Exception) -> str:
    tuning = ctx.settings.webhooks
    error = f"{type(exc).__name__}: {exc}"
    with ctx.session_factory() as session:
        status = fail(
            session,
            event.id,
            error,
            ctx.clock(),
            max_attempts=tuning.max_attempts,
            backoff=timedelta(seconds=tuning.backoff_seconds),
            backoff_cap=timedelta(seconds=tuning.backoff_cap_seconds),
        )
    level = log.error if status == InboxStatus.DEAD.value else log.warning
    level(
        "webhooks.event.failed",
        event_id=event.id,
        source=event.source,
        status=status,
        attempt=event.attempts,
        error=error,
    )
    return status


def sweep(context: ProcessingContext | None = None, *, limit: int = 1000) -> int:
    """Process every event due now (the periodic job; also after a restart). Returns how many
    were attempted."""
    ctx = context or default_context()
    with ctx.session_factory() as session:
        ids = due_ids(session, ctx.clock(), limit)
    size = ctx.settings.webhooks.batch_size
    for start in range(0, len(ids), size):
        process_inbox_events(ids[start : start + size], ctx)
    return len(ids)


# --------------------------------------------------------------------------------------------
# write-backs after the commit
# --------------------------------------------------------------------------------------------


class WritebackQueue:
    """Pushes the rows events changed (only those rows) through the push path
    (:func:`app.wiring.push.run_push`). :meth:`push_now` pushes one result's rows;
    :meth:`add` + :meth:`flush` gather many events' rows into one push per CRM."""

    def __init__(self, context: ProcessingContext) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._pending: dict[CrmName, dict[str, set[int]]] = {}

    def add(self, result: HandlerResult) -> None:
        with self._lock:
            for crm, objects in result.writebacks.items():
                for name, ids in objects.items():
                    self._pending.setdefault(crm, {}).setdefault(name, set()).update(ids)

    def push_now(self, result: HandlerResult) -> None:
        self.add(result)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for crm, objects in pending.items():
            if crm not in self.context.settings.enabled_crms or not objects:
                continue
            self._push(crm, {name: sorted(ids) for name, ids in objects.items()})

    def _push(self, crm: CrmName, rows: dict[str, list[int]]) -> None:
        from app.wiring.push import run_push
        from app.wiring.writers import build_writer

        cache = self.context.token_cache

        def writer(settings: Settings, name: CrmName) -> CrmWriter:
            return build_writer(settings, name, token_cache=cache)

        try:
            outcome = run_push(
                self.context.settings,
                crm,
                list(rows),
                only_row_ids=rows,
                triggered_by=self.context.settings.webhooks.writeback_triggered_by,
                session_factory=self.context.session_factory,
                writer_factory=writer,
            )
            log.info(
                "webhooks.writeback.pushed",
                crm=crm,
                rows=sum(len(v) for v in rows.values()),
                runs=[r.status.value for r in outcome.results],
            )
        except Exception as exc:  # stamped: the next push sends them
            log.warning("webhooks.writeback.failed", crm=crm, error=f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------
# the embedded worker (until the job engine runs process_inbox_event / sweep)
# --------------------------------------------------------------------------------------------


class EmbeddedWorker:
    """Threads that process inbox events inside the API process.

    :meth:`notify` (called by the routes after their commit) queues new ids at once; a sweeper
    thread queues every due event each ``sweep_seconds`` (retries, and what a killed process
    left). Write-backs are gathered and pushed by a thread of their own each second, so a burst
    of events costs one push per CRM, not one per event.
    """

    def __init__(self, context: ProcessingContext, *, threads: int, sweep_seconds: float) -> None:
        self.context = context
        self.threads = threads
        self.sweep_seconds = sweep_seconds
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._queued: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.writebacks = WritebackQueue(context)
        if context.settings.webhooks.push_writebacks:
            context.after_commit.append(self.writebacks.add)
        context.after_commit.append(_notice_hook(context))
        self.processed = 0
        self._inflight = 0

    def notify(self, ids: Sequence[int]) -> None:
        with self._lock:
            fresh = [i for i in ids if i not in self._queued]
            self._queued.update(fresh)
        for event_id in fresh:
            self._queue.put(event_id)

    def start(self) -> None:
        for n in range(self.threads):
            self._spawn(self._work, f"webhook-worker-{n}")
        self._spawn(self._sweep, "webhook-sweeper")
        if self.context.settings.webhooks.push_writebacks:
            self._spawn(self._push_loop, "webhook-writebacks")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._workers.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for _ in range(self.threads):
            self._queue.put(None)
        for thread in self._workers:
            thread.join(timeout)
        self._workers = []
        try:
            self.writebacks.flush()
        except Exception:
            log.warning("webhooks.writeback.failed", exc_info=True)
        self.context.close()

    def _work(self) -> None:
        size = self.context.settings.webhooks.batch_size
        while not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < size:  # whatever else is queued now, up to a batch
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            with self._lock:
                self._queued.difference_update(batch)
                self._inflight += len(batch)
            try:
                process_inbox_events(batch, self.context)
            except Exception:  # the database went away: the sweeper tries again
                log.exception("webhooks.worker.error", event_ids=batch)
            finally:
                with self._lock:
                    self._inflight -= len(batch)
                    self.processed += len(batch)
            if stop:
                return

    def _sweep(self) -> None:
        while not self._stop.wait(self.sweep_seconds):
            try:
                with self.context.session_factory() as session:
                    ids = due_ids(session, self.context.clock(), 1000)
                self.notify(ids)
            except Exception:
                log.exception("webhooks.sweeper.error")

    def _push_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.writebacks.flush()
            except Exception:
                log.exception("webhooks.writeback.error")

    def run_until_idle(self, timeout: float = 60.0) -> bool:
        """Tests and the demo: sweep now and wait until nothing is queued or due."""
        deadline = _monotonic() + timeout
        while _monotonic() < deadline:
            with self.context.session_factory() as session:
                ids = due_ids(session, self.context.clock(), 1000)
            with self._lock:
                busy = self._inflight or self._queued
            if not ids and not busy:
                return True
            self.notify(ids)
            threading.Event().wait(0.05)
        return False


def _monotonic() -> float:
    return time.monotonic()


def start_embedded_worker(settings: Settings, factory: sessionmaker[Session]) -> EmbeddedWorker:
    """The worker ``create_app`` starts when ``CRMSYNC_WEBHOOKS__EMBEDDED_WORKER`` is on."""
    worker = EmbeddedWorker(
        ProcessingContext(settings, factory),
        threads=settings.webhooks.worker_threads,
        sweep_seconds=settings.webhooks.sweep_seconds,
    )
    worker.start()
    return worker
