"""The run scope: what every pass of work over one CRM object shares, as one context manager.

A pass (a pull today; push, recompute, webhook processing and retries next) must:

1. take the object's lease, or be refused: a refused pass is recorded as a ``cancelled`` run
   with the holder and expiry in its message ("could not start: ..."), and
   :class:`RunRefused` carries its result;
2. close the runs a killed process left ``running`` (holding the lease, no live pass can own
   them), as ``failed`` ("abandoned: ...");
3. start its ``sync_runs`` row, and keep lease and row alive with a heartbeat thread;
4. finish the row once, whatever happens: ``succeeded``/``partial`` on a normal exit,
   ``cancelled`` on SIGINT/SIGTERM (raised as ``KeyboardInterrupt``), ``failed`` on any other
   exception, with the cursor reached and the API calls made; then stop the heartbeat and
   release the lease.

Two more ways in, for jobs (:mod:`app.jobs`):

* **Adopting a queued run.** The API and the schedule create a ``queued`` ``sync_runs`` row first
  and enqueue only its id. The job runs the ordinary entry point (``run_sync``, ``run_push``,
  ``run_recompute``) inside :func:`adopting`; the scope whose (kind, CRM, object) matches then
  claims that row (``queued`` -> ``running``, once) instead of inserting one. A row no longer
  ``queued`` (cancelled, or already claimed by an earlier delivery of the same message) stops the
  pass before any work: a message delivered twice does the work once. A pass refused because a
  live pass holds the lease leaves its row ``queued`` (no ``cancelled`` row): the sweeper
  enqueues it again.
* **Cancelling.** A run asked to stop (``POST /api/v1/sync/runs/{id}/cancel`` sets its status to
  ``cancelling``), or every run of a worker that is shutting down (:func:`request_stop`), stops
  at its next commit point: the work sets ``scope.cursor_to`` right after each committed page
  or chunk, and that assignment checks. It raises :class:`RunCancelled`, a
  ``KeyboardInterrupt`` like SIGINT's, so every engine closes the run ``cancelled`` at the last
  committed page, with the cursor there, exactly as on Ctrl-C.
* **The budget guard mid-run.** A job runs its pass inside :func:`budget_gated` with a
  :class:`BudgetGate` (``app.wiring.budget``): at the same commit points, a pass over a CRM
  whose share of the daily API budget is spent stops the same way, closed ``cancelled`` with
  an error beginning "waiting for API budget" (:data:`app.core.runs.BUDGET_SPENT`); the job
  queues it again, and that run waits, queued, until the budget frees (docs/budget.md).

A process killed outright (kill -9) runs none of step 4: its row stays ``running`` and its lease
stays behind. The next pass takes the lease over at once when the dead holder ran on this host
(:mod:`app.sync.holder`), else once the TTL has passed, and step 2 closes the row. Nothing is lost
or duplicated, since the work itself commits page by page with its cursor.

The lease has a short TTL (``CRMSYNC_SYNC__LEASE_SECONDS``, 60 s), so a live pass must renew it
however long one step takes (a page, a Bulk job wait, the adapter's retries): a daemon thread
renews it, and beats the run's ``heartbeat_at``, every third of the TTL, through the store's own
connection. Page commits still renew it in their transaction as a fencing check
(:meth:`~app.sync.ports.PageWriter.renew_lease`), so a pass that lost its lease stops without
writing.

Usage::

    scope = RunScope(store, RunSpec("pull", "salesforce", "Account"), holder, ttl)
    try:
        with scope:                                  # lease held, abandoned runs closed
            stored = store.load_cursor(...)          # under the lease
            scope.start(params={...}, cursor_from={...}, api_calls=client_calls)
            ...  scope.counts.read += n; scope.cursor_to = {...}  (after each commit)
        # normal exit: succeeded (partial when counts.failed)
    except RunRefused as refused:
        return refused.result
    except Exception:
        return scope.result                          # the run closed as failed
    return scope.result
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol

from app.core.runs import BUDGET_SPENT, WORKER_STOPPED, RunStatus
from app.errors import CrmsyncError, ErrorCategory
from app.logging import get_logger
from app.sync.ports import Counts, LeaseHeldError, SyncStore

log = get_logger("crmsync.sync.lease")
run_log = get_logger("crmsync.sync")


@dataclass
class RunResult:
    """What one pass did: the run row's outcome, as the CLI, the API and jobs report it."""

    run_id: int | None  # None: no run row (never started, or already complete in its backfill)
    crm: str
    object_name: str
    kind: str
    status: RunStatus
    counts: Counts
    cursor_to: dict[str, Any] | None
    error: str | None = None
    used_bulk: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    error_category: ErrorCategory | None = None  # of the error that failed the pass

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "crm": self.crm,
            "object": self.object_name,
            "kind": self.kind,
            "status": str(self.status),
            "bulk": self.used_bulk,
            **self.counts.as_dict(),
            "cursor": self.cursor_to,
            "error": self.error,
            **self.extra,
        }


