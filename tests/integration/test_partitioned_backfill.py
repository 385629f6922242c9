"""Partitioned backfill (#19 item 9, ADR 0008): a backfill split into stamp ranges run as child
jobs, each with its own lease and checkpoint, merged without loss or duplicates.

Through the job path (``JobQueue._run``, as a worker runs it) over an in-memory Salesforce on
the test database (SQLite or PostgreSQL). Records are stamped ten to a second, so every
partition boundary falls on a second that holds records: the edges are where a record could be
lost or read twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import cursors, job_store, leases, runs
from app.db.base import utcnow
from app.db.engine import make_session_factory
from app.db.models import Account, SyncRun
from app.jobs.tasks import JobQueue
from app.sync.partitions import Partition
from tests.support.fake_crm import sf_stamp
from tests.support.jobs import HookedSalesforce, job_settings, use_crm

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PER_SECOND = 10


class Killed(BaseException):
    """The worker process died (kill -9): nothing after it runs, no run row is closed."""


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def stamped_accounts(crm: HookedSalesforce, n: int) -> None:
    for i in range(n):
        crm.put(
            "Account",
            {
                "Id": f"001{i:015d}",
                "Name": f"Account {i}",
                "SystemModstamp": sf_stamp(T0 + timedelta(seconds=i // PER_SECOND)),
                "IsDeleted": False,
            },
        )


def queue_partitioned(factory: sessionmaker[Session], partitions: int, **extra: Any) -> int:
    with factory() as s:
        run_id, _ = job_store.queue_run(
            s,
            kind="backfill",
            crm="salesforce",
            object_name="Account",
            triggered_by="api",
            params={"partitions": partitions, **extra},
        )
    return run_id


def run_row(factory: sessionmaker[Session], run_id: int) -> SyncRun:
    with factory() as s:
        row = s.get(SyncRun, run_id)
        assert row is not None
        return row


def stored_ids(factory: sessionmaker[Session]) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(Account.sf_id)))


def make_queue(
    factory: sessionmaker[Session], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[JobQueue, list[int]]:
    jobs = JobQueue(settings, session_factory=factory, huey=MemoryHuey(), periodic=False)
    enqueued: list[int] = []
    monkeypatch.setattr(jobs, "enqueue_run", enqueued.append)
    return jobs, enqueued


def test_a_partitioned_backfill_reads_every_record_once_and_moves_the_cursor_at_the_end(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    stamped_accounts(crm, 1000)  # 100 seconds, 10 records each
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    parent = queue_partitioned(factory, 3)

    assert jobs._run(parent) == "planned"

    children = list(enqueued)
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
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    stamped_accounts(crm, 1200)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path, lease_seconds=5)
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    parent = queue_partitioned(factory, 2)
    jobs._run(parent)
    first, second = enqueued
    enqueued.clear()
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
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    stamped_accounts(crm, 600)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    parent = queue_partitioned(factory, 2)
    jobs._run(parent)
    first, second = enqueued
    jobs._run(first)
    crm.fail_after_pages = crm.pages_served + 1  # an outage the retries do not outlive

    jobs._run(second)

    assert run_row(factory, second).status == "failed"
    done = run_row(factory, parent)
    assert done.status == "failed"
    assert done.error is not None
    assert "p1" in done.error
    with factory() as s:
        assert cursors.load_cursor(s, "salesforce", "Account", "changes").at is None


def test_cancelling_the_parent_cancels_its_children(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    stamped_accounts(crm, 400)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    parent = queue_partitioned(factory, 2)
    jobs._run(parent)

    with factory() as s:
        assert runs.request_cancel(s, parent) == "cancelling"
    for child in enqueued:
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
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    stamped_accounts(crm, 100)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    jobs, _enqueued = make_queue(factory, settings, monkeypatch)
    first = queue_partitioned(factory, 2)
    jobs._run(first)
    second = queue_partitioned(factory, 2)

    assert jobs._run(second) == "closed"

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
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While p1 runs (its lease held), p0 runs too; an incremental pull of the object may run
    beside them and does not close the running parent as abandoned."""
    crm = HookedSalesforce()
    stamped_accounts(crm, 600)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    parent = queue_partitioned(factory, 2)
    jobs._run(parent)
    first, second = enqueued
    with factory() as s:  # a live pass of p1 on another host
        leases.acquire(
            s, "sync:salesforce:Account:p1", "otherhost:1:abc", utcnow(), timedelta(minutes=5)
        )

    assert jobs._run(second) == "waiting"
    assert jobs._run(first) == "ran"
    with factory() as s:
        pull, _ = job_store.queue_run(
            s, kind="pull", crm="salesforce", object_name="Account", triggered_by="api", params={}
        )
    assert jobs._run(pull) == "ran"
    assert run_row(factory, parent).status == "running"
    with factory() as s:
        leases.release(s, "sync:salesforce:Account:p1", "otherhost:1:abc")
    assert jobs._run(second) == "ran"
    assert run_row(factory, parent).status == "succeeded"
    assert sorted(stored_ids(factory)) == sorted(crm.objects["Account"])


def test_a_child_stops_at_a_page_when_the_budget_runs_out_and_resumes_once_it_frees(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.settings import BudgetSettings
    from app.wiring.budget import budget_status

    crm = HookedSalesforce()
    stamped_accounts(crm, 1200)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path).model_copy(
        update={"salesforce": BudgetSettings(daily_limit=200)}
    )
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    parent = queue_partitioned(factory, 2)
    assert jobs._run(parent) == "planned"  # the estimate fits in what is left
    first, second = enqueued
    enqueued.clear()
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
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    stamped_accounts(crm, 1200)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    failed_parent = queue_partitioned(factory, 3)
    jobs._run(failed_parent)
    first, second, third = enqueued
    enqueued.clear()
    jobs._run(first)
    crm.fail_after_pages = crm.pages_served + 1  # p1 commits a page, then an outage
    jobs._run(second)
    crm.fail_after_pages = None
    jobs._run(third)
    broken = run_row(factory, second)
    assert broken.status == "failed"
    assert broken.read_count > 0  # it committed pages before the outage: a checkpoint
    assert run_row(factory, failed_parent).status == "failed"
    old_plan = run_row(factory, failed_parent).params["plan"]

    calls = crm.calls
    again = queue_partitioned(factory, 3)  # the same request again
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
    fresh = queue_partitioned(factory, 2)
    assert jobs._run(fresh) == "planned"
    assert len(enqueued) == 2
    assert "resumes" not in run_row(factory, fresh).params["plan"]


def test_restart_plans_a_failed_partitioned_backfill_anew(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    stamped_accounts(crm, 600)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    jobs, enqueued = make_queue(factory, settings, monkeypatch)
    failed_parent = queue_partitioned(factory, 2)
    jobs._run(failed_parent)
    first, second = enqueued
    enqueued.clear()
    jobs._run(first)
    crm.fail_after_pages = crm.pages_served + 1
    jobs._run(second)
    crm.fail_after_pages = None
    assert run_row(factory, failed_parent).status == "failed"

    anew = queue_partitioned(factory, 2, restart=True)
    assert jobs._run(anew) == "planned"

    plan = run_row(factory, anew).params["plan"]
    assert "resumes" not in plan
    assert plan["generation"] != run_row(factory, failed_parent).params["plan"]["generation"]
    assert len(enqueued) == 2
