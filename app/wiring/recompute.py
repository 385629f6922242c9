"""Recompute health, tier, renewal and lifecycle, and (``push=True``) write them to the CRMs.

:func:`run_recompute` is the one entry point (the CLI ``crmsync health recompute``, the demo and
the scheduled job call it). It is a ``sync_runs`` row of kind ``recompute`` (crm ``cs``, object
``accounts``) under the lease ``sync:cs:accounts``, through the same
:class:`~app.sync.run_scope.RunScope` as the pull and the push: one recompute at a time, a run
killed outright is closed as ``failed`` ("abandoned") by the next one, which takes the lease over
at once on the same host.

Work goes in chunks of accounts (``chunk_size``, 5,000): each chunk's inputs are read with one
``SELECT`` per table (:func:`app.db.health_store.load_chunk`), each account is computed by the
pure :func:`app.domain.recompute.compute_account`, and the chunk's outputs are written in bulk
in one transaction that first renews the lease (a run that lost it writes nothing). A chunk is
all or nothing: a run killed between chunks leaves the committed ones computed for the day, and
the next run selects only the rest. Memory stays that of one chunk.

What is selected, and how the result reaches the CRM: docs/recompute.md.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus, SyncKind
from app.core.types import CrmName
from app.db import leases, runs
from app.db.engine import make_engine, make_session_factory
from app.db.health_store import (
    due_account_ids,
    live_account_ids,
    load_chunk,
    load_feeds,
    write_chunk,
)
from app.db.runs import NewSyncError
from app.db.sync_store import SqlSyncStore
from app.domain.config import ScoringConfig
from app.domain.recompute import AccountOutcome, compute_account
from app.errors import ConfigError, CrmsyncError
from app.logging import get_logger
from app.settings import Settings
from app.sync.holder import new_holder
from app.sync.run_scope import RunRefused, RunResult, RunScope, RunSpec
from app.wiring.sync import fewer_gc_passes

if TYPE_CHECKING:  # the push wiring (and the CRM clients) load only for --push
    from app.wiring.push import PushOutcome

log = get_logger("crmsync.recompute")

CHUNK_SIZE = 5_000
RUN_CRM = "cs"
RUN_OBJECT = "accounts"
#: The spec of every recompute run (its lease is ``sync:cs:accounts``).
SPEC_KIND = str(SyncKind.RECOMPUTE)


class LeaseLostError(CrmsyncError):
    """The run's lease was taken over (the process stalled past its TTL): it stops unwritten."""


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
    pushes: list[PushOutcome] = field(default_factory=list)
    push_errors: dict[str, str] = field(default_factory=dict)
    #: Seconds spent selecting, reading, computing and writing (the push not included).
    timings: dict[str, float] = field(
        default_factory=lambda: {"select": 0.0, "read": 0.0, "compute": 0.0, "write": 0.0}
    )

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
                chunk_size=chunk_size or CHUNK_SIZE,
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
    chunk_size: int,
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
            done = 0
            for chunk in _chunks(ids, max(1, chunk_size)):
                # The chunk's objects are _chunk's own: freed as it returns, before the
                # collector runs again (re-enabled with them alive, its next pass walked them
                # all, a quarter of the chunk's time).
                with _no_cyclic_gc():
                    _chunk(factory, scope, run_id, chunk, day, feeds, cfg, outcome)
                done += len(chunk)
                scope.cursor_to = {"done": done, "last_account_id": chunk[-1]}
                if on_progress is not None:
                    on_progress(RecomputeProgress(done, len(ids), outcome.changed))
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


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic collector paused while one chunk is read, computed and written.

    A chunk holds some hundred thousand live objects (its facts and outcomes) that reference
    counting frees when the chunk ends; with the collector on, every generation-2 pass walks them
    all again (a quarter of the compute at 5,000 accounts a chunk). Cycles made meanwhile are
    found by the passes between chunks, so memory stays that of a chunk.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _chunk(
    factory: sessionmaker[Session],
    scope: RunScope,
    run_id: int,
    chunk: Sequence[int],
    day: date,
    feeds: Any,
    cfg: ScoringConfig,
    outcome: RecomputeOutcome,
) -> None:
    """Read, compute and write one chunk in one transaction, under the run's lease."""
    with factory() as session:
        conn = session.connection()
        computed_at = datetime.now(UTC)
        began = time.perf_counter()
        facts = load_chunk(conn, chunk, day, cfg)
        read = time.perf_counter()
        outcomes: list[AccountOutcome] = []
        failures: list[NewSyncError] = []
        for f in facts:
            try:
                outcomes.append(compute_account(f, day, computed_at, feeds, cfg))
            except Exception as exc:  # one account's bad data never stops the others
                failures.append(
                    NewSyncError(
                        crm=RUN_CRM,
                        object=RUN_OBJECT,
                        record_id=str(f.id),
                        category="validation",
                        message=f"recompute failed: {type(exc).__name__}: {exc}",
                        retriable=False,
                        direction="recompute",
                    )
                )
        computed = time.perf_counter()
        now = datetime.now(UTC)
        if not leases.renew(session, scope.name, scope.holder, now, scope.ttl):
            session.rollback()
            raise LeaseLostError(
                f"the recompute lost its lease {scope.name} (stalled past its TTL); "
                "nothing of this chunk was written"
            )
        wrote = write_chunk(
            conn, {f.id: f for f in facts}, outcomes, computed_at=computed_at, stamped_at=now
        )
        runs.record_errors(session, run_id, failures)
        counts = scope.counts
        counts.read += len(facts)
        counts.updated += wrote.changed
        counts.unchanged += wrote.unchanged
        counts.failed += len(failures)
        runs.update_run_progress(session, run_id, counts)
        session.commit()
    outcome.timings["read"] += read - began
    outcome.timings["compute"] += computed - read
    outcome.timings["write"] += time.perf_counter() - computed
    outcome.changed += wrote.changed
    outcome.unchanged += wrote.unchanged
    outcome.failed += len(failures)
    outcome.events += wrote.events
    outcome.stamped_columns += wrote.stamped_columns


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