@dataclass(frozen=True)
class RunSpec:
    """Which pass: its kind (``pull``, ``backfill``, ...), CRM, object and trigger.

    ``lease`` is the lock it holds; ``abandoned_kinds`` are the run kinds that share it, whose
    ``running`` rows the scope closes as abandoned (a pull and a backfill of one object exclude
    each other).
    """

    kind: str
    crm: str
    object_name: str
    triggered_by: str = "cli"
    abandoned_kinds: Sequence[str] = ()
    #: A partition of a partitioned backfill (ADR 0008) holds its own lease,
    #: ``sync:<crm>:<object>:p<i>``, so partitions of one object run at once on different
    #: workers; None: the object's lease.
    partition: int | None = None

    @property
    def lease(self) -> str:
        base = f"sync:{self.crm}:{self.object_name}"
        return base if self.partition is None else f"{base}:p{self.partition}"


def build_result(
    spec: RunSpec,
    status: RunStatus,
    *,
    run_id: int | None = None,
    counts: Counts | None = None,
    cursor_to: dict[str, Any] | None = None,
    error: str | None = None,
    used_bulk: bool = False,
    error_category: ErrorCategory | None = None,
) -> RunResult:
    """The one way to build a :class:`RunResult` (run, refusal, or a pass never started)."""
    return RunResult(
        run_id,
        spec.crm,
        spec.object_name,
        spec.kind,
        status,
        counts if counts is not None else Counts(),
        cursor_to,
        error,
        used_bulk,
        error_category=error_category,
    )


@dataclass
class QueuedRun:
    """A ``queued`` run row a job is to carry out (see :func:`adopting`)."""

    run_id: int
    kind: str
    crm: str
    object_name: str
    claimed: bool = False

    def matches(self, spec: RunSpec) -> bool:
        return (self.kind, self.crm, self.object_name) == (spec.kind, spec.crm, spec.object_name)


class BudgetGate(Protocol):
    """The budget guard at a pass's commit points (implemented in ``app.wiring.budget``)."""

    def stop_reason(self, crm: str) -> str | None:
        """Why a pass over ``crm`` must stop now (crmsync's share is spent: "until about
        <time>"), or None to go on."""
        ...


_QUEUED: ContextVar[QueuedRun | None] = ContextVar("crmsync_queued_run", default=None)
_GATE: ContextVar[BudgetGate | None] = ContextVar("crmsync_budget_gate", default=None)
_STOPPING = threading.Event()


@contextmanager
def adopting(queued: QueuedRun) -> Iterator[QueuedRun]:
    """Inside this block the scope of ``queued``'s (kind, CRM, object) claims its row.

    A context variable rather than a parameter: the pull, push and recompute engines build
    their scopes deep inside; a job adopts its row without each entry point growing an argument.
    """
    token = _QUEUED.set(queued)
    try:
        yield queued
    finally:
        _QUEUED.reset(token)


@contextmanager
def budget_gated(gate: BudgetGate | None) -> Iterator[None]:
    """Inside this block every pass (and the passes it starts: a recompute's pushes) asks
    ``gate`` at each commit point whether its CRM's budget is spent (None: no gate)."""
    token = _GATE.set(gate)
    try:
        yield
    finally:
        _GATE.reset(token)


def request_stop() -> None:
    """Stop every run of this process at its next commit point (a worker shutting down)."""
    _STOPPING.set()


