"""Recompute health, tier, renewal and lifecycle, and (``push=True``) write them to the CRMs.

:func:`run_recompute` is the one entry point (the CLI ``crmsync health recompute``, the demo and
the scheduled job call it). It is a ``sync_runs`` row of kind ``recompute`` (crm ``cs``, object
``accounts``) under the lease ``sync:cs:accounts``, through the same
:class:`~app.sync.run_scope.RunScope` as the pull and the push: one recompute at a time, a run
killed outright is closed as ``failed`` ("abandoned") by the next one, which takes the lease over
at once on the same host.

Work goes in chunks of accounts (``recompute.chunk_size``, 5,000): each chunk's inputs are read
with one ``SELECT`` per table (:func:`app.db.health_store.load_chunk`), each account is computed
by the pure :func:`app.domain.recompute.compute_account`, and the chunk's outputs are written in
bulk in one transaction fenced by the run's lease (:mod:`app.wiring.recompute_chunk`). A chunk
is all or nothing: a run killed between chunks leaves the committed ones computed for the day,
and the next run selects only the rest. Memory stays that of one chunk per process.

With more than one core and enough accounts, chunks run in worker processes side by side
(``recompute.workers``, :mod:`app.wiring.recompute_pool`); this process keeps the run, its
lease and heartbeat, and counts what the workers commit.

What is selected, and how the result reaches the CRM: docs/recompute.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus, SyncKind
from app.core.types import CrmName
from app.db import runs
from app.db.engine import make_engine, make_session_factory
from app.db.health_store import due_account_ids, live_account_ids, load_feeds
from app.db.sync_store import SqlSyncStore
from app.domain.config import ScoringConfig
from app.errors import ConfigError
from app.logging import get_logger
from app.settings import Settings
from app.sync.holder import new_holder
from app.sync.ports import Counts
from app.sync.run_scope import RunRefused, RunResult, RunScope, RunSpec
from app.wiring.gc_passes import fewer_gc_passes
from app.wiring.recompute_chunk import RUN_CRM, RUN_OBJECT, ChunkDone, ChunkJob, run_chunk
from app.wiring.recompute_pool import ChunkPool, cpu_count, start_method

if TYPE_CHECKING:  # the push wiring (and the CRM clients) load only for --push
    from app.wiring.push import PushOutcome

log = get_logger("crmsync.recompute")

#: Workers started by default (``recompute.workers`` 0): the usable cores, at most this many.
MAX_AUTO_WORKERS = 4
#: The smallest chunk worth a worker's round trip, and how many chunks each worker should get.
MIN_CHUNK = 500
CHUNKS_PER_WORKER = 4
#: The spec of every recompute run (its lease is ``sync:cs:accounts``).
SPEC_KIND = str(SyncKind.RECOMPUTE)


@dataclass(frozen=True)
class RecomputeProgress:
    """After each committed chunk: accounts done of the total selected, and how many changed."""

    done: int
    total: int
    changed: int


@dataclass
class RecomputeOutcome:
    """One recompute command: its run, what it selected and wrote, and the pushes after it."""

    as_of: date
    result: RunResult | None = None
    selected: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    events: int = 0
    stamped_columns: int = 0
    #: Processes that computed (1: the command's own; see ``recompute.workers``).
    workers: int = 1
    pushes: list[PushOutcome] = field(default_factory=list)
    push_errors: dict[str, str] = field(default_factory=dict)
    #: Seconds spent selecting, reading, computing and writing (the push not included).
    timings: dict[str, float] = field(
        default_factory=lambda: {"select": 0.0, "read": 0.0, "compute": 0.0, "write": 0.0}
    )

    def add(self, chunk: ChunkDone) -> None:
        """Count one committed chunk (its seconds add up over the workers: CPU-like, not
        wall)."""
        self.changed += chunk.changed
        self.unchanged += chunk.unchanged
        self.failed += chunk.failed
        self.events += chunk.events
        self.stamped_columns += chunk.stamped_columns
        self.timings["read"] += chunk.read_s
        self.timings["compute"] += chunk.compute_s
        self.timings["write"] += chunk.write_s

    @property
    def status(self) -> RunStatus | None:
        return None if self.result is None else self.result.status

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": SPEC_KIND,
            "as_of": self.as_of.isoformat(),
            "run_id": None if self.result is None else self.result.run_id,
            "status": None if self.result is None else str(self.result.status),
            "selected": self.selected,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "events": self.events,
            "stamped_columns": self.stamped_columns,
            "workers": self.workers,
            "error": None if self.result is None else self.result.error,
            "seconds": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if self.pushes or self.push_errors:
            out["push"] = [p.summary() for p in self.pushes]
            if self.push_errors:
                out["push_errors"] = dict(self.push_errors)
        return out


class RecomputeInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped the recompute (or its push): ``outcome`` holds what was done."""

    def __init__(self, outcome: RecomputeOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


def _chunks(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def run_recompute(
    settings: Settings,
    *,
    account_ids: Sequence[int] | None = None,
    everything: bool = False,
    push: bool = False,
    session_factory: sessionmaker[Session] | None = None,
    on_progress: Callable[[RecomputeProgress], None] | None = None,
    as_of: date | None = None,
    triggered_by: str = "cli",
    chunk_size: int | None = None,
    push_runner: Callable[..., PushOutcome] | None = None,
) -> RecomputeOutcome:
    """Recompute the due accounts (all with ``everything``; only ``account_ids`` when given) as
    of ``as_of`` (default: today, UTC), then with ``push`` push every configured CRM.

    Raises :class:`ConfigError` for ``account_ids`` that are not live accounts (before any
    run), and :class:`RecomputeInterrupted` on SIGINT/SIGTERM. A refused or failed run is in
    the outcome's ``result``; then nothing is pushed.
    """
    own_engine = None
    if session_factory is None:
        own_engine = make_engine(settings.database_url)
        session_factory = make_session_factory(own_engine)
    day = as_of or datetime.now(UTC).date()
    outcome = RecomputeOutcome(day)
    try:
        if account_ids is not None:
            _check_accounts(session_factory, account_ids)
        with fewer_gc_passes():
            _recompute(
                settings,
                session_factory,
                outcome,
                account_ids=account_ids,
                everything=everything,
                on_progress=on_progress,
                triggered_by=triggered_by,
                chunk_size=chunk_size,
            )
        if push and outcome.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL):
            _push_all(settings, session_factory, outcome, triggered_by, push_runner)
        return outcome
    finally:
        if own_engine is not None:
            own_engine.dispose()


def _check_accounts(factory: sessionmaker[Session], account_ids: Sequence[int]) -> None:
    with factory() as session:
        live = set(live_account_ids(session.connection(), account_ids))
    unknown = [str(i) for i in account_ids if i not in live]
    if unknown:
        raise ConfigError(f"--account {', '.join(unknown)}: no such account (or it was deleted)")


def _recompute(
    settings: Settings,
    factory: sessionmaker[Session],
    outcome: RecomputeOutcome,
    *,
    account_ids: Sequence[int] | None,
    everything: bool,
    on_progress: Callable[[RecomputeProgress], None] | None,
    triggered_by: str,
    chunk_size: int | None,
) -> None:
    cfg: ScoringConfig = settings.scoring.config
    spec = RunSpec(SPEC_KIND, RUN_CRM, RUN_OBJECT, triggered_by, abandoned_kinds=(SPEC_KIND,))
    ttl = timedelta(seconds=settings.sync.lease_seconds)
    holder = new_holder()
    scope = RunScope(SqlSyncStore(factory), spec, holder, ttl)
    day = outcome.as_of
    try:
        with scope:
            began = time.perf_counter()
            with factory() as session:
                conn = session.connection()
                ids = due_account_ids(conn, day, only=account_ids, everything=everything)
                feeds = load_feeds(conn)
            outcome.timings["select"] += time.perf_counter() - began
            outcome.selected = len(ids)
            run_id = scope.start(
                params={
                    "as_of": day.isoformat(),
                    "all": everything,
                    "accounts": list(account_ids) if account_ids is not None else None,
                    "selected": len(ids),
                },
                cursor_from=None,
            )
            job = ChunkJob(run_id, scope.name, scope.holder, day, feeds, cfg)
            workers = worker_count(settings, factory, len(ids))
            outcome.workers = workers
            chunks = _chunks(ids, chunk_size or _chunk_size(settings, len(ids), workers))
            done = last = 0
            try:
                for chunk in _interruptible(
                    _run_chunks(settings, factory, scope, job, chunks, workers)
                ):
                    outcome.add(chunk)
                    done += chunk.accounts
                    last = max(last, chunk.last_account_id)
                    scope.cursor_to = {"done": done, "last_account_id": last}
                    if on_progress is not None:
                        on_progress(RecomputeProgress(done, len(ids), outcome.changed))
            finally:
                _recount(factory, run_id, scope, outcome)
    except RunRefused as refused:
        outcome.result = refused.result
        return
    except KeyboardInterrupt:
        outcome.result = scope.result
        raise RecomputeInterrupted(outcome) from None
    except Exception:
        outcome.result = scope.result
        if scope.result is None:
            raise
        return
    outcome.result = scope.result
    if outcome.result is not None:
        outcome.result.extra.update(
            selected=outcome.selected, events=outcome.events, stamped=outcome.stamped_columns
        )


def _recount(
    factory: sessionmaker[Session], run_id: int, scope: RunScope, outcome: RecomputeOutcome
) -> None:
    """The run's counts as its row has them: each chunk added its own in its transaction
    (:func:`app.db.runs.add_run_progress`), so the row counts every committed chunk, also one
    whose worker was stopped (interrupt, another worker's failure) after its commit and before
    its answer reached this process. The run closes with these figures. Should the row not be
    readable (the database gone mid-run), the chunks this process heard of are counted."""
    try:
        with factory() as session:
            committed = runs.committed_counts(session, run_id)
    except Exception as exc:  # the run's own error, if any, is the one to report
        log.warning("recompute.recount_failed", run_id=run_id, error=str(exc))
        failed = outcome.failed
        committed = Counts(
            read=outcome.changed + outcome.unchanged + failed,
            updated=outcome.changed,
            unchanged=outcome.unchanged,
            failed=failed,
        )
    counts = scope.counts
    counts.read, counts.updated = committed.read, committed.updated
    counts.unchanged, counts.failed = committed.unchanged, committed.failed
    outcome.changed, outcome.unchanged, outcome.failed = (
        committed.updated,
        committed.unchanged,
        committed.failed,
    )


def _interruptible(chunks: Iterator[ChunkDone]) -> Iterator[ChunkDone]:
    """``chunks``, where an error raised while unwinding from Ctrl-C / SIGTERM is that
    interrupt: a driver interrupted inside a ``COPY`` ends it with an error of its own (the
    server's "COPY from stdin failed") whose context is the interrupt, and the run must end
    ``cancelled``, not ``failed``."""
    try:
        yield from chunks
    except Exception as exc:
        interrupt = _interrupt_behind(exc)
        if interrupt is None:
            raise
        raise interrupt from None


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt in ``exc``'s chain of causes and contexts, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _database_url(factory: sessionmaker[Session]) -> str | None:
    """The URL a worker process connects to: the caller's own database (None: not one a
    second process can open, such as an in-memory SQLite)."""
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):
        return None
    url = bind.url
    if url.get_backend_name() == "sqlite" and (url.database in (None, "", ":memory:")):
        return None
    return url.render_as_string(hide_password=False)


