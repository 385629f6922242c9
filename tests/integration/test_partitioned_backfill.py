"""Partitioned backfill (#19 item 9, ADR 0008): a backfill split into stamp ranges run as child
jobs, each with its own lease and checkpoint, merged without loss or duplicates.

Through the job path (``JobQueue._run``, as a worker runs it) over an in-memory Salesforce on
the test database (SQLite or PostgreSQL). Records are stamped ten to a second, so every
partition boundary falls on a second that holds records: the edges are where a record could be
lost or read twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import cursors, leases, runs
from app.db.base import utcnow
from app.db.engine import make_session_factory
from app.db.models import Account, SyncRun
from app.jobs.tasks import JobQueue
from app.settings import BudgetSettings, Settings
from app.sync.partitions import Partition
from tests.support.fake_crm import sf_stamp
from tests.support.jobs import HookedSalesforce, accounts, job_settings, queue_run, use_crm

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # the first stamp of tests.support.jobs.accounts
PER_SECOND = 10


class Killed(BaseException):
    """The worker process died (kill -9): nothing after it runs, no run row is closed."""


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@dataclass
class Backfills:
    """An in-memory Salesforce that every pass of this process reads, and a private queue that
    keeps the messages it would send (``enqueued``) instead of delivering them: each test runs
    the jobs itself, in the order it wants, as different workers would."""

    factory: sessionmaker[Session]
    crm: HookedSalesforce
    settings: Settings
    jobs: JobQueue
    enqueued: list[int]

    def queue(self, partitions: int, **extra: Any) -> int:
        """A partitioned backfill of Account queued as the API queues it."""
        return queue_run(self.factory, params={"partitions": partitions, **extra})

    def plan(self, partitions: int, **extra: Any) -> tuple[int, list[int]]:
        """A partitioned backfill queued and planned: the parent's id and its children's in
        partition order, taken off ``enqueued``."""
        parent = self.queue(partitions, **extra)
        assert self.jobs._run(parent) == "planned"
        children = list(self.enqueued)
        self.enqueued.clear()
        return parent, children

    def fail(self, child: int) -> None:
        """Run ``child`` into an outage its retries do not outlive, after one more page."""
        self.crm.fail_after_pages = self.crm.pages_served + 1
        self.jobs._run(child)
        self.crm.fail_after_pages = None

    def failed(self, partitions: int) -> tuple[int, list[int]]:
        """A partitioned backfill planned and run partition by partition, p1 failing after a
        page: the failed parent's id and its children's."""
        parent, children = self.plan(partitions)
        for i, child in enumerate(children):
            if i == 1:
                self.fail(child)
            else:
                self.jobs._run(child)
        return parent, children


MakeBackfills = Callable[..., Backfills]


@pytest.fixture
def backfills(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> MakeBackfills:
    """``backfills(records, lease_seconds=..., daily_limit=...)``: :class:`Backfills` over
    ``records`` accounts stamped ten to a second, on the test database."""

    def make(
        records: int, *, lease_seconds: float = 60, daily_limit: int | None = None
    ) -> Backfills:
        crm = HookedSalesforce()
        accounts(crm, records, per_second=PER_SECOND)
        use_crm(monkeypatch, crm)
        settings = job_settings(database_url, tmp_path, lease_seconds=lease_seconds)
        if daily_limit is not None:
            budget = BudgetSettings(daily_limit=daily_limit)
            settings = settings.model_copy(update={"salesforce": budget})
        jobs = JobQueue(settings, session_factory=factory, huey=MemoryHuey(), periodic=False)
        enqueued: list[int] = []
        monkeypatch.setattr(jobs, "enqueue_run", enqueued.append)
        return Backfills(factory, crm, settings, jobs, enqueued)

    return make


def run_row(factory: sessionmaker[Session], run_id: int) -> SyncRun:
    with factory() as s:
        row = s.get(SyncRun, run_id)
        assert row is not None
        return row


def stored_ids(factory: sessionmaker[Session]) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(Account.sf_id)))


def test_a_partitioned_backfill_reads_every_record_once_and_moves_the_cursor_at_the_end(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    b = backfills(1000)  # 100 seconds, 10 records each
    crm, jobs = b.crm, b.jobs

    parent, children = b.plan(3)

    assert len(children) == 3
    parent_row = run_row(factory, parent)
    assert parent_row.status == "running"
    plan = parent_row.params["plan"]
    parts = [Partition.from_dict(p) for p in plan["partitions"]]
    assert next(p.lower for p in parts) is None
    assert parts[-1].upper is None
    # Balanced by count, and every boundary lies on a second holding 10 records.
    boundaries = [p.lower for p in parts[1:]]
    for boundary in boundaries:
        assert boundary is not None
        assert (
            sum(
                1
                for r in crm.objects["Account"].values()
                if r["SystemModstamp"] == sf_stamp(boundary)
            )
            == PER_SECOND
        )
    for child in children:
        row = run_row(factory, child)
        assert (row.status, row.params["parent"]) == ("queued", parent)
    assert [run_row(factory, c).kind for c in children] == [
        "backfill:p0",
        "backfill:p1",
        "backfill:p2",
    ]
    with factory() as s:  # the object's changes cursor does not move before the end
        assert cursors.load_cursor(s, "salesforce", "Account", "changes").at is None

    # Children in any order (here the last first), as different workers take them.
    for child in reversed(children):
        assert jobs._run(child) == "ran"
        if child != children[0]:
            assert run_row(factory, parent).status == "running"

    reads = [run_row(factory, c).read_count for c in children]
    assert sum(reads) == 1000  # no record read twice, at the edges either
    assert all(300 <= r <= 370 for r in reads), reads
    assert sorted(stored_ids(factory)) == sorted(crm.objects["Account"])
    done = run_row(factory, parent)
    assert done.status == "succeeded"
    assert (done.read_count, done.created_count) == (1000, 1000)
    assert done.api_calls >= sum(run_row(factory, c).api_calls for c in children)
    with factory() as s:
        changes = cursors.load_cursor(s, "salesforce", "Account", "changes")
        for part in parts:
            state = cursors.load_cursor(s, "salesforce", "Account", part.stream)
            assert state.completed_at is not None
            assert not state.in_progress
    newest = max(crm.objects["Account"].values(), key=lambda r: (r["SystemModstamp"], r["Id"]))
    assert (sf_stamp(changes.at), changes.id) == (newest["SystemModstamp"], newest["Id"])  # type: ignore[arg-type]

    # A second delivery of a child's message, or of the parent's, does nothing.
    calls = crm.calls
    assert jobs._run(children[1]) == "skipped"
    assert jobs._run(parent) == "skipped"
    assert crm.calls == calls


def test_a_child_killed_mid_partition_is_resumed_from_its_own_checkpoint(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    b = backfills(1200, lease_seconds=5)
    crm, jobs = b.crm, b.jobs
    parent, (first, second) = b.plan(2)
    assert jobs._run(first) == "ran"

    def die(pages: int) -> None:
        if pages == 2:  # two pages of 200 committed, the third being read
            raise Killed

    crm.after_page = die
    with pytest.raises(Killed):
        jobs._run(second)
    crm.after_page = None
    killed = run_row(factory, second)
    assert killed.status == "running"  # nobody closed it: the process is gone
    assert killed.read_count == 400
    assert run_row(factory, parent).status == "running"
    # The dead worker's last heartbeat was long ago; its lease (on another host) expired.
    long_ago = utcnow() - timedelta(minutes=10)
    with factory() as s:
        s.execute(update(SyncRun).where(SyncRun.id == second).values(heartbeat_at=long_ago))
        leases.acquire(
            s, "sync:salesforce:Account:p1", "deadhost:1:x", long_ago, timedelta(seconds=5)
        )
        s.commit()

    report = jobs.sweep()

    assert list(report.resumed_runs) == [second]
    resumption = report.resumed_runs[second]
    row = run_row(factory, resumption)
    assert (row.kind, row.status, row.params["resumes"]) == ("backfill:p1", "queued", second)
    assert row.params["partition"] == killed.params["partition"]

    assert jobs._run(resumption) == "ran"

    assert run_row(factory, second).status == "failed"  # closed as abandoned by its resumption
    resumed = run_row(factory, resumption)
    assert resumed.status == "succeeded"
    p1_size = 1200 - run_row(factory, first).read_count
    assert resumed.read_count == p1_size - 400  # from its checkpoint: nothing twice
    assert sorted(stored_ids(factory)) == sorted(crm.objects["Account"])
    assert run_row(factory, parent).status == "succeeded"


def test_a_failed_partition_fails_the_parent_and_the_cursor_stays(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    b = backfills(600)
    parent, (first, second) = b.plan(2)
    b.jobs._run(first)

    b.fail(second)

    assert run_row(factory, second).status == "failed"
    done = run_row(factory, parent)
    assert done.status == "failed"
    assert done.error is not None
    assert "p1" in done.error
    with factory() as s:
        assert cursors.load_cursor(s, "salesforce", "Account", "changes").at is None


def test_cancelling_the_parent_cancels_its_children(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    b = backfills(400)
    crm, jobs = b.crm, b.jobs
    parent, children = b.plan(2)

    with factory() as s:
        assert runs.request_cancel(s, parent) == "cancelling"
    for child in children:
        assert run_row(factory, child).status == "cancelled"
        jobs._run(child)  # the message arrives anyway: nothing runs

    assert crm.pages_served == 0
    # The sweeper settles a parent whose children all ended.
    jobs.sweep()
    with factory() as s:
        s.execute(
            update(SyncRun)
            .where(SyncRun.id == parent)
            .values(heartbeat_at=utcnow() - timedelta(minutes=10))
        )
        s.commit()
    jobs.sweep()
    assert run_row(factory, parent).status == "cancelled"


def test_a_second_partitioned_backfill_of_the_object_waits_its_turn_elsewhere(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    b = backfills(100)
    first, _children = b.plan(2)
    second = b.queue(2)

    assert b.jobs._run(second) == "closed"

    row = run_row(factory, second)
    assert row.status == "cancelled"
    assert row.error is not None
    assert f"run {first}" in row.error
    with factory() as s:
        assert (
            s.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.params.is_not(None)))
            == 4
        )


def test_partitions_of_one_object_hold_different_leases_and_exclude_nobody_else(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    """While p1 runs (its lease held), p0 runs too; an incremental pull of the object may run
    beside them and does not close the running parent as abandoned."""
    b = backfills(600)
    crm, jobs = b.crm, b.jobs
    parent, (first, second) = b.plan(2)
    with factory() as s:  # a live pass of p1 on another host
        leases.acquire(
            s, "sync:salesforce:Account:p1", "otherhost:1:abc", utcnow(), timedelta(minutes=5)
        )

    assert jobs._run(second) == "waiting"
    assert jobs._run(first) == "ran"
    pull = queue_run(factory, "pull")
    assert jobs._run(pull) == "ran"
    assert run_row(factory, parent).status == "running"
    with factory() as s:
        leases.release(s, "sync:salesforce:Account:p1", "otherhost:1:abc")
    assert jobs._run(second) == "ran"
    assert run_row(factory, parent).status == "succeeded"
    assert sorted(stored_ids(factory)) == sorted(crm.objects["Account"])


def test_a_child_stops_at_a_page_when_the_budget_runs_out_and_resumes_once_it_frees(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    from app.wiring.budget import budget_status

    b = backfills(1200, daily_limit=200)
    crm, settings, jobs = b.crm, b.settings, b.jobs
    parent, (first, second) = b.plan(2)  # planned: the estimate fits in what is left
    # Another run (an incremental pull of another object) spends all but 4 calls meanwhile.
    left = budget_status(settings, factory)["salesforce"].left
    assert left is not None
    assert left > 4
    with factory() as s:
        other = runs.create_queued_run(
            s,
            kind="pull",
            crm="salesforce",
            object_name="Opportunity",
            triggered_by="schedule",
            params={},
        )
        s.execute(
            update(SyncRun)
            .where(SyncRun.id == other.id)
            .values(status="succeeded", api_calls=left - 4, finished_at=utcnow())
        )
        s.commit()

    jobs._run(first)

    stopped = run_row(factory, first)
    assert stopped.status == "cancelled"
    assert (stopped.error or "").startswith("waiting for API budget"), stopped.error
    assert budget_status(settings, factory)["salesforce"].used <= 200  # never over the share
    assert run_row(factory, parent).status == "running"  # the stopped partition is pending
    with factory() as s:
        (resumption,) = s.scalars(
            select(SyncRun).where(SyncRun.status == "queued", SyncRun.kind == "backfill:p0")
        )
    assert resumption.params["resumes"] == first
    assert resumption.params["partition"] == stopped.params["partition"]
    assert jobs._run(resumption.id) == "waiting"  # no budget yet: it stays queued
    assert run_row(factory, resumption.id).status == "queued"

    # A day passes: every call made so far leaves the rolling window.
    day_ago = utcnow() - timedelta(hours=25)
    with factory() as s:
        s.execute(
            update(SyncRun)
            .where(SyncRun.status != "queued")
            .values(started_at=day_ago, heartbeat_at=day_ago, finished_at=day_ago)
        )
        s.commit()
    assert jobs._run(resumption.id) == "ran"
    assert jobs._run(second) == "ran"

    resumed = run_row(factory, resumption.id)
    assert resumed.status == "succeeded"
    assert resumed.cursor_from == stopped.cursor_to  # from the stopped page's checkpoint
    assert run_row(factory, parent).status == "succeeded"
    reads = [run_row(factory, i).read_count for i in (first, resumption.id, second)]
    assert sum(reads) == 1200  # nothing read twice
    assert sorted(stored_ids(factory)) == sorted(crm.objects["Account"])  # nothing lost


def test_a_failed_partitioned_backfill_resumes_only_its_failed_partitions(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    b = backfills(1200)
    crm, jobs, enqueued = b.crm, b.jobs, b.enqueued
    failed_parent, (first, second, third) = b.failed(3)  # p1 commits a page, then an outage
    broken = run_row(factory, second)
    assert broken.status == "failed"
    assert broken.read_count > 0  # it committed pages before the outage: a checkpoint
    assert run_row(factory, failed_parent).status == "failed"
    old_plan = run_row(factory, failed_parent).params["plan"]

    calls = crm.calls
    again = b.queue(3)  # the same request again
    assert jobs._run(again) == "planned"

    assert crm.calls == calls  # the old plan, no count calls
    (resumed_child,) = enqueued  # only the failed partition is read again
    enqueued.clear()
    plan = run_row(factory, again).params["plan"]
    assert plan["generation"] == old_plan["generation"]
    assert plan["partitions"] == old_plan["partitions"]
    assert plan["resumes"] == failed_parent
    assert plan["kept"] == {"0": first, "2": third}
    child = run_row(factory, resumed_child)
    assert (child.kind, child.params["parent"]) == ("backfill:p1", again)
    assert jobs._run(resumed_child) == "ran"

    child = run_row(factory, resumed_child)
    assert child.status == "succeeded"
    assert child.cursor_from == broken.cursor_to  # from the failed child's checkpoint
    done = run_row(factory, again)
    assert done.status == "succeeded"
    reads = [run_row(factory, i).read_count for i in (first, second, third, resumed_child)]
    assert sum(reads) == 1200  # the kept partitions were not read again, nothing twice
    assert sorted(stored_ids(factory)) == sorted(crm.objects["Account"])
    with factory() as s:
        assert cursors.load_cursor(s, "salesforce", "Account", "changes").at is not None

    # Once one succeeded, the next request (or one with restart) plans a new generation.
    fresh = b.queue(2)
    assert jobs._run(fresh) == "planned"
    assert len(enqueued) == 2
    assert "resumes" not in run_row(factory, fresh).params["plan"]


def test_restart_plans_a_failed_partitioned_backfill_anew(
    backfills: MakeBackfills, factory: sessionmaker[Session]
) -> None:
    b = backfills(600)
    failed_parent, _children = b.failed(2)
    assert run_row(factory, failed_parent).status == "failed"

    anew = b.queue(2, restart=True)
    assert b.jobs._run(anew) == "planned"

    plan = run_row(factory, anew).params["plan"]
    assert "resumes" not in plan
    assert plan["generation"] != run_row(factory, failed_parent).params["plan"]["generation"]
    assert len(b.enqueued) == 2
