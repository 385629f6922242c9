"""The job queue on huey for real: the embedded SQLite broker under the data dir, and Redis.

A worker (huey consumer threads, in this process so the fake CRM is wired in) carries out a run
enqueued by id; with Redis each test has a queue name of its own and removes its keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import make_session_factory
from app.db.models import SyncRun
from app.jobs.queue import broker_status
from app.jobs.tasks import JobQueue
from app.jobs.worker import Worker
from app.settings import Settings
from tests.support.jobs import (
    REDIS_URL,
    HookedSalesforce,
    accounts,
    flush_queue,
    job_settings,
    queue_run,
    redis_available,
    use_crm,
)


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture(params=["sqlite", "redis"])
def settings(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield job_settings(database_url, tmp_path / "data")
        return
    if not redis_available():
        pytest.skip("no Redis at 127.0.0.1:6379")
    made = job_settings(database_url, tmp_path, redis_url=REDIS_URL)
    try:
        yield made
    finally:
        flush_queue(made)


def wait_for(
    factory: sessionmaker[Session], run_id: int, statuses: set[str], timeout: float = 30
) -> SyncRun:
    deadline = time.monotonic() + timeout
    while True:
        with factory() as s:
            row = s.get(SyncRun, run_id)
            assert row is not None
            if row.status in statuses:
                return row
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {row.status}, not {statuses}")
        time.sleep(0.1)


def test_a_worker_runs_what_was_enqueued(
    settings: Settings, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = HookedSalesforce()
    accounts(crm, 300)
    use_crm(monkeypatch, crm)
    # No schedule: a run started at a minute divisible by 5 would queue incremental runs too.
    jobs = JobQueue(settings, session_factory=factory, periodic=False)
    run_id = queue_run(factory)
    jobs.enqueue_run(run_id)
    jobs.enqueue_run(run_id)  # delivered twice
    assert jobs.depth() == 2
    status = broker_status(jobs.huey, settings)
    assert status["ok"] is True
    assert status["queued_messages"] == 2
    if settings.redis_url is None:
        assert (settings.data_dir / "jobs.db").is_file()

    worker = Worker(jobs, workers=2, shutdown_timeout=10)
    worker.start()
    try:
        row = wait_for(factory, run_id, {"succeeded", "failed", "partial"})
        deadline = time.monotonic() + 60
        while jobs.depth() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert row.status == "succeeded"
    assert row.read_count == 300
    assert jobs.depth() == 0
    with factory() as s:
        assert s.query(SyncRun).count() == 1  # the second delivery did nothing
