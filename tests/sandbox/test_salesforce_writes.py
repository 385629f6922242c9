"""sObject Collections and Bulk API 2.0 driven by simple-salesforce over HTTPS."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from salesforce_harness import Server, serve  # type: ignore[import-not-found]
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

ACCOUNTS = 120


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("sfw"), accounts=ACCOUNTS) as server:
        yield server


@pytest.fixture
def sf(srv: Server) -> Salesforce:
    return srv.client()


def _ids(sf: Salesforce, where: str) -> list[str]:
    return [
        r["Id"]
        for r in sf.query_all(f"SELECT Id FROM Account WHERE {where} ORDER BY Name")["records"]
    ]


def test_collection_create_partial_failure_in_order(sf: Salesforce) -> None:
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Account"}, "Name": "Coll A"},
            {"attributes": {"type": "Account"}, "Website": "no-name.example"},
            {"attributes": {"type": "Account"}, "Name": "Coll C"},
        ],
    }
    results = sf.restful("composite/sobjects", method="POST", json=body)
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert "id" not in results[1]
    assert sf.query("SELECT COUNT() FROM Account WHERE Name LIKE 'Coll %'")["totalSize"] == 2


def test_collection_update_with_record_faults_and_rollback(sf: Salesforce, srv: Server) -> None:
    ids = _ids(sf, "Name LIKE 'Company 0001%'")[:3]
    faults = srv.ctx.faults
    faults.set_record_fault("salesforce", "Account", [ids[0]], "lock", count=2)  # type: ignore[attr-defined]
    faults.set_record_fault("salesforce", "Account", [ids[2]], "validation", count=2)  # type: ignore[attr-defined]
    records = [{"attributes": {"type": "Account"}, "id": i, "Tier__c": "B"} for i in ids]
    results = sf.restful(
        "composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records}
    )
    assert [r["id"] for r in results] == ids
    assert [r["success"] for r in results] == [False, True, False]
    assert results[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert ids[0] in results[0]["errors"][0]["message"]
    assert results[2]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert sf.Account.get(ids[1])["Tier__c"] == "B"
    records = [{"attributes": {"type": "Account"}, "id": i, "Tier__c": "C"} for i in ids]
    results = sf.restful(
        "composite/sobjects", method="PATCH", json={"allOrNone": True, "records": records}
    )
    assert [r["success"] for r in results] == [False, False, False]
    assert results[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert results[1]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sf.Account.get(ids[1])["Tier__c"] == "B"  # rolled back


def test_collection_upsert_delete_and_cap(sf: Salesforce) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Crmsync_Id__c": "col-1", "Name": "Col 1"},
        {"attributes": {"type": "Account"}, "Crmsync_Id__c": "col-2", "Name": "Col 2"},
    ]
    first = sf.restful(
        "composite/sobjects/Account/Crmsync_Id__c", method="PATCH", json={"records": records}
    )
    assert [r["created"] for r in first] == [True, True]
    records[0]["Name"] = "Col 1b"
    second = sf.restful(
        "composite/sobjects/Account/Crmsync_Id__c", method="PATCH", json={"records": records}
    )
    assert [r["created"] for r in second] == [False, False]
    assert sf.Account.get(first[0]["id"])["Name"] == "Col 1b"
    gone = sf.restful(
        "composite/sobjects", method="DELETE", params={"ids": f"{first[0]['id']},{first[1]['id']}"}
    )
    assert [r["success"] for r in gone] == [True, True]
    again = sf.restful("composite/sobjects", method="DELETE", params={"ids": first[0]["id"]})
    assert again[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    too_many = [{"attributes": {"type": "Account"}, "Name": f"n{i}"} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful("composite/sobjects", method="POST", json={"records": too_many})
    assert info.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_bulk_query_pages_with_headers(sf: Salesforce) -> None:
    pages = list(
        sf.bulk2.Account.query(
            "SELECT Id, Name, Owner.Email, Strategic_Account__c FROM Account "
            "WHERE Name LIKE 'Company%' ORDER BY Name",
            max_records=50,
            wait=0,
        )
    )
    assert len(pages) == 3
    rows = []
    for page in pages:
        parsed = list(csv.reader(io.StringIO(page)))
        assert parsed[0] == ["Id", "Name", "Owner.Email", "Strategic_Account__c"]
        rows += parsed[1:]
    assert len(rows) == ACCOUNTS
    assert rows[0][1:] == ["Company 00001", "user1@example.test", "false"]
    assert rows[2][3] == "true"


def test_bulk_query_all_includes_deleted(sf: Salesforce) -> None:
    acct = sf.Account.create({"Name": "Bulk Deleted"})
    sf.Account.delete(acct["id"])
    q = "SELECT Id, IsDeleted FROM Account WHERE Name = 'Bulk Deleted'"
    live = "".join(sf.bulk2.Account.query(q, wait=0))
    assert acct["id"] not in live
    every = "".join(sf.bulk2.Account.query_all(q, wait=0))
    assert f'"{acct["id"]}","true"' in every


def test_bulk_ingest_insert_and_upsert_with_failures(sf: Salesforce, srv: Server) -> None:
    result = sf.bulk2.Account.insert(
        records=[
            {"Name": "Bulk 1", "Crmsync_Id__c": "b-1", "ARR__c": "100"},
            {"Name": "", "Crmsync_Id__c": "b-2", "ARR__c": "200"},
            {"Name": "Bulk 3", "Crmsync_Id__c": "b-3", "ARR__c": "300"},
        ],
        wait=0,
    )
    assert result[0]["numberRecordsProcessed"] == 3
    assert result[0]["numberRecordsFailed"] == 1
    job_id = result[0]["job_id"]
    failed = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_failed_records(job_id))))
    assert failed[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:Required fields are missing")
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(job_id))))
    assert [r["sf__Created"] for r in ok] == ["true", "true"]
    unprocessed = sf.bulk2.Account.get_unprocessed_records(job_id)
    assert unprocessed.splitlines()[1:] == []
    # Result rows come in no particular order (A.7): find b-3's row by its key.
    b3 = next(r["sf__Id"] for r in ok if r["Crmsync_Id__c"] == "b-3")
    srv.ctx.faults.set_record_fault("salesforce", "Account", [b3], "lock", count=1)  # type: ignore[attr-defined]
    upsert = sf.bulk2.Account.upsert(
        records=[
            {"Crmsync_Id__c": "b-1", "Name": "", "ARR__c": "#N/A"},
            {"Crmsync_Id__c": "b-3", "Name": "Bulk 3b", "ARR__c": ""},
            {"Crmsync_Id__c": "b-4", "Name": "Bulk 4", "ARR__c": "400"},
        ],
        external_id_field="Crmsync_Id__c",
        wait=0,
    )
    assert upsert[0]["numberRecordsFailed"] == 1
    failed = sf.bulk2.Account.get_failed_records(upsert[0]["job_id"])
    assert "UNABLE_TO_LOCK_ROW" in failed
    one = sf.Account.get_by_custom_id("Crmsync_Id__c", "b-1")
    assert one["Name"] == "Bulk 1"  # empty CSV value ignored
    assert one["ARR__c"] is None  # #N/A nulls
    assert sf.Account.get_by_custom_id("Crmsync_Id__c", "b-4")["ARR__c"] == 400.0
