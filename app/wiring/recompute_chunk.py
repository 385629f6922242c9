"""One chunk of a recompute: read, compute and write its accounts in one transaction.

The same function runs in the recompute's own process (:mod:`app.wiring.recompute`) and in its
worker processes (:mod:`app.wiring.recompute_pool`), so what a chunk writes does not depend on
where it ran. Everything a chunk needs besides its session factory is in :class:`ChunkJob`, a
small picklable value; what it did comes back as a :class:`ChunkDone` (counts and seconds, no
rows), which the caller adds to the run's outcome.

A chunk is all or nothing: its transaction writes the accounts' columns, snapshots, events and
the accounts that failed (``sync_errors``), then checks that the run still holds its lease (a
run that lost it writes nothing; the run's heartbeat keeps the lease's expiry moving) and adds
the chunk's counts to the run's counters (incremented, so chunks committed by several processes
add up). Neither takes a lock another chunk waits for, so chunks of one run commit side by
side on PostgreSQL.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.db import leases, runs
from app.db.health_store import load_chunk, write_chunk
from app.db.runs import NewSyncError
from app.domain.config import ScoringConfig
from app.domain.recompute import AccountOutcome, Feeds, compute_account
from app.errors import CrmsyncError
from app.sync.ports import Counts

RUN_CRM = "cs"
RUN_OBJECT = "accounts"


class LeaseLostError(CrmsyncError):
    """The run's lease was taken over (the process stalled past its TTL): it stops unwritten."""


@dataclass(frozen=True)
class ChunkJob:
    """What every chunk of one run shares: the run, its lease, the day and the rules."""

    run_id: int
    lease: str
    holder: str
    as_of: date
    feeds: Feeds
    cfg: ScoringConfig


@dataclass(frozen=True)
class ChunkDone:
    """What one committed chunk did."""

    accounts: int
    last_account_id: int
    changed: int
    unchanged: int
    failed: int
    events: int
    stamped_columns: int
    read_s: float
    compute_s: float
    write_s: float


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
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


def run_chunk(
    factory: sessionmaker[Session],
    job: ChunkJob,
    chunk: Sequence[int],
    write_turn: AbstractContextManager[Any] | None = None,
) -> ChunkDone:
    """Read, compute and write the accounts ``chunk`` (sorted ids) in one transaction.

    ``write_turn`` is held from the first write to the commit: SQLite takes one writer at a
    time, and workers that queue on a lock of their own start the moment the other commits,
    where SQLite's busy handler would sleep in steps of up to 100 ms.

    Raises :class:`LeaseLostError` (nothing written) when the run no longer holds its lease.
    The chunk's objects are this function's own: freed as it returns, before the collector
    runs again (re-enabled with them alive, its next pass walked them all).
    """
    with no_cyclic_gc():
        return _run_chunk(factory, job, chunk, write_turn or nullcontext())


def _run_chunk(
    factory: sessionmaker[Session],
    job: ChunkJob,
    chunk: Sequence[int],
    write_turn: AbstractContextManager[Any],
) -> ChunkDone:
    cfg, day = job.cfg, job.as_of
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
                outcomes.append(compute_account(f, day, computed_at, job.feeds, cfg))
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
        with write_turn:
            now = datetime.now(UTC)
            wrote = write_chunk(conn, outcomes, computed_at=computed_at, stamped_at=now)
            runs.record_errors(session, job.run_id, failures)
            # The fence, last before the counters and the commit (see leases.still_held): a
            # run whose lease was taken over writes nothing of this chunk.
            if not leases.still_held(session, job.lease, job.holder):
                session.rollback()
                raise LeaseLostError(
                    f"the recompute lost its lease {job.lease} (stalled past its TTL and taken "
                    "over); nothing of this chunk was written"
                )
            delta = Counts(
                read=len(facts),
                updated=wrote.changed,
                unchanged=wrote.unchanged,
                failed=len(failures),
            )
            runs.add_run_progress(session, job.run_id, delta)
            session.commit()
    return ChunkDone(
        accounts=len(facts),
        last_account_id=chunk[-1],
        changed=wrote.changed,
        unchanged=wrote.unchanged,
        failed=len(failures),
        events=wrote.events,
        stamped_columns=wrote.stamped_columns,
        read_s=read - began,
        compute_s=computed - read,
        write_s=time.perf_counter() - computed,
    )