def clear_stop() -> None:
    """Undo :func:`request_stop` (a worker started again in the same process, tests)."""
    _STOPPING.clear()


def stop_requested() -> bool:
    return _STOPPING.is_set()


class RunCancelled(KeyboardInterrupt):
    """The run was asked to stop (by an operator, its worker shutting down, or the budget
    guard); raised at a commit point, so it ends ``cancelled`` at its last committed page, like
    SIGINT."""


class BudgetSpent(RunCancelled):
    """The budget guard stopped the run at a commit point; the message says until when."""


class RunRefused(Exception):
    """A live pass holds the lease; the refused run was recorded as ``cancelled``."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.error)
        self.result = result


class Heartbeat:
    """Renews a lease (and beats a run) every ``interval`` seconds until stopped."""

    def __init__(
        self, store: SyncStore, name: str, holder: str, ttl: timedelta, interval: float
    ) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.interval = interval
        self.run_id: int | None = None
        self.beats = 0
        self.lost = threading.Event()
        self._stop = threading.Event()
        #: Held while a beat talks to the database (see :meth:`idle`).
        self._beating = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="crmsync-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, self.interval))

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @contextmanager
    def idle(self) -> Iterator[None]:
        """No beat runs within the block: the thread waits, holding no lock but this one.

        For forking worker processes (a recompute's chunk workers): a thread caught inside a
        database call or a log write at the fork would leave the child a lock nobody releases.
        """
        with self._beating:
            yield

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._beating:
                if not self._beat():
                    return

    def _beat(self) -> bool:
        """One beat; False once the lease is lost (the loop ends)."""
        try:
            held = self.store.heartbeat(self.name, self.holder, self.ttl, self.run_id)
        except Exception as exc:  # a database blip: the next beat tries again
            log.warning("sync.lease.heartbeat_failed", lease=self.name, error=str(exc))
            return True
        self.beats += 1
        if not held:
            # Stalled past the TTL and taken over: the next page commit's fencing check
            # stops the pass; beating on would only fight the new holder.
            self.lost.set()
            log.warning("sync.lease.lost", lease=self.name, holder=self.holder)
            return False
        return True


class RunScope:
    """A pass's lease, heartbeat and run row; see the module docstring."""

    def __init__(self, store: SyncStore, spec: RunSpec, holder: str, ttl: timedelta) -> None:
        self.store = store
        self.spec = spec
        self.name = spec.lease
        self.holder = holder
        self.ttl = ttl
        self.previous: str | None = None  # the expired or dead holder we took the lease from
        self.heartbeat = Heartbeat(store, self.name, holder, ttl, ttl.total_seconds() / 3)
        self.run_id: int | None = None
        self.counts = Counts()
        self._cursor_to: dict[str, Any] | None = None
        self.used_bulk = False
        self.queued = _QUEUED.get()
        if self.queued is not None and (self.queued.claimed or not self.queued.matches(spec)):
            self.queued = None  # another pass of the same command, not the one to adopt
        self.result: RunResult | None = None  # set once the run is finished
        self._api_calls: Callable[[], int] | None = None
        self._calls_before = 0
        self._began = 0.0
        self.gate = _GATE.get()

    @property
    def cursor_to(self) -> dict[str, Any] | None:
        """Where the pass stands; the work sets it right after each commit."""
        return self._cursor_to

    @cursor_to.setter
    def cursor_to(self, value: dict[str, Any] | None) -> None:
        # Setting it marks a commit point: a run asked to stop stops here, with this cursor.
        self._cursor_to = value
        if self.run_id is not None and self.result is None:
            self.check_cancelled()

    def reached_end(self, value: dict[str, Any] | None) -> None:
        """The pass's last commit point: its stream is read to the end. A cancel still stops
        it here; the budget guard does not (no call is left to make)."""
        self._cursor_to = value
        if self.run_id is not None and self.result is None:
            self.check_cancelled(budget=False)

    def check_cancelled(self, *, budget: bool = True) -> None:
        """Raise :class:`RunCancelled` if this run was asked to stop (or its worker stops), and
        :class:`BudgetSpent` if its gate says the CRM's budget share is spent."""
        if _STOPPING.is_set():
            raise RunCancelled("worker stopping")
        assert self.run_id is not None
        if self.store.cancel_requested(self.run_id):
            raise RunCancelled("cancel requested")
        if budget and self.gate is not None:
            reason = self.gate.stop_reason(self.spec.crm)
            if reason is not None:
                raise BudgetSpent(reason)

    # -- the lease ---------------------------------------------------------------------------

    def __enter__(self) -> RunScope:
        try:
            self.previous = self.store.acquire_lease(self.name, self.holder, self.ttl)
        except LeaseHeldError as exc:
            if self.queued is not None:
                # A job's queued run waits for its turn: the row stays queued, the sweeper
                # enqueues it again; no "could not start" row.
                raise RunRefused(self._waiting(str(exc))) from None
            raise RunRefused(self._refuse(str(exc))) from None
        if self.previous is not None:
            log.info(
                "sync.lease.taken_over", lease=self.name, holder=self.holder, previous=self.previous
            )
        self.heartbeat.start()
        try:
            if self.spec.abandoned_kinds:
                # Holding the lease, no live pass can own a run still marked running: its
                # process died (killed, machine lost). Close it, so nobody sees it run forever.
                self.store.close_abandoned_runs(
                    self.spec.crm,
                    self.spec.object_name,
                    list(self.spec.abandoned_kinds),
                    "abandoned: the process stopped without finishing this pass (killed?); a "
                    f"later pass ({self.holder}) took its lease over",
                )
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.run_id is not None and self.result is None:
                self._close_on_exit(exc)
        finally:
            self._release()

    def _release(self) -> None:
        self.heartbeat.stop()
        try:
            self.store.release_lease(self.name, self.holder)
        except Exception as error:  # do not hide the pass's own outcome behind this
            # The lease then expires, or is taken over at once once this process has exited.
            log.warning("sync.lease.release_failed", lease=self.name, error=str(error))

    def _refuse(self, reason: str) -> RunResult:
        """Record a pass that could not start because a live pass holds the lease."""
        spec = self.spec
        run_id = self.store.start_run(
            kind=spec.kind,
            crm=spec.crm,
            object_name=spec.object_name,
            triggered_by=spec.triggered_by,
            params={},
            cursor_from=None,
        )
        message = f"could not start: {reason} (another pass is running; try again later)"
        counts = Counts()
        self.store.finish_run(
            run_id, counts, status=RunStatus.CANCELLED, cursor_to=None, error=message
        )
        run_log.warning(
            "sync.run.refused",
            crm=spec.crm,
            object=spec.object_name,
            kind=spec.kind,
            error=message,
        )
        return build_result(spec, RunStatus.CANCELLED, run_id=run_id, counts=counts, error=message)

    def _waiting(self, reason: str) -> RunResult:
        assert self.queued is not None
        message = f"waiting: {reason}; it stays queued"
        run_log.info(
            "sync.run.waiting",
            crm=self.spec.crm,
            object=self.spec.object_name,
            kind=self.spec.kind,
            run_id=self.queued.run_id,
            error=message,
        )
        return build_result(self.spec, RunStatus.QUEUED, run_id=self.queued.run_id, error=message)

    # -- the run row -------------------------------------------------------------------------

    def start(
        self,
        *,
        params: Mapping[str, Any],
        cursor_from: dict[str, Any] | None,
        api_calls: Callable[[], int] | None = None,
        **log_fields: Any,
    ) -> int:
        """Start the run row (beaten by the heartbeat from now on); ``api_calls`` reads the
        client's call counter, so the run records the calls made since."""
        spec = self.spec
        self._api_calls = api_calls
        self._calls_before = api_calls() if api_calls is not None else 0
        self._cursor_to = cursor_from
        if self.queued is not None:
            queued = self.queued
            queued.claimed = True
            if not self.store.claim_run(
                queued.run_id, params=dict(params), cursor_from=cursor_from
            ):
                # Cancelled while queued, or an earlier delivery of the same message ran it.
                raise RunRefused(
                    build_result(
                        spec,
                        RunStatus.CANCELLED,
                        run_id=queued.run_id,
                        error="not started: the run is no longer queued (cancelled, or "
                        "already run by an earlier delivery of its job)",
                    )
                )
            self.run_id = queued.run_id
        else:
            self.run_id = self.store.start_run(
                kind=spec.kind,
                crm=spec.crm,
                object_name=spec.object_name,
                triggered_by=spec.triggered_by,
                params=dict(params),
                cursor_from=cursor_from,
            )
        self.heartbeat.run_id = self.run_id
        self._began = time.monotonic()
        run_log.info(
            "sync.run.start",
            crm=spec.crm,
            object=spec.object_name,
            kind=spec.kind,
            run_id=self.run_id,
            cursor_from=cursor_from,
            holder=self.holder,
            **log_fields,
        )
        return self.run_id

    def calls_made(self) -> int:
        """API calls made since the run started."""
        return self._api_calls() - self._calls_before if self._api_calls is not None else 0

    def finish(
        self,
        status: RunStatus,
        *,
        error: str | None = None,
        error_category: ErrorCategory | None = None,
    ) -> RunResult:
        """Close the run row (once) with the counts and ``cursor_to`` reached."""
        if self.run_id is None:
            raise RuntimeError("finish() before start()")
        if self.result is not None:
            return self.result
        self.counts.api_calls = self.calls_made()
        self.store.finish_run(
            self.run_id, self.counts, status=status, cursor_to=self.cursor_to, error=error
        )
        self.result = build_result(
            self.spec,
            status,
            run_id=self.run_id,
            counts=self.counts,
            cursor_to=self.cursor_to,
            error=error,
            used_bulk=self.used_bulk,
            error_category=error_category,
        )
        _log_end(self.result, time.monotonic() - self._began)
        return self.result

    def _close_on_exit(self, exc: BaseException | None) -> None:
        if exc is None:
            self.finish(RunStatus.PARTIAL if self.counts.failed else RunStatus.SUCCEEDED)
        elif isinstance(exc, BudgetSpent):
            self.finish(
                RunStatus.CANCELLED,
                error=f"{BUDGET_SPENT} (crmsync's share of the daily API limit is spent) {exc}: "
                "stopped after its last committed page (the cursor is there); queued again, it "
                "resumes there once the budget frees",
            )
        elif isinstance(exc, RunCancelled):
            why = (
                f"{WORKER_STOPPED}; the schedule or the sweeper runs it again"
                if str(exc) == "worker stopping"
                else "cancelled on request"
            )
            self.finish(
                RunStatus.CANCELLED,
                error=f"{why}: stopped after its last committed page (the cursor is there)",
            )
        elif isinstance(exc, KeyboardInterrupt):
            # SIGINT, or SIGTERM raised as one by the CLI (app.cli.signals). The work being
            # written was rolled back with its cursor: the same command resumes there.
            signal_name = str(exc) or "SIGINT"
            self.finish(
                RunStatus.CANCELLED,
                error=f"interrupted ({signal_name}): stopped at the last committed page; run "
                "the same command again to resume",
            )
        elif isinstance(exc, Exception):
            # An upstream failure that outlived the retries ends the pass as ``failed`` with
            # the cursor at the last committed page; so does anything else (a bug, a database
            # outage), logged with its traceback.
            if not isinstance(exc, CrmsyncError):
                run_log.exception(
                    "sync.run.crashed",
                    crm=self.spec.crm,
                    object=self.spec.object_name,
                    run_id=self.run_id,
                )
            self.finish(
                RunStatus.FAILED,
                error=f"{type(exc).__name__}: {exc}",
                error_category=exc.category if isinstance(exc, CrmsyncError) else None,
            )


def _log_end(result: RunResult, seconds: float) -> None:
    """``sync.run.end`` at INFO (WARNING when the pass did not succeed), with its counts."""
    level = "info" if result.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) else "warning"
    getattr(run_log, level)(
        "sync.run.end",
        crm=result.crm,
        object=result.object_name,
        kind=result.kind,
        run_id=result.run_id,
        status=str(result.status),
        **result.counts.as_dict(),
        bulk=result.used_bulk,
        duration_s=round(seconds, 3),
        error=result.error,
    )
