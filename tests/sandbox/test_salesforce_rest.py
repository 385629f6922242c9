"""Salesforce emulator via simple-salesforce over HTTPS: query, SOQL, CRUD, limits, auth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from salesforce_harness import Server, serve  # type: ignore[import-not-found]
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

ACCOUNTS = 450


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("sf"), accounts=ACCOUNTS) as server:
        yield server


@pytest.fixture
def sf(srv: Server) -> Salesforce:
    return srv.client()


def _ids(result: dict) -> list[str]:  # type: ignore[type-arg]
    return [r["Id"] for r in result["records"]]


def test_query_all_pages_with_batch_size(sf: Salesforce, srv: Server) -> None:
    q = "SELECT Id, Name FROM Account WHERE Name LIKE 'Company%' ORDER BY Name"
    first = sf.query(q, headers={"Sforce-Query-Options": "batchSize=200"})
    assert first["totalSize"] == ACCOUNTS
    assert not first["done"]
    assert len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    pages = [first]
    while not pages[-1]["done"]:
        pages.append(sf.query_more(pages[-1]["nextRecordsUrl"], identifier_is_url=True))
    assert [len(p["records"]) for p in pages] == [200, 200, 50]
    names = [r["Name"] for p in pages for r in p["records"]]
    assert names == sorted(names)
    assert len(set(names)) == ACCOUNTS
    every = sf.query_all(q)
    assert every["totalSize"] == ACCOUNTS
    assert len(list(sf.query_all_iter(q))) == ACCOUNTS
    assert not srv.emulator.store.cursors  # exhausted cursors are dropped


def test_cursor_is_a_snapshot(sf: Salesforce, srv: Server) -> None:
    q = "SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp, Id"
    first = sf.query(q, headers={"Sforce-Query-Options": "batchSize=200"})
    seen = _ids(first)
    moved = seen[0]
    sf.Account.update(moved, {"Health_Band__c": "green"})  # now the newest stamp
    rest = []
    page = first
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
        rest += _ids(page)
    assert moved not in rest
    assert len(seen) + len(rest) == first["totalSize"]
    assert len(set(seen + rest)) == first["totalSize"]


def test_record_shape_and_parent_path(sf: Salesforce) -> None:
    result = sf.query(
        "SELECT Name, Account.Name, Owner.Email, Amount, IsWon, IsClosed, CloseDate, "
        "SystemModstamp FROM Opportunity WHERE Name = 'deal 1'"
    )
    (rec,) = result["records"]
    assert list(rec) == [
        "attributes",
        "Name",
        "Account",
        "Owner",
        "Amount",
        "IsWon",
        "IsClosed",
        "CloseDate",
        "SystemModstamp",
    ]
    assert rec["attributes"]["type"] == "Opportunity"
    assert rec["attributes"]["url"].startswith("/services/data/v59.0/sobjects/Opportunity/006")
    assert rec["Account"]["Name"] == "Company 00001"
    assert rec["Account"]["attributes"]["type"] == "Account"
    assert rec["Owner"]["Email"] == "user2@example.test"
    assert rec["Amount"] == 500.0
    assert rec["IsWon"] is True
    assert rec["IsClosed"] is True
    assert rec["CloseDate"] == "2024-06-01"
    assert rec["SystemModstamp"] == "2024-01-01T00:01:00.000+0000"
    note = sf.query("SELECT Body, Parent.Name FROM Note WHERE Title = 'Handover: Deal 1'")
    (n,) = note["records"]
    assert n["Parent"]["Name"] == "Company 00001"
    opp_id = sf.query("SELECT Id FROM Opportunity WHERE Name = 'Deal 1'")["records"][0]["Id"]
    assert f"Opportunity: {opp_id}" in n["Body"]


def test_soql_filters(sf: Salesforce) -> None:
    def count(where: str) -> int:
        return int(sf.query(f"SELECT COUNT() FROM Account WHERE {where}")["totalSize"])

    assert count("Name = 'company 00007'") == 1  # case-insensitive equality
    assert count("Name LIKE 'COMPANY 0001_'") == 10
    assert count("Name IN ('Company 00001', 'Company 00002', 'nope')") == 2
    assert count("Name NOT IN ('Company 00001')") == ACCOUNTS - 1 + _extra(sf)
    assert count("NOT (Name LIKE 'Company%')") == _extra(sf)
    assert count("Contract_End__c = null") == ACCOUNTS // 4
    assert count("Contract_End__c != null AND Name LIKE 'Company%'") == ACCOUNTS - ACCOUNTS // 4
    assert count("Strategic_Account__c = true") == ACCOUNTS // 3
    assert count("(NumberOfEmployees > 100 AND NumberOfEmployees <= 200) OR Name = 'x'") == 10
    assert count("Contract_Start__c = 2024-01-01 AND CreatedDate < 2024-01-01T00:05:00Z") == 4
    assert (
        count("CreatedDate >= 2024-01-01T01:05:00+01:00 AND CreatedDate < 2024-01-01T00:07:00Z")
        == 2
    )
    assert count("CreatedDate = LAST_N_DAYS:3") == _extra(sf)
    assert count("CreatedDate = TODAY") == _extra(sf)
    assert count("CreatedDate < YESTERDAY") == ACCOUNTS
    single = sf.query("SELECT COUNT(Id) FROM Account WHERE Name LIKE 'Company 0000%'")
    assert single["records"][0]["expr0"] == 9
    assert single["records"][0]["attributes"] == {"type": "AggregateResult"}


def _extra(sf: Salesforce) -> int:
    """Accounts created by other tests in this module (not from the seed)."""
    return int(sf.query("SELECT COUNT() FROM Account WHERE NOT Name LIKE 'Company%'")["totalSize"])


def test_escaped_quotes_and_order_nulls_last(sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "O'Brien \\ Sons", "Tier__c": "A"})
    result = sf.query("SELECT Id, Name FROM Account WHERE Name = 'O\\'Brien \\\\ Sons'")
    assert _ids(result) == [created["id"]]
    rows = sf.query(
        "SELECT Id, Tier__c FROM Account WHERE Tier__c = 'A' OR Name LIKE 'Company 0000%' "
        "ORDER BY Tier__c DESC NULLS LAST, Name LIMIT 3"
    )["records"]
    assert rows[0]["Tier__c"] == "A"
    first_null = sf.query(
        "SELECT Id, Tier__c FROM Account WHERE Tier__c = 'A' OR Name LIKE 'Company 0000%' "
        "ORDER BY Tier__c, Name LIMIT 1"
    )["records"]
    assert first_null[0]["Tier__c"] is None
    offset = sf.query("SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 1")["records"]
    assert [r["Name"] for r in offset] == ["Company 00002", "Company 00003"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT Id FROM Account GROUP BY Name", "MALFORMED_QUERY"),
        ("SELECT Idd FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Id FROM Account OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE"),
    ],
)
def test_query_errors(sf: Salesforce, query: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query(query)
    assert info.value.status == 400
    assert info.value.content[0]["errorCode"] == code
    if code == "INVALID_FIELD":
        assert "No such column 'Idd' on entity 'Account'" in info.value.content[0]["message"]


def test_crud_round_trip(sf: Salesforce, srv: Server) -> None:
    created = sf.Account.create(
        {"Name": "Round Trip", "ARR__c": 1200, "Contract_End__c": "2025-01-31"}
    )
    assert created["success"] is True
    assert created["id"].startswith("001")
    assert len(created["id"]) == 18
    got = sf.Account.get(created["id"], params={"fields": "Id,Name,ARR__c,Contract_End__c"})
    assert got["Name"] == "Round Trip"
    assert got["ARR__c"] == 1200.0
    assert got["Contract_End__c"] == "2025-01-31"
    before = sf.Account.get(created["id"])["SystemModstamp"]
    srv.ctx.clock.advance(2)  # type: ignore[attr-defined]
    assert sf.Account.update(created["id"], {"Name": "Round Trip 2"}) == 204
    after = sf.Account.get(created["id"])
    assert after["Name"] == "Round Trip 2"
    assert after["SystemModstamp"] > before
    assert after["LastModifiedDate"] == after["SystemModstamp"]
    assert sf.Account.delete(created["id"]) == 204
    q = f"SELECT Id, IsDeleted FROM Account WHERE Id = '{created['id']}'"
    assert sf.query(q)["totalSize"] == 0
    deleted = sf.query_all(q, include_deleted=True)
    assert deleted["records"][0]["IsDeleted"] is True
    with pytest.raises(SalesforceResourceNotFound) as info:
        sf.Account.update(created["id"], {"Name": "again"})
    assert info.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound) as info:
        sf.Account.get("001Sn00000009999AAA"[:18])
    assert info.value.content[0]["errorCode"] == "NOT_FOUND"
    start = datetime.now(UTC) - timedelta(days=1)
    end = datetime.now(UTC) + timedelta(days=1)
    assert created["id"] in [d["id"] for d in sf.Account.deleted(start, end)["deletedRecords"]]


def test_write_errors(sf: Salesforce, srv: Server) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.create({"Website": "x.example"})
    assert info.value.content == [
        {
            "message": "Required fields are missing: [Name]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name"],
        }
    ]
    opp = sf.query("SELECT Id FROM Opportunity WHERE Name = 'Deal 2'")["records"][0]["Id"]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Opportunity.update(opp, {"IsWon": True})
    assert info.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.create({"Name": "x", "Bogus__c": 1})
    assert info.value.content[0]["errorCode"] == "INVALID_FIELD"
    srv.ctx.faults.set_record_fault("salesforce", "Opportunity", [opp], "lock", count=1)  # type: ignore[attr-defined]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Opportunity.update(opp, {"Amount": 1})
    assert info.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert sf.Opportunity.update(opp, {"Amount": 1}) == 204


def test_stage_derivation_and_closed_won_outbox(sf: Salesforce, srv: Server) -> None:
    opp = sf.query("SELECT Id FROM Opportunity WHERE Name = 'Deal 4'")["records"][0]["Id"]
    sf.Opportunity.update(opp, {"StageName": "Closed Lost"})
    rec = sf.Opportunity.get(opp)
    assert (rec["IsClosed"], rec["IsWon"]) == (True, False)
    sf.Opportunity.update(opp, {"StageName": "Closed Won"})
    assert ("Opportunity", [opp]) in srv.outbox.salesforce
    other = sf.query("SELECT Id FROM Opportunity WHERE Name = 'Deal 6'")["records"][0]["Id"]
    srv.emulator.close_won(other)
    assert sf.Opportunity.get(other)["IsWon"] is True
    assert ("Opportunity", [other]) in srv.outbox.salesforce


def test_upsert_by_external_id(sf: Salesforce, srv: Server) -> None:
    assert sf.Account.upsert("Crmsync_Id__c/cs-1", {"Name": "Upserted"}) == 201
    assert sf.Account.upsert("Crmsync_Id__c/cs-1", {"Name": "Upserted 2"}) == 200
    got = sf.Account.get_by_custom_id("Crmsync_Id__c", "cs-1")
    assert got["Name"] == "Upserted 2"
    # Crmsync_Id__c is unique: a second record with the same value is refused.
    sf.Account.create({"Name": "Dup A", "Crmsync_Id__c": "dup"})
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Account.create({"Name": "Dup B", "Crmsync_Id__c": "DUP"})
    assert refused.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    # A non-unique External ID field can match several records: 300, nothing written.
    account = srv.emulator.store.obj("Account")
    srv.emulator.declare_field("Account", "Legacy_Key__c", "string")
    account.add(replace(account.get("Legacy_Key__c"), external_id=True))
    sf.Account.create({"Name": "Dup A", "Legacy_Key__c": "dup"})
    sf.Account.create({"Name": "Dup B", "Legacy_Key__c": "dup"})
    with pytest.raises(SalesforceMoreThanOneRecord) as info:
        sf.Account.upsert("Legacy_Key__c/dup", {"Name": "which?"})
    assert len(info.value.content) == 2
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.upsert("Nope__c/x", {"Name": "x"})


def test_describe_and_custom_fields(sf: Salesforce, srv: Server) -> None:
    names = [o["name"] for o in sf.describe()["sobjects"]]
    assert {"Account", "Opportunity", "Note", "User"} <= set(names)
    described = sf.Opportunity.describe()
    stage = next(f for f in described["fields"] if f["name"] == "StageName")
    assert "Closed Won" in [p["value"] for p in stage["picklistValues"]]
    srv.emulator.declare_field("Account", "Nps__c", "double")
    acct = sf.Account.create({"Name": "NPS", "Nps__c": 42})
    assert (
        sf.query(f"SELECT Nps__c FROM Account WHERE Id = '{acct['id']}'")["records"][0]["Nps__c"]
        == 42.0
    )
    assert any(f["name"] == "Nps__c" for f in sf.Account.describe()["fields"])


def test_touch_and_updated(sf: Salesforce, srv: Server) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    ids = srv.emulator.touch("Account", ids=None, count=5, at=at)
    assert len(ids) == 5
    rows = sf.query("SELECT Id FROM Account WHERE SystemModstamp = 2030-01-01T00:00:00Z")
    assert sorted(_ids(rows)) == sorted(ids)
    updated = sf.Account.updated(at - timedelta(minutes=1), at + timedelta(minutes=1))
    assert sorted(updated["ids"]) == sorted(ids)


def test_limits_and_usage_header(sf: Salesforce) -> None:
    sf.query("SELECT Id FROM Account LIMIT 1")
    used = sf.api_usage["api-usage"].used
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 1_000_000
    assert limits["DailyApiRequests"]["Remaining"] == 1_000_000 - used - 1


def test_limit_exhausted(tmp_path: Path) -> None:
    with serve(tmp_path, sf_daily_api_limit=3) as server:
        sf = server.client()
        for _ in range(3):
            sf.query("SELECT Id FROM Account")
        with pytest.raises(SalesforceRefusedRequest) as info:
            sf.query("SELECT Id FROM Account")
        assert info.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        assert sf.api_usage["api-usage"].used == 3


def test_invalid_token(srv: Server) -> None:
    sf = srv.client(token="00Dbogus!token")
    with pytest.raises(SalesforceExpiredSession) as info:
        sf.query("SELECT Id FROM Account")
    assert info.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_client_credentials_login(srv: Server) -> None:
    cfg = srv.ctx.config
    sf = Salesforce(
        consumer_key=cfg.sf_client_id,
        consumer_secret=cfg.sf_client_secret,
        domain=f"127.0.0.1:{srv.port}/services/oauth2/token#",
        session=srv.session(),
    )
    # The answer names the org's own instance (My Domain style), not the login host.
    assert sf.sf_instance == f"localhost:{srv.port}"
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 3
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(
            consumer_key=cfg.sf_client_id,
            consumer_secret="wrong",
            domain=f"127.0.0.1:{srv.port}/services/oauth2/token#",
            session=srv.session(),
        )


def test_password_grant_and_form_credentials(srv: Server) -> None:
    s = srv.session()
    cfg = srv.ctx.config
    url = f"{srv.url}/services/oauth2/token"
    ok = s.post(
        url,
        data={
            "grant_type": "password",
            "client_id": cfg.sf_client_id,
            "client_secret": cfg.sf_client_secret,
            "username": "a@b.test",
            "password": "pw",
        },
    )
    assert ok.status_code == 200
    body = ok.json()
    assert body["instance_url"] == srv.url.replace("127.0.0.1", "localhost")
    assert body["token_type"] == "Bearer"
    bad = s.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": cfg.sf_client_id,
            "client_secret": "x",
        },
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "invalid_client",
        "error_description": "invalid client credentials",
    }
    token = body["access_token"]
    r = s.get(f"{srv.url}/services/data/v60.0/limits", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.headers["Sforce-Limit-Info"].startswith("api-usage=")
