"""Notes both ways through the sandbox (issue #17 item 7), Salesforce and HubSpot.

A note posted to the API is stored, pushed (the CRM then has exactly one note, on the right
parent), and the next pull updates the same CS row (its CRM id stored), not a second one. An
edit in the CRM is taken by the pull; an edit through ``PATCH`` is pushed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus, SyncKind
from app.crm.hubspot.client import HubSpotClient
from app.crm.salesforce.client import SalesforceClient
from app.db.engine import make_session_factory
from app.db.models import Account, HandoverNote, Opportunity
from app.db.sync_store import SqlSyncStore
from app.main import create_app
from app.mappers.defaults import hubspot_mappings
from app.mappers.notes import PENDING_KEY
from app.settings import Settings, SyncSettings
from app.sync.pull import PullEngine
from app.wiring.push import run_push
from app.wiring.sync import run_sync
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.api import api_client


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=4, seed=11)) as sb:
        yield sb


def sf_settings(sb: Sandbox, database_url: str) -> Settings:
    sf = sb.info.salesforce
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_client_id=sf.client_id,
        salesforce_client_secret=sf.client_secret,
        ca_bundle=sb.info.ca_file,
        sync=SyncSettings(lookback_seconds=0),
    )


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def pull(settings: Settings, factory: sessionmaker[Session], *objects: str) -> None:
    results = run_sync(settings, factory, kind=SyncKind.PULL, objects=list(objects))
    assert all(r.status is RunStatus.SUCCEEDED for r in results), [r.summary() for r in results]


def sf_notes(client: SalesforceClient, parent: str) -> list[dict[str, Any]]:
    soql = f"SELECT Id, ParentId, Title, Body FROM Note WHERE ParentId = '{parent}'"
    return list(client._call("query", lambda sf: sf.query_all(soql), "Note")["records"])


def cs_notes(factory: sessionmaker[Session], **where: Any) -> list[HandoverNote]:
    with factory() as s:
        query = select(HandoverNote).filter_by(**where).order_by(HandoverNote.id)
        return list(s.scalars(query))


def test_salesforce_note_posted_pushed_pulled_edited_both_ways(
    sandbox: Sandbox, database_url: str, factory: sessionmaker[Session]
) -> None:
    settings = sf_settings(sandbox, database_url)
    pull(settings, factory, "Account", "Opportunity", "Note")
    with factory() as s:
        account = s.scalars(select(Account).order_by(Account.id)).first()
        assert account is not None
        account_id, parent = account.id, account.sf_id
    assert parent is not None
    cs_before = len(cs_notes(factory))

    with api_client(create_app(settings)) as api, SalesforceClient(settings) as crm:
        before = {n["Id"] for n in sf_notes(crm, parent)}
        response = api.post(
            f"/api/v1/accounts/{account_id}/notes",
            json={"title": "Kickoff", "body": "They want SSO.", "goals": ["live by March"]},
        )
        assert response.status_code == 201, response.text
        out = response.json()
        [push] = out["push"]
        assert push["status"] == "pushed"
        made = [n for n in sf_notes(crm, parent) if n["Id"] not in before]
        assert len(made) == 1, "exactly one note in Salesforce"
        [note] = made
        assert push["crm_id"] == note["Id"] == out["sf_id"]
        assert note["ParentId"] == parent
        assert note["Title"] == "Kickoff"
        assert note["Body"] == out["body"]

        # The next pull sees the same note: the same row, its id stored, nothing new.
        pull(settings, factory, "Note")
        assert len(cs_notes(factory)) == cs_before + 1
        [row] = cs_notes(factory, sf_id=note["Id"])
        assert row.id == out["id"]
        assert row.crmsync_id == out["crmsync_id"]
        assert row.goals == ["live by March"]

        # An edit in Salesforce is taken by the pull.
        edited = out["body"].replace("They want SSO.", "They want SSO and SCIM.")
        crm._call("update", lambda sf: sf.Note.update(note["Id"], {"Body": edited}), "Note")
        pull(settings, factory, "Note")
        [row] = cs_notes(factory, sf_id=note["Id"])
        assert row.body == edited
        assert len(cs_notes(factory)) == cs_before + 1

        # An edit through the API is pushed.
        response = api.patch(f"/api/v1/notes/{row.id}", json={"title": "Kick-off"})
        assert response.status_code == 200, response.text
        assert response.json()["push"][0]["status"] == "pushed"
        [after] = [n for n in sf_notes(crm, parent) if n["Id"] == note["Id"]]
        assert after["Title"] == "Kick-off"
        assert after["Body"].startswith("Handover: Kick-off\n")
        assert len([n for n in sf_notes(crm, parent) if n["Id"] not in before]) == 1

        # ... and the pull after it is an echo: the same row, unchanged.
        pull(settings, factory, "Note")
        [row] = cs_notes(factory, sf_id=note["Id"])
        assert row.title == "Kick-off"
        assert len(cs_notes(factory)) == cs_before + 1
        assert PENDING_KEY in row.field_stamps, "the create was guarded"


def test_a_failed_push_keeps_the_note_queued_and_the_next_push_sends_it_once(
    sandbox: Sandbox, database_url: str, factory: sessionmaker[Session]
) -> None:
    settings = sf_settings(sandbox, database_url).model_copy(
        update={"sync": SyncSettings(lookback_seconds=0, max_retries=1)}
    )
    pull(settings, factory, "Account")
    with factory() as s:
        account = s.scalars(select(Account).order_by(Account.id)).all()[1]
        account_id, parent = account.id, account.sf_id
    assert parent is not None
    with SalesforceClient(settings) as crm:
        before = {n["Id"] for n in sf_notes(crm, parent)}
    down = {"match": "POST /services/data/*/composite/sobjects", "unavailable": 1.0}
    sandbox.control("PUT", "/faults", json={"routes": [down], "seed": 3})
    try:
        with api_client(create_app(settings)) as api:
            response = api.post(
                f"/api/v1/accounts/{account_id}/notes", json={"title": "Outage note"}
            )
    finally:
        sandbox.control("PUT", "/faults", json={"routes": []})
    assert response.status_code == 202, response.text
    out = response.json()
    [push] = out["push"]
    assert push["status"] == "queued"
    assert push["message"]
    [row] = cs_notes(factory, id=out["id"])
    assert row.sf_id is None
    assert row.title == "Outage note", "stored, not lost"

    outcome = run_push(settings, "salesforce", ["Note"], session_factory=factory)
    assert [r.status for r in outcome.results] == [RunStatus.SUCCEEDED]
    with SalesforceClient(settings) as crm:
        made = [n for n in sf_notes(crm, parent) if n["Id"] not in before]
    assert len(made) == 1
    [row] = cs_notes(factory, id=out["id"])
    assert row.sf_id == made[0]["Id"]


KILLED_PUSH = """
import os, signal
from app.crm.salesforce.writer import SalesforceWriter
from app.settings import Settings
from app.wiring.push import run_push


