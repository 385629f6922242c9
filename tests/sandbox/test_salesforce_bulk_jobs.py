"""Bulk API 2.0 query jobs keep their results apart from REST query locators, page large without
``maxRecords``, and expire after 7 days with Salesforce's own 404 (issue 16, items 4 and 6).

Through simple-salesforce over HTTPS; result pages without ``maxRecords`` through its session,
since simple-salesforce itself always sends the parameter.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

import pytest
from salesforce_harness import Server, serve  # type: ignore[import-not-found]
from simple_salesforce import Salesforce
from simple_salesforce.bulk2 import Operation
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from crmsync_sandbox.salesforce.store import MAX_CURSORS

ACCOUNTS = 250  # more than one REST page of 200, so every REST query below leaves a locator


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("sfbulk"), accounts=ACCOUNTS) as server:
        yield server


@pytest.fixture
def sf(srv: Server) -> Salesforce:
    return srv.client()


def _create_job(sf: Salesforce, soql: str) -> str:
    job = sf.bulk2.Account._client.create_job(Operation.query, query=soql)
    sf.bulk2.Account._client.wait_for_job(job["id"], True, 0)
    return str(job["id"])


def _results(sf: Salesforce, job_id: str, **params: str) -> tuple[list[list[str]], str, int]:
    """One results page, read the way a client that omits ``maxRecords`` reads it."""
    response = sf.session.get(
        f"{sf.base_url}jobs/query/{job_id}/results",
        params=params,
        headers={**sf.headers, "Accept": "text/csv"},
    )
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    return rows, response.headers["Sforce-Locator"], int(response.headers["Sforce-NumberOfRecords"])


def _open_rest_cursor(sf: Salesforce) -> str:
    page = sf.query(
        "SELECT Id, Name FROM Account", headers={"Sforce-Query-Options": "batchSize=200"}
    )
    assert page["done"] is False
    return str(page["nextRecordsUrl"])


def test_a_complete_job_serves_its_results_after_many_rest_cursors(
    sf: Salesforce, srv: Server
) -> None:
    job_id = _create_job(sf, "SELECT Id, Name FROM Account ORDER BY Name")
    first_locator = _open_rest_cursor(sf)
    for _ in range(MAX_CURSORS + 6):
        _open_rest_cursor(sf)

    assert sf.bulk2.Account._client.get_job(job_id, True)["state"] == "JobComplete"
    rows, locator, count = _results(sf, job_id)
    assert rows[0] == ["Id", "Name"]
    assert count == ACCOUNTS == len(rows) - 1
    assert locator == "null"
    assert rows[1][1] == "Company 00001"
    # the REST pool still forgets its oldest locator, as Salesforce expires idle ones
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query_more(first_locator, identifier_is_url=True)
    assert info.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_results_without_max_records_come_in_one_large_page(sf: Salesforce) -> None:
    job_id = _create_job(sf, "SELECT Id FROM Account")
    rows, locator, count = _results(sf, job_id)
    assert (count, locator, len(rows)) == (ACCOUNTS, "null", ACCOUNTS + 1)


def test_max_records_still_pages_and_the_locator_resumes(sf: Salesforce) -> None:
    job_id = _create_job(sf, "SELECT Id FROM Account ORDER BY Name")
    ids: list[str] = []
    locator, pages = "", 0
    while True:
        params = {"maxRecords": "100"}
        if locator:
            params["locator"] = locator
        rows, locator, count = _results(sf, job_id, **params)
        assert rows[0] == ["Id"]
        assert count == len(rows) - 1 <= 100
        ids += [r[0] for r in rows[1:]]
        pages += 1
        if locator == "null":
            break
    assert pages == 3
    assert len(ids) == len(set(ids)) == ACCOUNTS


def test_pages_without_max_records_are_bounded_by_size(sf: Salesforce, srv: Server) -> None:
    srv.emulator.bulk.page_bytes = 2_000  # ~ 90 rows of "Id" per page
    try:
        job_id = _create_job(sf, "SELECT Id FROM Account")
        counts, locator = [], ""
        while locator != "null":
            _, locator, count = _results(sf, job_id, **({"locator": locator} if locator else {}))
            counts.append(count)
    finally:
        srv.emulator.bulk.page_bytes = 64 * 1024 * 1024
    assert sum(counts) == ACCOUNTS
    assert len(counts) > 1
    assert all(c > 0 for c in counts)


def test_a_job_expires_seven_days_after_it_ended(sf: Salesforce, srv: Server) -> None:
    job_id = _create_job(sf, "SELECT Id FROM Account")
    clock = srv.ctx.clock
    start = clock.freeze()
    try:
        clock.freeze(start + timedelta(days=6, hours=23))
        assert sf.bulk2.Account._client.get_job(job_id, True)["state"] == "JobComplete"
        clock.freeze(start + timedelta(days=7, minutes=1))
        with pytest.raises(SalesforceResourceNotFound) as info:
            sf.bulk2.Account._client.get_query_results(job_id)
        assert info.value.content == [
            {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
        ]
        with pytest.raises(SalesforceResourceNotFound):
            sf.bulk2.Account._client.get_job(job_id, True)
        assert job_id not in srv.emulator.store.job_cursors
    finally:
        clock.unfreeze()


def test_an_unknown_job_is_not_found(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as info:
        sf.bulk2.Account._client.get_query_results("750Sn0000000001AAA")
    assert info.value.content[0]["errorCode"] == "NOT_FOUND"
