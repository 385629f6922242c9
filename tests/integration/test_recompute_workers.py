"""A recompute whose chunks run in worker processes (``recompute.workers``): the same outputs as
in the command's own process, counters added up from every worker's commits, and when a chunk
fails, a worker dies or the lease is lost, the committed chunks stay, the others are not
written, and the next run computes exactly the rest."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

import app.wiring.recompute as recompute
import app.wiring.recompute_chunk as recompute_chunk
import app.wiring.recompute_pool as recompute_pool
from app.core.runs import RunStatus
from app.db.engine import make_engine, make_session_factory
from app.db.models import (
    Account,
    HealthSnapshot,
    JobLease,
    NpsResponse,
    SupportTicket,
    SyncRun,
    Touchpoint,
    UsageSnapshot,
)
from app.settings import Settings
from app.wiring.recompute import RecomputeInterrupted, run_recompute

TODAY = datetime.now(UTC).date()
ACCOUNTS = 80  # 8 chunks of CHUNK: two workers get 4 each (CHUNKS_PER_WORKER)
CHUNK = 10


def settings(database_url: str, workers: int) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        recompute={"workers": workers, "chunk_size": CHUNK},
    )


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture(autouse=True)
def small_chunks_are_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """80 accounts are worth two workers (the real floor is 1,000), and the workers are forked
    so they run this test's patches (under pytest other threads may exist; the forked workers
    touch none of their locks)."""
    monkeypatch.setattr(recompute, "MIN_CHUNK", 5)
    monkeypatch.setattr(recompute, "start_method", lambda allowed_threads=(): "fork")


def at(days_ago: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), UTC)


@pytest.fixture
def seeded(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        for i in range(ACCOUNTS):
            a = Account(
                name=f"W{i}",
                arr=Decimal(2_000 * (i + 1)),
                licensed_seats=20,
                customer_since_on=TODAY - timedelta(days=100 + 10 * i),
                contract_end_on=TODAY + timedelta(days=5 * i - 20),
            )
            s.add(a)
            s.flush()
            for week in range(6):
                s.add(
                    UsageSnapshot(
                        account_id=a.id,
                        observed_on=TODAY - timedelta(days=1 + 7 * week),
                        active_users_30d=(i * 7 + week * (i % 3)) % 21,
                        logins_30d=i * 3,
                        licensed_seats=20,
                    )
                )
            s.add(
                Touchpoint(
                    account_id=a.id,
                    kind="meeting",
                    occurred_at=at(i % 50),
                    two_way=i % 5 != 0,
                    scheduled=True,
                    external_id=f"m{i}",
                )
            )
            s.add(
                NpsResponse(
                    account_id=a.id,
                    respondent_role="decision_maker",
                    score=i % 11,
                    responded_on=TODAY - timedelta(days=i % 30),
                    external_id=f"n{i}",
                )
            )
            if i % 4 == 0:
                opened = at(i % 40)
                s.add(
                    SupportTicket(
                        account_id=a.id,
                        external_id=f"t{i}",
                        opened_at=opened,
                        priority="P1" if i % 8 == 0 else "P3",
                        escalated=i % 12 == 0,
                    )
                )


def accounts_of(outcomes: Any) -> set[int]:
    """The account ids of a chunk's outcomes (what ``write_chunk`` is given)."""
    return {o.account_id for o in outcomes}