class DiesAfterTheCreate(SalesforceWriter):
    def write(self, object_name, ops):
        results = super().write(object_name, ops)
        os.kill(os.getpid(), signal.SIGKILL)  # the note exists; its answer is never committed
        return results


run_push(Settings(), "salesforce", ["Note"], writer_factory=lambda s, c: DiesAfterTheCreate(s))
"""


def test_salesforce_push_killed_after_the_create_call_makes_no_second_note(
    sandbox: Sandbox, database_url: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = sf_settings(sandbox, database_url)
    pull(settings, factory, "Account")
    with factory() as s:
        account = s.scalars(select(Account).order_by(Account.id.desc())).first()
        assert account is not None
        account_id, parent = account.id, account.sf_id
    assert parent is not None
    # Stored while Salesforce is not configured here: queued, not pushed.
    offline = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    with api_client(create_app(offline)) as api:
        response = api.post(f"/api/v1/accounts/{account_id}/notes", json={"title": "Renewal risks"})
    assert response.status_code == 202
    note_id = response.json()["id"]

    with SalesforceClient(settings) as crm:
        before = {n["Id"] for n in sf_notes(crm, parent)}
        sf = sandbox.info.salesforce
        env = {
            **os.environ,
            "CRMSYNC_DATABASE_URL": database_url,
            "CRMSYNC_SALESFORCE_INSTANCE_URL": sf.instance_url,
            "CRMSYNC_SALESFORCE_API_VERSION": sf.api_version,
            "CRMSYNC_SALESFORCE_CLIENT_ID": sf.client_id,
            "CRMSYNC_SALESFORCE_CLIENT_SECRET": sf.client_secret,
            "CRMSYNC_CA_BUNDLE": str(sandbox.info.ca_file),
        }
        env.pop("CRMSYNC_HUBSPOT_ACCESS_TOKEN", None)
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_PUSH],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        made = [n for n in sf_notes(crm, parent) if n["Id"] not in before]
        assert len(made) == 1, "the create reached Salesforce"
        [row] = cs_notes(factory, id=note_id)
        assert row.sf_id is None, "its answer was never committed"
        assert PENDING_KEY in row.field_stamps

        # The rerun finds the note instead of creating a second one.
        outcome = run_push(settings, "salesforce", ["Note"], session_factory=factory)
        assert [r.status for r in outcome.results] == [RunStatus.SUCCEEDED]
        again = [n for n in sf_notes(crm, parent) if n["Id"] not in before]
        assert [n["Id"] for n in again] == [made[0]["Id"]], "no second note"
        [row] = cs_notes(factory, id=note_id)
        assert row.sf_id == made[0]["Id"]

        # And a pull sees that one note as this row.
        pull(settings, factory, "Note")
        assert [r.id for r in cs_notes(factory, sf_id=made[0]["Id"])] == [note_id]


def hs_settings(sb: Sandbox, database_url: str) -> Settings:
    hs = sb.info.hubspot
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        hubspot_base_url=hs.base_url,
        hubspot_access_token=hs.access_token,
        ca_bundle=sb.info.ca_file,
        sync=SyncSettings(lookback_seconds=0),
    )


def hs_pull(settings: Settings, factory: sessionmaker[Session], *objects: str) -> None:
    """A HubSpot pull without the search index margin (the sandbox indexes at once)."""
    with HubSpotClient(settings, index_lag_margin=timedelta(0)) as client:
        mappings = {m.crm_object: m for m in hubspot_mappings()}
        engine = PullEngine(SqlSyncStore(factory), client, mappings, settings.sync)
        for name in objects:
            result = engine.pull(name)
            assert result.status is RunStatus.SUCCEEDED, result.summary()


def hs_note(sb: Sandbox, note_id: str) -> dict[str, Any]:
    """The note as HubSpot holds it, with its company and deal associations."""
    hs = sb.info.hubspot
    with requests.Session() as http:
        http.trust_env = False
        http.verify = str(sb.info.ca_file)
        answer = http.get(
            f"{hs.base_url}/crm/v3/objects/notes/{note_id}",
            params={
                "properties": "hs_note_body,hs_timestamp,crmsync_id",
                "associations": "companies,deals",
            },
            headers={"Authorization": f"Bearer {hs.access_token}"},
        )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def hs_company_notes(sb: Sandbox, company_id: str) -> list[str]:
    hs = sb.info.hubspot
    with requests.Session() as http:
        http.trust_env = False
        http.verify = str(sb.info.ca_file)
        answer = http.get(
            f"{hs.base_url}/crm/v4/objects/companies/{company_id}/associations/notes",
            headers={"Authorization": f"Bearer {hs.access_token}"},
        )
    answer.raise_for_status()
    return [str(r["toObjectId"]) for r in answer.json()["results"]]


def hs_edit(sb: Sandbox, note_id: str, body: str) -> None:
    hs = sb.info.hubspot
    with requests.Session() as http:
        http.trust_env = False
        http.verify = str(sb.info.ca_file)
        answer = http.patch(
            f"{hs.base_url}/crm/v3/objects/notes/{note_id}",
            json={"properties": {"hs_note_body": body}},
            headers={"Authorization": f"Bearer {hs.access_token}"},
        )
    answer.raise_for_status()


def test_hubspot_note_posted_pushed_pulled_edited_both_ways(
    sandbox: Sandbox, database_url: str, factory: sessionmaker[Session]
) -> None:
    settings = hs_settings(sandbox, database_url)
    hs_pull(settings, factory, "companies", "deals", "notes")
    with factory() as s:
        deal = s.scalars(
            select(Opportunity)
            .where(Opportunity.hs_id.is_not(None), Opportunity.hs_company_id.is_not(None))
            .order_by(Opportunity.id)
        ).first()
        assert deal is not None
        deal_id, deal_hs, company_hs = deal.id, deal.hs_id, deal.hs_company_id
    assert deal_hs is not None
    assert company_hs is not None
    cs_before = len(cs_notes(factory))
    before = set(hs_company_notes(sandbox, company_hs))

    with api_client(create_app(settings)) as api:
        response = api.post(
            f"/api/v1/opportunities/{deal_id}/notes",
            json={"title": "Deal handover", "body": "Champion is the CFO.", "fit": "good"},
        )
        assert response.status_code == 201, response.text
        out = response.json()
        [push] = out["push"]
        assert push["status"] == "pushed"
        made = [n for n in hs_company_notes(sandbox, company_hs) if n not in before]
        assert made == [out["hs_id"]], "exactly one note on the company"
        note = hs_note(sandbox, out["hs_id"])
        assert note["properties"]["hs_note_body"] == out["body"]
        assert note["properties"]["crmsync_id"] == out["crmsync_id"]
        assert note["properties"]["hs_timestamp"], "hs_timestamp is set"
        links = note.get("associations") or {}
        assert [r["id"] for r in links["companies"]["results"]] == [company_hs]
        assert [r["id"] for r in links["deals"]["results"]] == [deal_hs]

        # The next pull sees the same note: the same row, nothing new.
        hs_pull(settings, factory, "notes")
        assert len(cs_notes(factory)) == cs_before + 1
        [row] = cs_notes(factory, hs_id=out["hs_id"])
        assert row.id == out["id"]
        assert (row.hs_company_id, row.hs_deal_id) == (company_hs, deal_hs)
        assert row.opportunity_id == deal_id

        # An edit in HubSpot is taken by the pull.
        edited = out["body"].replace("the CFO", "the CFO and the CTO")
        hs_edit(sandbox, out["hs_id"], edited)
        hs_pull(settings, factory, "notes")
        [row] = cs_notes(factory, hs_id=out["hs_id"])
        assert row.body == edited

        # An edit through the API is pushed, to the same note.
        response = api.patch(f"/api/v1/notes/{row.id}", json={"body": "Champion left."})
        assert response.status_code == 200, response.text
        assert response.json()["push"][0]["status"] == "pushed"
        assert hs_note(sandbox, out["hs_id"])["properties"]["hs_note_body"].endswith(
            "\n\nChampion left."
        )
        assert [n for n in hs_company_notes(sandbox, company_hs) if n not in before] == made
        hs_pull(settings, factory, "notes")
        assert len(cs_notes(factory)) == cs_before + 1


KILLED_HUBSPOT_PUSH = """
import os, signal
from app.crm.hubspot.writer import HubSpotWriter
from app.settings import Settings
from app.wiring.push import run_push


