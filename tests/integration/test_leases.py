"""Leases of the pull engine on the test database (SQLite or PostgreSQL), issue #14 item 1.

A crashed pass must not block the next one: a lease held by a gone process of this host is taken
over at once, one held by a live holder elsewhere only when its TTL has passed, and a live pass
keeps its lease through a step longer than the TTL because a heartbeat renews it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog.testing
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.cli.common import ExitCode
from app.cli.sync import exit_code
from app.core.runs import RunStatus
from app.crm.base import ReadFrom, RecordPage
from app.db.engine import make_session_factory
from app.db.models import Account, JobLease, SyncRun
from app.db.sync_store import SqlSyncStore
from app.mappers.defaults import salesforce_mappings
from app.settings import SyncSettings
from app.sync.ports import LeaseHeldError
from app.sync.pull import PullEngine
from tests.support.fake_crm import FakeSalesforce, sf_stamp

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LEASE = "sync:salesforce:Account"


def account(n: int) -> dict[str, Any]:
    return {
        "Id": f"001{n:015d}",
        "Name": f"Account {n}",
        "SystemModstamp": sf_stamp(T0 + timedelta(seconds=n)),
        "IsDeleted": False,
    }


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def engine_for(factory: sessionmaker[Session], crm: FakeSalesforce, **sync: Any) -> PullEngine:
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    settings = SyncSettings(lookback_seconds=0, **sync)
    return PullEngine(SqlSyncStore(factory), crm, mappings, settings)


def hold_lease(factory: sessionmaker[Session], holder: str, expires_in: timedelta) -> None:
    now = datetime.now(UTC)
    with factory() as s:
        s.add(JobLease(name=LEASE, holder=holder, acquired_at=now, expires_at=now + expires_in))
        s.commit()


def abandoned_run(factory: sessionmaker[Session], holder: str) -> int:
    return SqlSyncStore(factory).start_run(
        kind="backfill",
        crm="salesforce",
        object_name="Account",
        triggered_by=holder,
        params={},
        cursor_from=None,
    )


def gone_pid() -> int:
    """The PID of a process of this host that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


@pytest.fixture
def live_pid() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(
    factory: sessionmaker[Session],
) -> None:
    crm = FakeSalesforce()
    crm.put("Account", account(1))
    dead = f"{socket.gethostname()}:{gone_pid()}:deadbeef"
    hold_lease(factory, dead, timedelta(minutes=10))  # as if killed a moment ago
    run_id = abandoned_run(factory, dead)

    result = engine_for(factory, crm).pull("Account")

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.counts.created == 1
    with factory() as s:
        killed = s.get(SyncRun, run_id)
        assert killed is not None
        assert killed.status == "failed"
        assert killed.error is not None
        assert killed.error.startswith("abandoned")
        assert s.scalar(select(func.count()).select_from(JobLease)) == 0


def test_a_live_holder_elsewhere_blocks_until_its_ttl_passes(
    factory: sessionmaker[Session],
) -> None:
    crm = FakeSalesforce()
    crm.put("Account", account(1))
    # Another host: its PID cannot be checked from here, so only the expiry frees the lease.
    hold_lease(factory, "other-host:4242:cafe0001", timedelta(seconds=60))
    engine = engine_for(factory, crm)

    refused = engine.pull("Account")

    assert refused.status is RunStatus.CANCELLED
    assert refused.error is not None
    assert refused.error.startswith("could not start")
    assert "other-host:4242:cafe0001" in refused.error
    assert " until " in refused.error
    assert exit_code([refused]) is ExitCode.FAILED  # never "done" (exit 0)
    assert refused.counts.created == 0

    with factory() as s:  # the TTL passes without a heartbeat from the other host
        s.execute(update(JobLease).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    taken = engine.pull("Account")
    assert taken.status is RunStatus.SUCCEEDED
    assert taken.counts.created == 1


def test_a_live_process_on_this_host_keeps_its_lease(
    factory: sessionmaker[Session], live_pid: int
) -> None:
    crm = FakeSalesforce()
    crm.put("Account", account(1))
    holder = f"{socket.gethostname()}:{live_pid}:cafe0002"
    hold_lease(factory, holder, timedelta(seconds=60))

    refused = engine_for(factory, crm).pull("Account")

    assert refused.status is RunStatus.CANCELLED
    assert refused.error is not None
    assert holder in refused.error


class SlowSalesforce(FakeSalesforce):
    """Stalls before its first page for longer than the lease TTL, and meanwhile checks that
    another pass could not take the lease and that the run's heartbeat moved."""

    def __init__(self, store: SqlSyncStore, factory: sessionmaker[Session], stall: float) -> None:
        super().__init__()
        self.store = store
        self.factory = factory
        self.stall = stall
        self.stolen = False
        self.refusal: str | None = None
        self.heartbeat_lag: timedelta | None = None

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        stalled_at = datetime.now(UTC)
        time.sleep(self.stall)  # a page, a Bulk job wait or retries longer than the TTL
        try:
            self.store.acquire_lease(LEASE, "other-host:1:cafe0003", timedelta(seconds=60))
            self.stolen = True
        except LeaseHeldError as exc:
            self.refusal = str(exc)
        with self.factory() as s:
            beat = s.scalar(select(SyncRun.heartbeat_at).where(SyncRun.status == "running"))
        assert beat is not None
        self.heartbeat_lag = beat - stalled_at
        yield from super().iter_changes(
            object_name, fields, start, page_size=page_size, use_bulk=use_bulk
        )


def test_the_heartbeat_keeps_a_slow_pass_lease_alive_past_its_ttl(
    factory: sessionmaker[Session],
) -> None:
    store = SqlSyncStore(factory)
    crm = SlowSalesforce(store, factory, stall=2.5)
    for n in range(1, 4):
        crm.put("Account", account(n))
    engine = engine_for(factory, crm, lease_seconds=1, prefetch_pages=0)

    result = engine.pull("Account")

    assert not crm.stolen, "the lease expired under a live pass"
    assert crm.refusal is not None
    assert engine.holder in crm.refusal
    assert crm.heartbeat_lag is not None
    assert crm.heartbeat_lag > timedelta(seconds=1)  # beaten while no page committed
    assert result.status is RunStatus.SUCCEEDED, result.error
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 3
        assert s.scalar(select(func.count()).select_from(JobLease)) == 0  # released


def test_a_pass_logs_its_start_and_its_end_with_counts(factory: sessionmaker[Session]) -> None:
    crm = FakeSalesforce()
    for n in range(1, 4):
        crm.put("Account", account(n))
    with structlog.testing.capture_logs() as logs:
        result = engine_for(factory, crm).pull("Account")
    events = {e["event"]: e for e in logs if e["event"].startswith("sync.run.")}
    start, end = events["sync.run.start"], events["sync.run.end"]
    assert start["log_level"] == end["log_level"] == "info"
    assert (start["crm"], start["object"], start["kind"]) == ("salesforce", "Account", "pull")
    assert start["run_id"] == end["run_id"] == result.run_id
    assert (end["status"], end["read"], end["created"]) == ("succeeded", 3, 3)
    assert end["api_calls"] == result.counts.api_calls
    assert end["duration_s"] >= 0