def outputs(factory: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with factory() as s:
        return [
            tuple(r)
            for r in s.execute(
                select(
                    Account.id,
                    Account.health_score,
                    Account.health_band,
                    Account.health_reasons,
                    Account.tier,
                    Account.renewal_risk,
                    Account.lifecycle_stage,
                ).order_by(Account.id)
            )
        ]


def count(factory: sessionmaker[Session], stmt: Any) -> int:
    with factory() as s:
        return int(s.scalar(stmt) or 0)


def computed(factory: sessionmaker[Session]) -> int:
    return count(
        factory,
        select(func.count()).select_from(Account).where(Account.health_computed_at.is_not(None)),
    )


def last_run(factory: sessionmaker[Session]) -> SyncRun:
    with factory() as s:
        run = s.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(1)).one()
        s.expunge(run)
        return run


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_write_what_one_process_computes(
    database_url: str,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    monkeypatch.setattr(recompute, "start_method", lambda allowed_threads=(): method)
    outcome = run_recompute(settings(database_url, 2), session_factory=factory, everything=True)
    assert outcome.workers == 2
    assert outcome.status is RunStatus.SUCCEEDED
    assert (outcome.selected, outcome.changed, outcome.failed) == (ACCOUNTS, ACCOUNTS, 0)
    run = last_run(factory)
    # Each worker added its chunks' counts to the run row; the close wrote the same totals.
    assert (run.read_count, run.updated_count) == (ACCOUNTS, ACCOUNTS)
    assert count(factory, select(func.count()).select_from(HealthSnapshot)) == ACCOUNTS
    bands = {r[2] for r in outputs(factory)}
    assert len(bands) >= 2  # the data spreads over bands: the comparison below means something

    # The same day in one process: every value it computes equals what the workers wrote.
    again = run_recompute(settings(database_url, 1), session_factory=factory, everything=True)
    assert again.workers == 1
    assert (again.selected, again.changed, again.events, again.stamped_columns) == (
        ACCOUNTS,
        0,
        0,
        0,
    )


@pytest.mark.usefixtures("seeded")
def test_a_failing_chunk_fails_the_run_and_the_next_run_computes_the_rest(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    write = recompute_chunk.write_chunk
    poisoned = ACCOUNTS // 2  # one account id in the middle chunk

    def failing(conn: Any, outcomes: Any, **kw: Any) -> Any:
        if poisoned in accounts_of(outcomes):
            raise RuntimeError("disk full (test)")
        return write(conn, outcomes, **kw)

    monkeypatch.setattr(recompute_chunk, "write_chunk", failing)
    outcome = run_recompute(settings(database_url, 2), session_factory=factory, everything=True)
    assert outcome.status is RunStatus.FAILED
    assert "disk full (test)" in (outcome.result.error if outcome.result else "")
    done = computed(factory)
    assert done % CHUNK == 0  # whole chunks only
    assert done < ACCOUNTS  # the poisoned one not
    with factory() as s:
        assert s.get(Account, poisoned).health_computed_at is None  # type: ignore[union-attr]
    assert count(factory, select(func.count()).select_from(JobLease)) == 0  # released

    monkeypatch.setattr(recompute_chunk, "write_chunk", write)
    rest = run_recompute(settings(database_url, 2), session_factory=factory)
    assert rest.status is RunStatus.SUCCEEDED
    assert rest.selected == ACCOUNTS - done
    assert computed(factory) == ACCOUNTS
    assert count(factory, select(func.count()).select_from(HealthSnapshot)) == ACCOUNTS


@pytest.mark.usefixtures("seeded")
def test_a_worker_that_dies_fails_the_run_with_its_accounts_named(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    write = recompute_chunk.write_chunk

    def dying(conn: Any, outcomes: Any, **kw: Any) -> Any:
        if 1 in accounts_of(outcomes):
            os._exit(9)  # as a kill would: no exception, no rollback by Python
        return write(conn, outcomes, **kw)

    monkeypatch.setattr(recompute_chunk, "write_chunk", dying)
    outcome = run_recompute(settings(database_url, 2), session_factory=factory, everything=True)
    assert outcome.status is RunStatus.FAILED
    error = outcome.result.error if outcome.result else ""
    assert "exit code 9" in error
    assert "accounts 1-10" in error
    with factory() as s:
        assert s.get(Account, 1).health_computed_at is None  # type: ignore[union-attr]

    monkeypatch.setattr(recompute_chunk, "write_chunk", write)
    rest = run_recompute(settings(database_url, 2), session_factory=factory)
    assert rest.status is RunStatus.SUCCEEDED
    assert computed(factory) == ACCOUNTS
    assert count(factory, select(func.count()).select_from(HealthSnapshot)) == ACCOUNTS


@pytest.mark.usefixtures("seeded")
def test_a_chunk_written_after_the_lease_was_taken_over_is_rolled_back(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    load = recompute_chunk.load_chunk

    def taken_over(conn: Any, ids: Any, *args: Any) -> Any:
        facts = load(conn, ids, *args)
        if 1 in ids:  # another holder takes the lease over while this chunk is computed
            other = make_engine(database_url)
            try:
                with other.begin() as c:
                    c.execute(update(JobLease).values(holder="someone-else"))
            finally:
                other.dispose()
        return facts

    monkeypatch.setattr(recompute_chunk, "load_chunk", taken_over)
    outcome = run_recompute(settings(database_url, 1), session_factory=factory, everything=True)
    assert outcome.status is RunStatus.FAILED
    assert "lost its lease" in (outcome.result.error if outcome.result else "")
    assert computed(factory) == 0  # the first chunk rolled back, and nothing after it ran


@pytest.mark.usefixtures("seeded")
def test_an_error_raised_while_unwinding_an_interrupt_cancels_the_run(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM inside a COPY: the driver ends the COPY with an error of its own ("COPY from
    stdin failed"), raised while the interrupt unwinds. The run is ``cancelled``, as for any
    interrupt, not ``failed``."""
    write = recompute_chunk.write_chunk

    def interrupted(conn: Any, outcomes: Any, **kw: Any) -> Any:
        if 11 in accounts_of(outcomes):
            try:
                raise KeyboardInterrupt  # what the CLI's SIGTERM handler raises
            except KeyboardInterrupt:
                raise RuntimeError("COPY from stdin failed: KeyboardInterrupt") from None
        return write(conn, outcomes, **kw)

    monkeypatch.setattr(recompute_chunk, "write_chunk", interrupted)
    with pytest.raises(RecomputeInterrupted) as stopped:
        run_recompute(settings(database_url, 1), session_factory=factory, everything=True)
    outcome = stopped.value.outcome
    assert outcome.status is RunStatus.CANCELLED
    assert computed(factory) == CHUNK  # the first chunk, committed before the interrupt


@pytest.mark.usefixtures("seeded")
def test_a_chunk_committed_by_a_worker_stopped_before_it_answered_is_counted(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run row and the summary count what was committed, also a chunk whose worker was
    stopped between its commit and its answer (the command then never hears of it)."""
    run = recompute_pool.run_chunk

    def commit_then_die(factory: Any, job: Any, chunk: Any, *args: Any) -> Any:
        done = run(factory, job, chunk, *args)
        if 1 in chunk:
            os._exit(9)
        return done

    monkeypatch.setattr(recompute_pool, "run_chunk", commit_then_die)
    outcome = run_recompute(settings(database_url, 2), session_factory=factory, everything=True)
    assert outcome.status is RunStatus.FAILED
    committed = computed(factory)
    with factory() as s:
        assert s.get(Account, 1).health_computed_at is not None  # type: ignore[union-attr]
    assert committed >= CHUNK
    assert outcome.changed == committed
    row = last_run(factory)
    assert (row.read_count, row.updated_count) == (committed, committed)
