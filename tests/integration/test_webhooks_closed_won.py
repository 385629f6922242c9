"""Closed-won processing end to end (#20 items 2-3): the sandbox delivers real, signed webhooks
to crmsync served by uvicorn with its embedded worker; the worker reads the deal's current
state from the sandbox. SQLite and PostgreSQL (the suite's database)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.models import OnboardingPlan, Opportunity, WebhookEvent
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.webhooks import (
    LiveApp,
    hubspot_api,
    hubspot_company_ids,
    hubspot_event,
    hubspot_request,
    point_sandbox_at,
    post,
    sandbox_settings,
    seed_csms,
    wait_for,
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=60, seed=20)) as sb:
        yield sb


@pytest.fixture
def server(sandbox: Sandbox, database_url: str) -> Iterator[LiveApp]:
    app = LiveApp(sandbox_settings(sandbox, database_url))
    point_sandbox_at(sandbox, app)
    yield app
    sandbox.control("PUT", "/webhooks", {"hold": False, "duplicate": False, "reorder": False})
    sandbox.control("POST", "/webhooks/clear")
    app.stop()


_made = iter(range(1, 1_000_000))


def open_deals(sb: Sandbox, count: int, dealtype: str = "newbusiness") -> list[str]:
    """``count`` new open deals, each on its own company (a new customer)."""
    ids = []
    for company in hubspot_company_ids(sb)[-count:]:
        n = next(_made)
        made = hubspot_api(
            sb,
            "POST",
            "/crm/v3/objects/deals",
            json={
                "properties": {
                    "dealname": f"webhook test {n}",
                    "amount": "30000",
                    "closedate": "2026-12-04T00:00:00.000Z",
                    "dealstage": "contractsent",
                    "pipeline": "default",
                    "dealtype": dealtype,
                },
                "associations": [
                    {
                        "to": {"id": company},
                        "types": [
                            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}
                        ],
                    }
                ],
            },
        )
        ids.append(str(made["id"]))
    return ids


def events(engine: Engine, object_id: str | None = None) -> list[WebhookEvent]:
    with Session(engine) as s:
        query = select(WebhookEvent).order_by(WebhookEvent.id)
        if object_id is not None:
            query = query.where(WebhookEvent.object_id == object_id)
        return list(s.scalars(query))


def plans_for(engine: Engine, hs_id: str) -> list[OnboardingPlan]:
    with Session(engine) as s:
        return list(
            s.scalars(
                select(OnboardingPlan)
                .join(Opportunity, Opportunity.id == OnboardingPlan.opportunity_id)
                .where(Opportunity.hs_id == hs_id)
            )
        )


def settled(engine: Engine, object_id: str, count: int = 1) -> list[WebhookEvent]:
    def check() -> list[WebhookEvent] | None:
        rows = events(engine, object_id)
        done = [r for r in rows if r.status in ("done", "ignored", "dead")]
        return rows if len(rows) >= count and len(done) == len(rows) else None

    result: list[WebhookEvent] = wait_for(check, timeout=60)
    return result


def test_a_deal_deleted_before_processing_is_ignored(
    sandbox: Sandbox, server: LiveApp, engine: Engine
) -> None:
    (deal,) = open_deals(sandbox, 1)
    sandbox.control("PUT", "/webhooks", {"hold": True})
    sandbox.control("POST", "/hubspot/close-won", {"id": deal})
    hubspot_api(sandbox, "DELETE", f"/crm/v3/objects/deals/{deal}")
    sandbox.control("POST", "/webhooks/flush", {"wait": 20})
    (event,) = settled(engine, deal)
    assert event.status == "ignored"
    assert event.last_error == "deleted in the CRM before processing"
    assert plans_for(engine, deal) == []


def test_won_then_lost_before_processing_is_ignored(
    sandbox: Sandbox, server: LiveApp, engine: Engine
) -> None:
    (deal,) = open_deals(sandbox, 1)
    sandbox.control("PUT", "/webhooks", {"hold": True})
    sandbox.control("POST", "/hubspot/close-won", {"id": deal})
    hubspot_api(
        sandbox,
        "PATCH",
        f"/crm/v3/objects/deals/{deal}",
        json={"properties": {"dealstage": "closedlost"}},
    )
    sandbox.control("POST", "/webhooks/flush", {"wait": 20})
    rows = settled(engine, deal)
    assert all(r.status == "ignored" for r in rows)
    assert "not won in the CRM now" in (rows[0].last_error or "")
    with Session(engine) as s:
        opportunity = s.scalars(select(Opportunity).where(Opportunity.hs_id == deal)).one()
        assert opportunity.is_won is False
        assert opportunity.is_closed is True
    assert plans_for(engine, deal) == []


def company_of(sb: Sandbox, deal: str) -> str:
    found = hubspot_api(sb, "GET", f"/crm/v4/objects/deals/{deal}/associations/companies")
    return str(found["results"][0]["toObjectId"])


def test_a_won_deal_starts_onboarding_once_and_writes_back(
    sandbox: Sandbox, server: LiveApp, engine: Engine
) -> None:
    from app.db.models import Account, Csm, HandoverNote, OnboardingTask

    emails = seed_csms(engine, sandbox)
    (deal,) = open_deals(sandbox, 1)
    sandbox.control("PUT", "/webhooks", {"duplicate": True})  # every batch delivered twice
    sandbox.control("POST", "/hubspot/close-won", {"id": deal})
    rows = settled(engine, deal)
    assert [r.status for r in rows] == ["done"], [(r.status, r.last_error) for r in rows]
    (plan,) = plans_for(engine, deal)
    with Session(engine) as s:
        account = s.get(Account, plan.account_id)
        assert account is not None
        assert account.lifecycle_stage == "onboarding"
        assert account.onboarding_status == "active"
        assert plan.tier_at_close == account.tier
        csm = s.get(Csm, plan.csm_id) if plan.csm_id else None
        if plan.tier_at_close == "tech":
            assert csm is not None
            assert csm.is_pool
        else:
            assert csm is not None
            assert csm.email in emails
        assert account.csm_email == csm.email
        tasks = list(s.scalars(select(OnboardingTask).where(OnboardingTask.plan_id == plan.id)))
        assert {t.code for t in tasks} >= {"go_live", "first_value"}
        assert all(t.due_on.weekday() < 5 for t in tasks)
        note = s.get(HandoverNote, plan.handover_note_id)
        assert note is not None
        assert note.origin == "cs"
        assert note.status in ("complete", "partial", "empty")
        handover_task = [t for t in tasks if t.code == "handover_complete"]
        assert bool(handover_task) == (note.status != "complete")
        company = account.hs_id

    # write-back: the CSM and the onboarding status on the company, the handover note on it
    def pushed() -> Any:
        props = hubspot_api(
            sandbox,
            "GET",
            f"/crm/v3/objects/companies/{company}",
            params={"properties": "crmsync_csm_email,crmsync_onboarding_status"},
        )["properties"]
        return props if props.get("crmsync_onboarding_status") == "active" else None

    props = wait_for(pushed, timeout=30)
    assert props["crmsync_csm_email"] == csm.email

    def note_id() -> str | None:
        with Session(engine) as s:
            note = s.get(HandoverNote, plan.handover_note_id)
            return note.hs_id if note is not None else None

    hs_note = wait_for(note_id, timeout=30)  # created in HubSpot, its id stored
    on_company = hubspot_api(
        sandbox, "GET", f"/crm/v4/objects/companies/{company}/associations/notes"
    )
    assert hs_note in {str(r["toObjectId"]) for r in on_company["results"]}
    # another event about the same won deal (a new eventId: a replay) starts nothing new
    url = server.url + "/webhooks/hubspot"
    assert post(url, *hubspot_request(url, [hubspot_event(999_001, deal)])).status_code == 200
    rows = settled(engine, deal, count=2)
    assert rows[1].status == "done"
    assert "exists" in (rows[1].last_error or "")
    assert len(plans_for(engine, deal)) == 1


def test_won_lost_won_out_of_order_gives_one_plan(
    sandbox: Sandbox, server: LiveApp, engine: Engine
) -> None:
    seed_csms(engine)
    (deal,) = open_deals(sandbox, 1)
    sandbox.control("PUT", "/webhooks", {"hold": True, "reorder": True})
    sandbox.control("POST", "/hubspot/close-won", {"id": deal})  # won
    patch = {"properties": {"dealstage": "closedlost"}}
    hubspot_api(sandbox, "PATCH", f"/crm/v3/objects/deals/{deal}", json=patch)  # lost
    url = server.url + "/webhooks/hubspot"
    lost = hubspot_event(880_001, deal, stage="closedlost")
    assert post(url, *hubspot_request(url, [lost])).status_code == 200
    settled(engine, deal, count=1)
    assert plans_for(engine, deal) == []
    sandbox.control("POST", "/hubspot/close-won", {"id": deal})  # won again
    sandbox.control("POST", "/webhooks/flush", {"wait": 20})  # both won events, reversed
    rows = settled(engine, deal, count=3)
    assert sorted(r.status for r in rows) == ["done", "done", "ignored"]
    assert len(plans_for(engine, deal)) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _crmsync_env(sandbox: Sandbox, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a crmsync process (serve or worker) on this sandbox, with ``extra``
    settings, running this checkout's app whatever the venv's editable install points at."""
    import app

    settings = sandbox_settings(sandbox, database_url)
    return {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_HUBSPOT_BASE_URL": settings.hubspot_base_url,
        "CRMSYNC_HUBSPOT_ACCESS_TOKEN": sandbox.info.hubspot.access_token,
        "CRMSYNC_HUBSPOT_APP_SECRET": sandbox.info.hubspot.app_secret,
        "CRMSYNC_CA_BUNDLE": sandbox.info.ca_file,
        "CRMSYNC_WEBHOOKS__SWEEP_SECONDS": "0.5",
        "PYTHONPATH": str(Path(app.__file__).resolve().parents[1]),
        **extra,
    }


