"""``crmsync health recompute --push`` through the sandbox over HTTPS (issue #18 item 8): the
computed health, tier and renewal land on the Salesforce Accounts and HubSpot companies, read
back with simple-salesforce and hubspot-api-client; a second recompute and push with no new
input makes no API call, and an account whose score changed costs one record's write."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hubspot
import pytest
import requests
from simple_salesforce import Salesforce
from sqlalchemy import select, update

from app.db.engine import make_engine, make_session_factory
from app.db.models import Account, UsageSnapshot
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.acceptance.test_cli import crmsync, sandbox_env


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=12, hs_rate_limits=False)) as sb:
        yield sb


def salesforce(sb: Sandbox) -> Salesforce:
    session = requests.Session()
    session.trust_env = False
    session.verify = sb.info.ca_file
    info = sb.info.salesforce
    return Salesforce(
        instance_url=info.instance_url,
        session_id=info.access_token,
        session=session,
        version=info.api_version,
    )


def hubspot_companies(sb: Sandbox, ids: list[str]) -> dict[str, dict[str, Any]]:
    info = sb.info.hubspot
    client = hubspot.HubSpot(
        access_token=info.access_token, host=info.base_url, ssl_ca_cert=sb.info.ca_file
    )
    props = ["crmsync_health_score", "crmsync_health_band", "crmsync_tier", "crmsync_renewal_risk"]
    out = {}
    for company_id in ids:
        found = client.crm.companies.basic_api.get_by_id(company_id, properties=props)
        out[company_id] = found.properties
    return out


def cs_accounts(database_url: str) -> list[Account]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            rows = list(s.scalars(select(Account).where(Account.deleted_at.is_(None))))
            s.expunge_all()
            return rows
    finally:
        engine.dispose()


def add_usage(database_url: str) -> None:
    """A product usage feed for every pulled account (signals do not come from the CRM)."""
    today = datetime.now(UTC).date()
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s, s.begin():
            for i, account in enumerate(s.scalars(select(Account))):
                s.add(
                    UsageSnapshot(
                        account_id=account.id,
                        observed_on=today - timedelta(days=1),
                        active_users_30d=3 * (i % 7),
                        licensed_seats=20,
                        logins_30d=20 * (i % 7),
                        key_features_used_30d=i % 5,
                        key_features_defined=5,
                    )
                )
    finally:
        engine.dispose()


def api_calls(summary: dict[str, Any]) -> dict[str, int]:
    return {
        push["crm"]: sum(r["api_calls"] for r in push["runs"]) for push in summary.get("push", [])
    }


def test_recompute_push_puts_health_on_both_crms_and_unchanged_costs_nothing(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(sandbox, database_url)
    for crm in ("salesforce", "hubspot"):
        pulled = crmsync("sync", "backfill", "--crm", crm, env=env, cwd=tmp_path)
        assert pulled.returncode == 0, pulled.stderr
    add_usage(database_url)

    first = crmsync("health", "recompute", "--push", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    accounts = cs_accounts(database_url)
    assert summary["changed"] == len(accounts) == 24
    calls = api_calls(summary)
    assert calls["salesforce"] >= 1
    assert calls["hubspot"] >= 1

    sf = salesforce(sandbox)
    by_sf = {a.sf_id: a for a in accounts if a.sf_id}
    records = sf.query_all(
        "SELECT Id, Health_Score__c, Health_Band__c, Health_Reasons__c, Tier__c, "
        "Renewal_Risk__c, Days_To_Renewal__c FROM Account"
    )["records"]
    assert {r["Id"] for r in records} == set(by_sf)
    for record in records:
        cs = by_sf[record["Id"]]
        assert record["Health_Band__c"] == cs.health_band
        assert record["Tier__c"] == cs.tier
        assert (record["Health_Score__c"] is None) == (cs.health_score is None)
        if cs.health_score is not None:
            assert int(record["Health_Score__c"]) == cs.health_score
        assert record["Health_Reasons__c"] == cs.health_reasons
        assert record["Renewal_Risk__c"] == cs.renewal_risk
    by_hs = {a.hs_id: a for a in accounts if a.hs_id}
    for company_id, props in hubspot_companies(sandbox, sorted(by_hs)).items():
        cs = by_hs[company_id]
        assert props["crmsync_health_band"] == cs.health_band
        assert props["crmsync_tier"] == cs.tier
        expected = "" if cs.health_score is None else str(cs.health_score)
        assert (props["crmsync_health_score"] or "") == expected

    # Nothing new: the recompute selects nothing and the push makes no call.
    again = crmsync("health", "recompute", "--push", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["selected"] == 0
    assert api_calls(second) == {"salesforce": 0, "hubspot": 0}
    # Everything recomputed, nothing changed: still no call.
    forced = crmsync("health", "recompute", "--all", "--push", env=env, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    third = json.loads(forced.stdout)
    assert (third["selected"], third["changed"]) == (24, 0)
    assert api_calls(third) == {"salesforce": 0, "hubspot": 0}

    # One account's usage jumps: only that record is written.
    target = min(
        (a for a in accounts if a.sf_id and a.health_score is not None),
        key=lambda a: a.health_score or 0,
    )
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s, s.begin():
            s.execute(
                update(UsageSnapshot)
                .where(UsageSnapshot.account_id == target.id)
                .values(active_users_30d=20, logins_30d=400, key_features_used_30d=5)
            )
            s.execute(
                update(Account)
                .where(Account.id == target.id)
                .values(signals_changed_at=datetime.now(UTC) + timedelta(seconds=1))
            )
    finally:
        engine.dispose()
    fourth = crmsync("health", "recompute", "--push", env=env, cwd=tmp_path)
    assert fourth.returncode == 0, fourth.stderr
    last = json.loads(fourth.stdout)
    assert (last["selected"], last["changed"]) == (1, 1)
    sf_runs = next(p for p in last["push"] if p["crm"] == "salesforce")["runs"]
    assert sum(r["updated"] for r in sf_runs) == 1
    assert api_calls(last)["hubspot"] == 0
    (record,) = sf.query(f"SELECT Health_Score__c FROM Account WHERE Id = '{target.sf_id}'")[
        "records"
    ]
    dropped = next(a for a in cs_accounts(database_url) if a.id == target.id)
    assert record["Health_Score__c"] is not None
    assert int(record["Health_Score__c"]) == dropped.health_score
    assert dropped.health_score != target.health_score
