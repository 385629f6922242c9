"""Retrying failed records re-reads them from the sandbox and syncs them (issue #19 items 3, 8):
through the API (single and filtered) and the same function the CLI calls, on the test
database (SQLite or PostgreSQL), with the real clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.db import leases
from app.db.base import utcnow
from app.db.engine import make_session_factory
from app.db.models import Account, ApiLimit, AuditEntry, SyncErrorRecord, SyncRun
from app.main import create_app
from app.settings import Settings
from app.wiring.sync import run_sync
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.integration.test_pull_bad_data import hs_first, hs_rest
from tests.integration.test_pull_pitfalls import settings_for, sf_rest
from tests.support.api import api_client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=8, hs_rate_limits=False)) as sb:
        yield sb


@pytest.fixture
def settings(sandbox: Sandbox, database_url: str) -> Settings:
    return settings_for(sandbox).model_copy(update={"database_url": database_url})


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    from app.db.engine import make_engine

    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


def sf_account_ids(sb: Sandbox, n: int) -> list[str]:
    q = f"SELECT Id FROM Account ORDER BY Id LIMIT {n}"
    return [r["Id"] for r in sf_rest(sb, "GET", "query/", params={"q": q}).json()["records"]]


def patch_sf(sb: Sandbox, record_id: str, values: dict[str, Any]) -> None:
    response = sf_rest(sb, "PATCH", f"sobjects/Account/{record_id}", json=values)
    assert response.status_code == 204, response.text


def open_error(factory: sessionmaker[Session], record_id: str) -> SyncErrorRecord:
    with factory() as s:
        return s.scalars(
            select(SyncErrorRecord).where(
                SyncErrorRecord.record_id == record_id, SyncErrorRecord.resolved_at.is_(None)
            )
        ).one()


def error_row(factory: sessionmaker[Session], error_id: int) -> SyncErrorRecord:
    with factory() as s:
        row = s.get(SyncErrorRecord, error_id)
        assert row is not None
        return row


def test_salesforce_retry_resyncs_the_fixed_record_and_resolves_the_error(
    sandbox: Sandbox, settings: Settings, factory: sessionmaker[Session], app: FastAPI
) -> None:
    fixed, still_bad, deleted = sf_account_ids(sandbox, 3)
    for record_id in (fixed, still_bad, deleted):
        patch_sf(sandbox, record_id, {"Website": "not a website"})
    (first,) = run_sync(settings, factory, kind="pull", crms=["salesforce"], objects=["Account"])  # type: ignore[arg-type]
    assert first.status is RunStatus.PARTIAL, first.error
    errors = {r: open_error(factory, r) for r in (fixed, still_bad, deleted)}
    assert all(e.category == "invalid_field" for e in errors.values())

    # Fixed in the CRM, after the pass: only a retry (or a later pass) brings it in.
    patch_sf(sandbox, fixed, {"Website": "https://fixed.example.com"})
    gone = sf_rest(sandbox, "DELETE", f"sobjects/Account/{deleted}")
    assert gone.status_code == 204, gone.text

    with api_client(app, "operator", name="ops") as client:
        r = client.post(f"/api/v1/sync/errors/{errors[fixed].id}/retry")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["outcome"] == "resolved"
        assert body["error"]["resolution"] == "synced"
        assert body["error"]["resolved_at"] is not None
        run_id = body["run_id"]

        r = client.post(f"/api/v1/sync/errors/{errors[still_bad].id}/retry")
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "failed_again"
        assert r.json()["error"]["attempts"] == 2

        r = client.post(f"/api/v1/sync/errors/{errors[deleted].id}/retry")
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "gone"

        # Already resolved: nothing to retry.
        r = client.post(f"/api/v1/sync/errors/{errors[fixed].id}/retry")
        assert (r.status_code, r.json()["reason"]) == (409, "not_retriable")

        run = client.get(f"/api/v1/sync/runs/{run_id}").json()
        assert (run["kind"], run["status"], run["triggered_by"]) == (
            "retry",
            "succeeded",
            "key:ops",
        )
        assert run["counts"]["read"] == 1
        assert run["api_calls"] >= 1

    with factory() as s:
        stored = {a.sf_id: a for a in s.scalars(select(Account))}
        audit = [
            (a.actor, a.action, a.target)
            for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
    assert stored[fixed].domain == "fixed.example.com"
    assert stored[deleted].deleted_at is not None
    assert audit[0] == ("key:ops", "sync_error.retry", f"sync_error:{errors[fixed].id}")
    assert len(audit) == 4


def test_hubspot_retry_all_filtered_and_a_busy_object(
    sandbox: Sandbox, settings: Settings, factory: sessionmaker[Session], app: FastAPI
) -> None:
    long_id = hs_first(sandbox, "companies", skip=2)
    other_id = hs_first(sandbox, "companies", skip=3)
    for company in (long_id, other_id):
        r = hs_rest(
            sandbox,
            "PATCH",
            f"objects/companies/{company}",
            json={"properties": {"name": "N" * 300}},
        )
        assert r.status_code == 200, r.text
    # HubSpot search shows a change after its index lag; a pass reads up to now - 2 s.
    time.sleep(2.5)
    (first,) = run_sync(settings, factory, kind="pull", crms=["hubspot"], objects=["companies"])  # type: ignore[arg-type]
    assert first.status is RunStatus.PARTIAL, first.error
    ids = [open_error(factory, long_id).id, open_error(factory, other_id).id]
    # Mark them retriable, as a transient failure would be: the filtered retry takes only those.
    with factory() as s:
        s.execute(update(SyncErrorRecord).where(SyncErrorRecord.id.in_(ids)).values(retriable=True))
        s.commit()
    for company in (long_id, other_id):
        hs_rest(
            sandbox,
            "PATCH",
            f"objects/companies/{company}",
            json={"properties": {"name": f"Fixed {company}"}},
        )

    with api_client(app, "operator") as client:
        # A pass holds the object's lease: refused, nothing changes.
        with factory() as s:
            assert leases.acquire(
                s, "sync:hubspot:companies", "other-host:1:x", utcnow(), timedelta(minutes=5)
            )
            s.commit()
        r = client.post(f"/api/v1/sync/errors/{ids[0]}/retry")
        assert (r.status_code, r.json()["reason"]) == (409, "busy")
        assert error_row(factory, ids[0]).resolved_at is None
        with factory() as s:
            leases.release(s, "sync:hubspot:companies", "other-host:1:x")
            s.commit()

        r = client.post("/api/v1/sync/errors/retry", json={"crm": "salesforce"})
        assert r.json()["retried"] == 0
        r = client.post("/api/v1/sync/errors/retry", json={"crm": "hubspot", "object": "companies"})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["retried"] == 2
        assert report["outcomes"] == {"resolved": 2}
        assert len(report["runs"]) == 1  # one pass, one batch read for both
        r = client.post("/api/v1/sync/errors/retry", json={"crm": "pipedrive"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "crm"]
    with factory() as s:
        names = {
            a.hs_id: a.name
            for a in s.scalars(select(Account).where(Account.hs_id.in_([long_id, other_id])))
        }
        run = s.get(SyncRun, report["runs"][0])
        assert run is not None
        assert run.read_count == 2
    assert names == {long_id: f"Fixed {long_id}", other_id: f"Fixed {other_id}"}


KILLED_RETRY = """
import os, signal, sys
from app.crm.factory import build_client
from app.db.engine import make_engine, make_session_factory
from app.settings import Settings
from app.wiring.error_retry import retry_errors


