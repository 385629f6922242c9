"""Jobs (#19 items 1, 2 and 8): a queued run carried out by its job, exactly once.

The job path runs the ordinary ``run_sync`` over a fake Salesforce, in this process: the row is
claimed once (a second delivery does nothing), a held lease leaves it queued, a cancel stops it
after its current page with the cursor there, a worker shutting down queues it again, and the
sweeper finds queued runs whose message was lost and runs whose worker died.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huey import MemoryHuey
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.db import leases, runs
from app.db.base import utcnow
from app.db.engine import make_session_factory
from app.db.models import Account, SyncRun
from app.jobs.runs import execute_run
from app.jobs.tasks import JobQueue
from app.sync import run_scope
from tests.support.jobs import HookedSalesforce, accounts, job_settings, queue_run, use_crm


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def run_row(factory: sessionmaker[Session], run_id: int) -> SyncRun:
    with factory() as s:
        row = s.get(SyncRun, run_id)
        assert row is not None
        return row


def account_count(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(Account)) or 0)


def test_a_queued_run_is_claimed_once_and_a_second_delivery_does_nothing(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    accounts(crm, 450)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    run_id = queue_run(factory)

    first = execute_run(settings, factory, run_id)
    calls = crm.calls
    second = execute_run(settings, factory, run_id)

    assert first.action == "ran"
    assert first.status == "succeeded"
    assert second.action == "skipped"
    assert crm.calls == calls  # no API call for the repeated message
    row = run_row(factory, run_id)
    assert row.status == "succeeded"
    assert row.read_count == 450
    assert row.triggered_by == "api"
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(SyncRun)) == 1  # no second row
    assert account_count(factory) == 450


def test_a_held_lease_leaves_the_run_queued_then_it_runs(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    accounts(crm, 10)
    use_crm(monkeypatch, crm)
    settings = job_settings(database_url, tmp_path)
    run_id = queue_run(factory)
    with factory() as s:  # a live pass of another host holds the object's lease
        leases.acquire(
            s, "sync:salesforce:Account", "otherhost:1:abc", utcnow(), timedelta(minutes=5)
        )

    jobs = JobQueue(settings, session_factory=factory, huey=MemoryHuey(), periodic=False)

    assert jobs._run(run_id) == "waiting"

    assert run_row(factory, run_id).status == "queued"
    # Tried again in lease_wait_seconds, not left for the sweeper's next minute.
    (retry,) = jobs.huey.pending()  # enqueued with an eta; the consumer holds it till then
    assert retry.args == (run_id,)
    assert retry.eta is not None
    wait = (retry.eta - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    assert 0 < wait <= settings.jobs.lease_wait_seconds
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(SyncRun)) == 1  # no "could not start" row
        leases.release(s, "sync:salesforce:Account", "otherhost:1:abc")

    assert execute_run(settings, factory, run_id).status == "succeeded"
    assert account_count(factory) == 10


def test_a_run_cancelled_while_queued_never_starts(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = HookedSalesforce()
    accounts(crm, 10)
    use_crm(monkeypatch, crm)
    run_id = queue_run(factory)
    with factory() as s:
        assert runs.request_cancel(s, run_id) == "cancelled"

    outcome = execute_run(job_settings(database_url, tmp_path), factory, run_id)

    assert outcome.action == "skipped"
    assert crm.calls == 0
    assert account_count(factory) == 0


def test_cancel_stops_after_the_current_page_and_the_backfill_resumes_there(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(database_url, tmp_path)
    run_id = queue_run(factory)

    def cancel_after_two(pages: int) -> None:
        if pages == 2:
            with factory() as s:
                assert runs.request_cancel(s, run_id) == "cancelling"

    crm = HookedSalesforce(cancel_after_two)
    accounts(crm, 1000)  # five pages of 200
    use_crm(monkeypatch, crm)

    outcome = execute_run(settings, factory, run_id)

    assert outcome.status == "cancelled"
    row = run_row(factory, run_id)
    assert row.status == "cancelled"
    assert row.error is not None
    assert row.error.startswith("cancelled on request")
    # It stops after the page being written when the cancel came (pages are read one ahead):
    # what it counted is exactly what it committed, and the rest was not written.
    stopped_at = row.read_count
    assert stopped_at in (200, 400)
    assert account_count(factory) == stopped_at
    assert row.cursor_to is not None  # where it stopped; the next pass goes on from there

    crm.after_page = None
    again = queue_run(factory)
    assert execute_run(settings, factory, again).status == "succeeded"
    assert run_row(factory, again).read_count == 1000 - stopped_at  # the rest, nothing twice
    assert account_count(factory) == 1000


def test_a_worker_stopping_cancels_after_the_page_and_queues_the_run_again(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(database_url, tmp_path)
    jobs = JobQueue(settings, session_factory=factory)
    enqueued: list[int] = []
    monkeypatch.setattr(jobs, "enqueue_run", enqueued.append)
    run_id = queue_run(factory)

    def stop_after_one(pages: int) -> None:
        if pages == 1:
            run_scope.request_stop()

    crm = HookedSalesforce(stop_after_one)
    accounts(crm, 600)
    use_crm(monkeypatch, crm)
    try:
        jobs._run(run_id)
    finally:
        run_scope.clear_stop()

    row = run_row(factory, run_id)
    assert row.status == "cancelled"
    assert row.error is not None
    assert row.error.startswith("its worker stopped")
    assert len(enqueued) == 1
    resumption = run_row(factory, enqueued[0])
    assert resumption.status == "queued"
    assert resumption.params["resumes"] == run_id

    crm.after_page = None
    assert execute_run(settings, factory, enqueued[0]).status == "succeeded"
    assert account_count(factory) == 600
    stopped_at = row.read_count
    assert 0 < stopped_at < 600
    assert run_row(factory, enqueued[0]).read_count == 600 - stopped_at


def test_the_sweeper_enqueues_lost_messages_and_resumes_runs_whose_worker_died(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(database_url, tmp_path, lease_seconds=5)
    jobs = JobQueue(settings, session_factory=factory)
    enqueued: list[int] = []
    monkeypatch.setattr(jobs, "enqueue_run", enqueued.append)
    lost = queue_run(factory)
    fresh = queue_run(factory, obj="Opportunity")
    dead = queue_run(factory, kind="push")
    long_ago = utcnow() - timedelta(minutes=10)
    with factory() as s:
        s.execute(update(SyncRun).where(SyncRun.id == lost).values(started_at=long_ago))
        s.execute(
            update(SyncRun)
            .where(SyncRun.id == dead)
            .values(status="running", started_at=long_ago, heartbeat_at=long_ago)
        )
        s.commit()

    report = jobs.sweep()

    assert report.requeued_runs == [lost]  # the fresh one may still have its message
    assert list(report.resumed_runs) == [dead]
    resumption = report.resumed_runs[dead]
    assert enqueued == [lost, resumption]
    row = run_row(factory, resumption)
    assert (row.kind, row.status, row.params["resumes"]) == ("push", "queued", dead)
    assert fresh not in enqueued
    # A second sweep does not queue the dead run again: its resumption is pending.
    with factory() as s:
        s.execute(update(SyncRun).where(SyncRun.id == resumption).values(started_at=utcnow()))
        s.commit()
    enqueued.clear()
    assert jobs.sweep().resumed_runs == {}


def test_the_schedule_queues_one_incremental_per_object_once_per_slot(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = JobQueue(job_settings(database_url, tmp_path), session_factory=factory)
    enqueued: list[int] = []
    monkeypatch.setattr(jobs, "enqueue_run", enqueued.append)
    other = JobQueue(job_settings(database_url, tmp_path), session_factory=factory)
    monkeypatch.setattr(other, "enqueue_run", enqueued.append)

    made = jobs.incremental()
    assert other.incremental() == []  # the second worker's scheduler, same slot

    assert made == enqueued
    with factory() as s:
        queued = s.scalars(select(SyncRun).where(SyncRun.status == "queued")).all()
    assert {(r.kind, r.crm, r.object, r.triggered_by) for r in queued} == {
        ("pull", "salesforce", o, "schedule") for o in ("Account", "Opportunity", "Note")
    }
    assert jobs.nightly() is not None
    assert other.nightly() is None
    assert RunStatus.QUEUED == "queued"


def due_inbox(factory: sessionmaker[Session]) -> int:
    """One due inbox event next to one whose retry has not come, one held by a live worker's
    lease and one done; returns the due one's id."""
    from app.db.models import WebhookEvent

    long_ago = utcnow() - timedelta(minutes=10)
    with factory() as s:
        due = WebhookEvent(
            source="hubspot",
            external_id="a",
            raw_body="[]",
            status="failed",
            received_at=long_ago,
            next_attempt_at=long_ago,
        )
        later = WebhookEvent(
            source="hubspot",
            external_id="b",
            raw_body="[]",
            status="failed",
            received_at=long_ago,
            next_attempt_at=utcnow() + timedelta(hours=1),
        )
        done = WebhookEvent(
            source="hubspot",
            external_id="c",
            raw_body="[]",
            status="done",
            received_at=long_ago,
            next_attempt_at=long_ago,
        )
        held = WebhookEvent(
            source="hubspot",
            external_id="d",
            raw_body="[]",
            status="processing",
            attempts=1,
            received_at=long_ago,
            next_attempt_at=utcnow() + timedelta(minutes=4),  # the end of its lease
        )
        s.add_all([due, later, done, held])
        s.commit()
        return int(due.id)