class DiesAfterTheCreate(HubSpotWriter):
    def write(self, object_name, ops):
        results = super().write(object_name, ops)
        os.kill(os.getpid(), signal.SIGKILL)  # the note exists; its answer is never committed
        return results


run_push(Settings(), "hubspot", ["notes"], writer_factory=lambda s, c: DiesAfterTheCreate(s))
"""


def test_hubspot_push_killed_after_the_create_call_makes_no_second_note(
    sandbox: Sandbox, database_url: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = hs_settings(sandbox, database_url)
    hs_pull(settings, factory, "companies")
    with factory() as s:
        account = s.scalars(select(Account).order_by(Account.id.desc())).first()
        assert account is not None
        account_id, company = account.id, account.hs_id
    assert company is not None
    offline = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    with api_client(create_app(offline)) as api:
        response = api.post(f"/api/v1/accounts/{account_id}/notes", json={"title": "QBR prep"})
    assert response.status_code == 202
    note_id = response.json()["id"]
    before = set(hs_company_notes(sandbox, company))

    hs = sandbox.info.hubspot
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_HUBSPOT_BASE_URL": hs.base_url,
        "CRMSYNC_HUBSPOT_ACCESS_TOKEN": hs.access_token,
        "CRMSYNC_CA_BUNDLE": str(sandbox.info.ca_file),
    }
    for name in ("CRMSYNC_SALESFORCE_INSTANCE_URL", "CRMSYNC_SALESFORCE_ACCESS_TOKEN"):
        env.pop(name, None)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_HUBSPOT_PUSH],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    made = [n for n in hs_company_notes(sandbox, company) if n not in before]
    assert len(made) == 1, "the create reached HubSpot"
    [row] = cs_notes(factory, id=note_id)
    assert row.hs_id is None, "its answer was never committed"

    # The rerun matches the note on its crmsync_id instead of creating a second one.
    outcome = run_push(settings, "hubspot", ["notes"], session_factory=factory)
    assert [r.status for r in outcome.results] == [RunStatus.SUCCEEDED]
    assert [n for n in hs_company_notes(sandbox, company) if n not in before] == made
    [row] = cs_notes(factory, id=note_id)
    assert row.hs_id == made[0]
    assert hs_note(sandbox, made[0])["properties"]["crmsync_id"] == row.crmsync_id