def dies_after_the_read(crm, settings):
    client = build_client(crm, settings)
    fetch = client.read_records

    def fetch_then_die(*args, **kwargs):
        page = fetch(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # read from the CRM, nothing committed yet
        return page

    client.read_records = fetch_then_die
    return client


settings = Settings()
factory = make_session_factory(make_engine(settings.database_url))
retry_errors(
    settings, factory, [int(sys.argv[1])], actor="cli:test", client_factory=dies_after_the_read
)
"""


def test_a_retry_killed_after_the_read_loses_nothing_and_the_next_retry_resolves_it(
    sandbox: Sandbox, settings: Settings, factory: sessionmaker[Session], app: FastAPI
) -> None:
    (record_id,) = sf_account_ids(sandbox, 1)
    patch_sf(sandbox, record_id, {"Website": "not a website"})
    run_sync(settings, factory, kind="pull", crms=["salesforce"], objects=["Account"])  # type: ignore[arg-type]
    before = open_error(factory, record_id)
    patch_sf(sandbox, record_id, {"Website": "https://back.example.net"})

    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(sandbox.info.env())
    env.update({"CRMSYNC_DATABASE_URL": settings.database_url, "PYTHONPATH": str(ROOT)})
    env.pop("CRMSYNC_HUBSPOT_BASE_URL", None)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RETRY, str(before.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Nothing of the retry committed: the error is open as it was, the CS row unchanged.
    after = error_row(factory, before.id)
    assert (after.resolved_at, after.attempts) == (None, before.attempts)
    with factory() as s:
        domain = s.scalars(select(Account.domain).where(Account.sf_id == record_id)).one()
        dead_run = s.scalars(select(SyncRun).where(SyncRun.kind == "retry")).one()
        audit = s.scalars(select(AuditEntry)).one()
    assert domain is None
    assert dead_run.status == "running"  # killed: its row stays running, its lease behind
    assert audit.detail["outcome"] == "started"  # who asked is known even so

    # The next retry takes the dead process's lease over (same host), closes its run as
    # failed, and syncs the record once.
    with api_client(app, "operator") as client:
        r = client.post(f"/api/v1/sync/errors/{before.id}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "resolved"
    with factory() as s:
        domain = s.scalars(select(Account.domain).where(Account.sf_id == record_id)).one()
        closed = s.get(SyncRun, dead_run.id)
        assert closed is not None
        assert closed.status == "failed"
        count = len(list(s.scalars(select(Account).where(Account.sf_id == record_id))))
    assert domain == "back.example.net"
    assert count == 1


def test_the_sweeper_retries_a_due_retriable_error_through_its_job(
    sandbox: Sandbox,
    settings: Settings,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduled path: the sweep finds an open retriable pull error whose time has come,
    enqueues ``crmsync.retry_error``, and the job re-reads the record from the CRM and resolves
    the error (audited as ``scheduler``); a second sweep finds nothing to do."""
    from huey import MemoryHuey

    from app.jobs.tasks import JobQueue, handler
    from app.wiring import error_retry

    (record_id,) = sf_account_ids(sandbox, 1)
    patch_sf(sandbox, record_id, {"Website": "not a website"})
    run_sync(settings, factory, kind="pull", crms=["salesforce"], objects=["Account"])  # type: ignore[arg-type]
    error = open_error(factory, record_id)
    with factory() as s:  # as a transient failure (a lock, a timeout) would have left it
        s.execute(
            update(SyncErrorRecord)
            .where(SyncErrorRecord.id == error.id)
            .values(retriable=True, category="transient")
        )
        s.commit()
    patch_sf(sandbox, record_id, {"Website": "https://swept.example.com"})

    monkeypatch.setattr(error_retry, "get_settings", lambda: settings)
    monkeypatch.setattr(error_retry, "_job_factory", factory)
    assert handler("retry_error") is error_retry.retry_sync_error
    jobs = JobQueue(
        settings, session_factory=factory, huey=MemoryHuey(immediate=True), periodic=False
    )
    report = jobs.sweep()  # immediate mode: the enqueued job runs inside the sweep
    assert report.sync_errors == [error.id]

    row = error_row(factory, error.id)
    assert (row.resolution, row.resolved_at is not None) == ("synced", True)
    with factory() as s:
        stored = s.scalars(select(Account).where(Account.sf_id == record_id)).one()
        audit = [(a.actor, a.action) for a in s.scalars(select(AuditEntry))]
    assert stored.domain == "swept.example.com"
    assert audit == [("scheduler", "sync_error.retry")]
    assert jobs.sweep().sync_errors == []


def test_the_sweeper_holds_error_retries_while_the_crms_budget_is_spent(
    sandbox: Sandbox,
    settings: Settings,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scheduled retries are scheduled work: while crmsync's share of Salesforce's daily API
    budget is spent, a due retriable error is left due (not retried, its next try not pushed
    back); once the window frees, the sweep retries it."""
    from huey import MemoryHuey

    from app.jobs.tasks import JobQueue
    from app.settings import BudgetSettings
    from app.wiring import error_retry

    (record_id,) = sf_account_ids(sandbox, 1)
    patch_sf(sandbox, record_id, {"Website": "not a website"})
    run_sync(settings, factory, kind="pull", crms=["salesforce"], objects=["Account"])  # type: ignore[arg-type]
    error = open_error(factory, record_id)
    with factory() as s:
        s.execute(
            update(SyncErrorRecord)
            .where(SyncErrorRecord.id == error.id)
            .values(retriable=True, category="transient")
        )
        pulls = list(s.scalars(select(SyncRun)))
        s.commit()
    patch_sf(sandbox, record_id, {"Website": "https://held.example.com"})
    spent = sum(r.api_calls for r in pulls)
    assert spent > 0
    # The pull above spent the whole share of a daily limit that small.
    guarded = settings.model_copy(update={"salesforce": BudgetSettings(daily_limit=spent)})
    monkeypatch.setattr(error_retry, "get_settings", lambda: guarded)
    monkeypatch.setattr(error_retry, "_job_factory", factory)
    jobs = JobQueue(
        guarded, session_factory=factory, huey=MemoryHuey(immediate=True), periodic=False
    )
    try:
        assert jobs.sweep().sync_errors == []
        held = error_row(factory, error.id)
        assert held.resolved_at is None
        assert held.next_retry_at is None  # still due: taken at the first sweep with budget

        day_ago = utcnow() - timedelta(hours=25)  # a day passes: the calls leave the window
        with factory() as s:
            s.execute(
                update(SyncRun).values(
                    started_at=day_ago, heartbeat_at=day_ago, finished_at=day_ago
                )
            )
            # The org's usage the CRM reported then is stale too.
            s.execute(update(ApiLimit).values(observed_at=day_ago))
            s.commit()
        assert jobs.sweep().sync_errors == [error.id]
    finally:
        jobs.close()
    assert error_row(factory, error.id).resolution == "synced"