def worker_count(settings: Settings, factory: sessionmaker[Session], accounts: int) -> int:
    """How many processes compute: ``recompute.workers`` (0: the usable cores, at most
    :data:`MAX_AUTO_WORKERS`), one when there is too little to share (fewer than two chunks'
    worth) or the database is not one another process can open."""
    wanted = settings.recompute.workers or min(MAX_AUTO_WORKERS, cpu_count())
    if wanted <= 1 or accounts < 2 * MIN_CHUNK or _database_url(factory) is None:
        return 1
    return min(wanted, accounts // MIN_CHUNK)


def _chunk_size(settings: Settings, accounts: int, workers: int) -> int:
    """``recompute.chunk_size``; with several workers smaller when that gives each at least
    :data:`CHUNKS_PER_WORKER` chunks (the last chunk is one worker's alone)."""
    size = settings.recompute.chunk_size
    if workers <= 1:
        return size
    return max(MIN_CHUNK, min(size, -(-accounts // (workers * CHUNKS_PER_WORKER))))


def _run_chunks(
    settings: Settings,
    factory: sessionmaker[Session],
    scope: RunScope,
    job: ChunkJob,
    chunks: Sequence[Sequence[int]],
    workers: int,
) -> Iterator[ChunkDone]:
    """Each chunk run and committed, in this process or by ``workers`` worker processes."""
    url = _database_url(factory)
    if workers <= 1 or len(chunks) <= 1 or url is None:
        for chunk in chunks:
            yield run_chunk(factory, job, chunk)
        return
    heartbeat = scope.heartbeat
    pool = ChunkPool(
        url,
        min(workers, len(chunks)),
        method=start_method(allowed_threads=[heartbeat.thread]),
        log_level=settings.log_level,
    )
    with heartbeat.idle():  # no beat in flight while the workers fork
        pool.start()
    with pool:
        yield from pool.run(job, chunks)


def _push_all(
    settings: Settings,
    factory: sessionmaker[Session],
    outcome: RecomputeOutcome,
    triggered_by: str,
    push_runner: Callable[..., PushOutcome] | None,
) -> None:
    """Push every configured CRM's accounts (only the changed fields of changed rows)."""
    from app.wiring.push import PushInterrupted, run_push

    runner = push_runner or run_push
    crms: list[CrmName] = list(settings.enabled_crms)
    for crm in crms:
        try:
            outcome.pushes.append(
                runner(settings, crm, session_factory=factory, triggered_by=triggered_by)
            )
        except PushInterrupted as exc:
            outcome.pushes.append(exc.outcome)
            raise RecomputeInterrupted(outcome) from exc
        except ConfigError as exc:
            outcome.push_errors[crm] = str(exc)
            log.warning("recompute.push_refused", crm=crm, error=str(exc))