def _serve(env: dict[str, str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    code = (
        "import uvicorn; from app.main import create_app; "
        f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd)
    wait_for(lambda: _answers(port), timeout=60, every=0.2)
    return proc


def _deliver_closes(sandbox: Sandbox, port: int, deals: list[str]) -> None:
    sandbox.control(
        "PUT", "/webhooks", {"hubspot_url": f"http://127.0.0.1:{port}/webhooks/hubspot"}
    )
    for deal in deals:
        sandbox.control("POST", "/hubspot/close-won", {"id": deal})
    sandbox.control("POST", "/webhooks/flush", {"wait": 30})


def test_kill_9_between_inbox_and_processing_the_plan_appears_after_restart(
    sandbox: Sandbox, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """crmsync serve (a real process) stores the deliveries without processing them (its worker
    is off: the kill lands between the two), is killed with SIGKILL, and a restarted serve
    with its worker on finds them with the sweeper and starts the onboarding."""
    seed_csms(engine)
    deals = open_deals(sandbox, 3)
    port = _free_port()
    off = _crmsync_env(sandbox, database_url, CRMSYNC_WEBHOOKS__EMBEDDED_WORKER="false")
    first = _serve(off, port, tmp_path)
    _deliver_closes(sandbox, port, deals)
    assert len(events(engine)) == 3  # stored and acknowledged
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert all(r.status == "received" for r in events(engine))
    on = _crmsync_env(sandbox, database_url, CRMSYNC_WEBHOOKS__EMBEDDED_WORKER="true")
    second = _serve(on, port, tmp_path)
    try:
        for deal in deals:
            settled(engine, deal)
            assert len(plans_for(engine, deal)) == 1
    finally:
        second.terminate()
        second.wait(20)


@pytest.mark.timeout(300)
def test_kill_9_of_a_job_worker_mid_batch_the_plans_appear_once_after_restart(
    sandbox: Sandbox, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """Separate workers (serve's embedded worker off): the route queues each delivery as a
    ``crmsync.webhooks`` job; a ``crmsync worker`` claims one and is killed with SIGKILL while it
    reads the deal from the CRM. A new worker runs the jobs still queued, and its sweeper finds
    the claimed event once its lease ends: each onboarding starts exactly once."""
    seed_csms(engine)
    deals = open_deals(sandbox, 3)
    port = _free_port()
    env = _crmsync_env(
        sandbox,
        database_url,
        CRMSYNC_WEBHOOKS__EMBEDDED_WORKER="false",
        CRMSYNC_WEBHOOKS__LEASE_SECONDS="5",
        CRMSYNC_DATA_DIR=str(tmp_path / "data"),
        CRMSYNC_JOBS__INCREMENTAL_MINUTES="0",
        CRMSYNC_JOBS__NIGHTLY_HOUR="-1",
    )
    worker_command = [sys.executable, "-m", "app.cli.main", "worker"]
    api = _serve(env, port, tmp_path)
    doomed = subprocess.Popen(worker_command, env=env, cwd=tmp_path)
    survivor: subprocess.Popen[bytes] | None = None
    try:
        # The worker's read of the batch's deals hangs: the kill lands inside the batch.
        sandbox.control(
            "PUT",
            "/faults",
            {"routes": [{"match": "POST */objects/deals/batch/read*", "slow_ms": 20000}]},
        )
        _deliver_closes(sandbox, port, deals)

        def claimed() -> list[int]:
            return [r.id for r in events(engine) if r.status == "processing"]

        in_flight = wait_for(claimed, timeout=60, every=0.1)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        sandbox.control("PUT", "/faults", {"routes": []})
        assert all(not plans_for(engine, deal) for deal in deals)  # nothing half-done

        survivor = subprocess.Popen(worker_command, env=env, cwd=tmp_path)
        # The killed job's message is gone; the sweeper (each minute) re-queues the events
        # once their 5 s lease has ended.
        for deal in deals:
            wait_for(lambda d=deal: plans_for(engine, d), timeout=150, every=0.5)
        rows = [settled(engine, deal)[0] for deal in deals]
        assert [r.status for r in rows] == ["done"] * 3
        # The attempt the kill cut short was taken again; the others ran once.
        assert {r.id: r.attempts for r in rows if r.id in in_flight} == dict.fromkeys(in_flight, 2)
        assert [len(plans_for(engine, deal)) for deal in deals] == [1, 1, 1]
    finally:
        sandbox.control("PUT", "/faults", {"routes": []})
        for proc in (api, doomed, survivor):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)


def _answers(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_burst_of_1000_closed_won_deals_gives_1000_plans(
    sandbox: Sandbox, database_url: str, engine: Engine
) -> None:
    """1,000 deals closed at once through HubSpot batch updates: the sandbox delivers the
    webhooks (batches, retries), every deal gets exactly one plan, nothing is lost."""
    from sqlalchemy import func

    seed_csms(engine, capacity=100_000)
    app = LiveApp(sandbox_settings(sandbox, database_url, worker_threads=4))
    point_sandbox_at(sandbox, app, batch_size=99)
    try:
        company = hubspot_company_ids(sandbox)[0]
        deals: list[str] = []
        for start in range(0, 1000, 100):
            inputs = [
                {
                    "properties": {
                        "dealname": f"burst {start + n}",
                        "amount": "12000",
                        "closedate": "2026-12-04T00:00:00.000Z",
                        "dealstage": "contractsent",
                        "pipeline": "default",
                        "dealtype": "newbusiness",
                    },
                    "associations": [
                        {
                            "to": {"id": company},
                            "types": [
                                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}
                            ],
                        }
                    ],
                }
                for n in range(100)
            ]
            made = hubspot_api(
                sandbox, "POST", "/crm/v3/objects/deals/batch/create", json={"inputs": inputs}
            )
            deals.extend(str(r["id"]) for r in made["results"])
        for start in range(0, 1000, 100):
            closing = [
                {"id": d, "properties": {"dealstage": "closedwon"}}
                for d in deals[start : start + 100]
            ]
            hubspot_api(
                sandbox, "POST", "/crm/v3/objects/deals/batch/update", json={"inputs": closing}
            )

        def all_planned() -> bool:
            with Session(engine) as s:
                return (s.scalar(select(func.count()).select_from(OnboardingPlan)) or 0) >= 1000

        wait_for(all_planned, timeout=600, every=1)
        with Session(engine) as s:
            planned = s.execute(
                select(Opportunity.hs_id, func.count())
                .join(OnboardingPlan, OnboardingPlan.opportunity_id == Opportunity.id)
                .group_by(Opportunity.hs_id)
            ).all()
        assert sorted(str(d) for d, _ in planned) == sorted(deals)
        assert all(n == 1 for _, n in planned)
    finally:
        app.stop()


def test_deactivating_the_csm_reassigns_and_pushes_the_new_one(
    sandbox: Sandbox, database_url: str, engine: Engine
) -> None:
    """8.3 step 7 end to end: a won deal gets a CSM (pushed to HubSpot); ``PATCH`` that CSM
    ``active: false`` and the account gets another CSM by the same rules, recorded as an event,
    and the new e-mail reaches the company through the push path."""
    from pydantic import SecretStr

    from app.db.models import Account, AccountEvent, Csm

    key = "closedwon-test-admin-key"
    settings = sandbox_settings(sandbox, database_url).model_copy(
        update={"admin_bootstrap_key": SecretStr(key)}
    )
    app = LiveApp(settings)
    point_sandbox_at(sandbox, app)
    try:
        emails = seed_csms(engine, sandbox)
        deal = None
        for candidate in open_deals(sandbox, 3):
            sandbox.control("POST", "/hubspot/close-won", {"id": candidate})
            (_row,) = settled(engine, candidate)
            (plan,) = plans_for(engine, candidate)
            if plan.tier_at_close != "tech":  # the pool is not a CSM to reassign from
                deal = candidate
                break
        assert deal is not None, "three closed deals all tech: change the sandbox seed"
        with Session(engine) as s:
            account = s.get(Account, plan.account_id)
            assert account is not None
            leaving = s.get(Csm, account.csm_id)
            assert leaving is not None
            assert leaving.email in emails
            company = account.hs_id

        def company_csm() -> str | None:
            props = hubspot_api(
                sandbox,
                "GET",
                f"/crm/v3/objects/companies/{company}",
                params={"properties": "crmsync_csm_email"},
            )["properties"]
            value = props.get("crmsync_csm_email")
            return str(value) if value else None

        assert wait_for(lambda: company_csm() == leaving.email or None, timeout=30)
        response = httpx.patch(
            f"{app.url}/api/v1/csms/{leaving.id}",
            json={"active": False},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert plan.account_id in response.json()["reassigned_account_ids"]
        with Session(engine) as s:
            account = s.get(Account, plan.account_id)
            assert account is not None
            assert account.csm_id not in (None, leaving.id)
            new_email = account.csm_email
            assert new_email in emails
            assert new_email != leaving.email
            (event,) = s.scalars(
                select(AccountEvent).where(
                    AccountEvent.account_id == account.id, AccountEvent.kind == "csm_reassigned"
                )
            )
            assert event.payload["csm_before"] == leaving.email
            assert event.payload["csm"] == new_email
            assert event.payload["task"]["code"] == "announce_csm_change"
        assert wait_for(lambda: company_csm() == new_email or None, timeout=30)
    finally:
        sandbox.control("POST", "/webhooks/clear")
        app.stop()