def test_the_sweeper_hands_due_inbox_events_to_webhook_processing_in_batches(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = JobQueue(job_settings(database_url, tmp_path), session_factory=factory)
    batches: list[list[int]] = []
    monkeypatch.setattr(jobs, "enqueue_webhooks", lambda ids: batches.append(list(ids)))
    monkeypatch.setattr(jobs, "enqueue_webhook", pytest.fail)  # not one job per event
    due_id = due_inbox(factory)

    assert jobs.sweep().inbox_events == [due_id]
    assert batches == [[due_id]]


def test_without_the_batch_handler_the_sweeper_sends_one_job_per_event(
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.jobs import tasks

    wired = tasks.handler
    monkeypatch.setattr(tasks, "handler", lambda kind: None if kind == "webhooks" else wired(kind))
    jobs = JobQueue(job_settings(database_url, tmp_path), session_factory=factory)
    handed: list[int] = []
    monkeypatch.setattr(jobs, "enqueue_webhook", handed.append)
    monkeypatch.setattr(jobs, "enqueue_webhooks", pytest.fail)
    due_id = due_inbox(factory)

    assert jobs.sweep().inbox_events == [due_id]
    assert handed == [due_id]


def test_the_budget_gate_looks_again_after_a_second_while_plenty_is_left(
    database_url: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from app.settings import BudgetSettings
    from app.wiring.budget import RunBudgetGate

    settings = job_settings(database_url, tmp_path).model_copy(
        update={"salesforce": BudgetSettings(daily_limit=5000)}
    )
    now = [0.0]
    gate = RunBudgetGate(settings, factory, clock=lambda: now[0])
    assert gate.stop_reason("cs") is None  # the CS database has no API budget
    assert gate.stop_reason("salesforce") is None  # 5000 left: plenty
    run_id = queue_run(factory, kind="pull")
    with factory() as s:  # another worker's run spends all but one call
        s.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id)
            .values(status="succeeded", api_calls=4999, finished_at=utcnow())
        )
        s.commit()
    now[0] = 0.5
    assert gate.stop_reason("salesforce") is None  # not looked at again within a second
    now[0] = 1.5
    reason = gate.stop_reason("salesforce")
    assert reason is not None
    assert reason.startswith("until about")
