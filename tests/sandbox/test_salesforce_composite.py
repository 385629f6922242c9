"""Salesforce ``composite`` and ``composite/batch`` through simple-salesforce over HTTPS (issue 16,
item 5): subrequests answer what the same REST call answers, ``@{ref}`` references, allOrNone
rollback, haltOnError, the 25-subrequest limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from salesforce_harness import Server, serve  # type: ignore[import-not-found]
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

V = "/services/data/v59.0"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("sfc"), accounts=20) as server:
        yield server


@pytest.fixture
def sf(srv: Server) -> Salesforce:
    return srv.client()


def _composite(sf: Salesforce, subs: list[dict[str, Any]], **flags: Any) -> list[dict[str, Any]]:
    answer = sf.restful("composite", method="POST", json={**flags, "compositeRequest": subs})
    results: list[dict[str, Any]] = answer["compositeResponse"]
    assert [r["referenceId"] for r in results] == [s["referenceId"] for s in subs]
    return results


def _count(sf: Salesforce, name: str) -> int:
    return int(sf.query(f"SELECT COUNT() FROM Account WHERE Name = '{name}'")["totalSize"])


def test_subrequests_chain_references_and_answer_like_rest(sf: Salesforce) -> None:
    results = _composite(
        sf,
        [
            {
                "method": "POST",
                "url": f"{V}/sobjects/Account",
                "referenceId": "newAccount",
                "body": {"Name": "Composite One"},
            },
            {
                "method": "GET",
                "url": f"{V}/sobjects/Account/@{{newAccount.id}}?fields=Id,Name",
                "referenceId": "readBack",
            },
            {
                "method": "PATCH",
                "url": f"{V}/sobjects/Account/@{{readBack.Id}}",
                "referenceId": "rename",
                "body": {"Name": "Composite Two"},
            },
            {
                "method": "GET",
                "url": f"{V}/query?q=SELECT+Id,Name+FROM+Account+WHERE+Name='Composite+Two'",
                "referenceId": "found",
            },
        ],
    )
    created, read, renamed, found = results
    assert created["httpStatusCode"] == 201
    new_id = created["body"]["id"]
    assert created["body"] == {"id": new_id, "success": True, "errors": []}
    assert created["httpHeaders"] == {"Location": f"{V}/sobjects/Account/{new_id}"}
    assert read["httpStatusCode"] == 200
    assert read["body"]["Name"] == "Composite One"
    assert (renamed["httpStatusCode"], renamed["body"]) == (204, None)
    assert found["body"]["totalSize"] == 1
    assert found["body"]["records"][0]["Id"] == new_id
    assert sf.Account.get(new_id)["Name"] == "Composite Two"


def test_all_or_none_rolls_everything_back(sf: Salesforce, srv: Server) -> None:
    opportunity = sf.query("SELECT Id FROM Opportunity WHERE StageName != 'Closed Won' LIMIT 1")
    opp_id = opportunity["records"][0]["Id"]
    sent_before = len(srv.outbox.salesforce)
    results = _composite(
        sf,
        [
            {
                "method": "POST",
                "url": f"{V}/sobjects/Account",
                "referenceId": "ok",
                "body": {"Name": "Rolled Back"},
            },
            {
                "method": "PATCH",
                "url": f"{V}/sobjects/Opportunity/{opp_id}",
                "referenceId": "won",
                "body": {"StageName": "Closed Won"},
            },
            {
                "method": "POST",
                "url": f"{V}/sobjects/Account",
                "referenceId": "bad",
                "body": {"Website": "no-name.example"},
            },
            {"method": "GET", "url": f"{V}/limits", "referenceId": "after"},
        ],
        allOrNone=True,
    )
    statuses = [r["httpStatusCode"] for r in results]
    assert statuses == [400, 400, 400, 400]
    assert results[2]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    halted = [
        {
            "errorCode": "PROCESSING_HALTED",
            "message": "The transaction was rolled back since another operation in the same "
            "transaction failed.",
        }
    ]
    assert [results[i]["body"] for i in (0, 1, 3)] == [halted] * 3
    assert _count(sf, "Rolled Back") == 0
    assert sf.Opportunity.get(opp_id)["StageName"] != "Closed Won"
    assert len(srv.outbox.salesforce) == sent_before  # no Closed Won message for an undone write


def test_without_all_or_none_a_failure_stays_local(sf: Salesforce) -> None:
    results = _composite(
        sf,
        [
            {
                "method": "POST",
                "url": f"{V}/sobjects/Account",
                "referenceId": "bad",
                "body": {"Website": "x.example"},
            },
            {
                "method": "GET",
                "url": f"{V}/sobjects/Account/@{{bad.id}}",
                "referenceId": "dependsOnBad",
            },
            {
                "method": "POST",
                "url": f"{V}/sobjects/Account",
                "referenceId": "good",
                "body": {"Name": "Kept Anyway"},
            },
            {"method": "GET", "url": f"{V}/sobjects/Nope/describe", "referenceId": "missing"},
        ],
    )
    assert [r["httpStatusCode"] for r in results] == [400, 400, 201, 404]
    assert results[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert "bad.id" in results[1]["body"][0]["message"]
    assert results[3]["body"][0]["errorCode"] == "NOT_FOUND"
    assert _count(sf, "Kept Anyway") == 1


@pytest.mark.parametrize(
    ("subs", "code"),
    [
        (
            [{"method": "GET", "url": f"{V}/limits", "referenceId": f"r{i}"} for i in range(26)],
            "LIMIT_EXCEEDED",
        ),
        (
            [
                {
                    "method": "GET",
                    "url": f"{V}/query?q=SELECT+Id+FROM+Account",
                    "referenceId": f"q{i}",
                }
                for i in range(6)
            ],
            "LIMIT_EXCEEDED",
        ),
        (
            [
                {"method": "GET", "url": f"{V}/limits", "referenceId": "same"},
                {"method": "GET", "url": f"{V}/limits", "referenceId": "same"},
            ],
            "INVALID_INPUT",
        ),
        ([{"method": "GET", "url": "/limits", "referenceId": "r"}], "INVALID_INPUT"),
    ],
)
def test_refused_composite_requests(sf: Salesforce, subs: list[dict[str, Any]], code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful("composite", method="POST", json={"compositeRequest": subs})
    assert info.value.content[0]["errorCode"] == code
    assert isinstance(info.value.content[0]["message"], str)


def test_a_composite_inside_a_composite_is_refused_per_subrequest(sf: Salesforce) -> None:
    results = _composite(
        sf,
        [{"method": "POST", "url": f"{V}/composite", "referenceId": "nested", "body": {}}],
    )
    assert results[0]["httpStatusCode"] == 400
    assert results[0]["body"][0]["errorCode"] == "INVALID_INPUT"


def test_batch_runs_each_subrequest_and_halts_on_error(sf: Salesforce) -> None:
    account_id = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    requests = [
        {"method": "GET", "url": f"v59.0/sobjects/Account/{account_id}?fields=Name"},
        {
            "method": "PATCH",
            "url": f"v59.0/sobjects/Account/{account_id}",
            "richInput": {"Name": "Batched"},
        },
        {"method": "GET", "url": "v59.0/sobjects/Account/001000000000000AAA"},
        {"method": "POST", "url": "v59.0/sobjects/Account", "richInput": {"Name": "After Error"}},
    ]
    answer = sf.restful("composite/batch", method="POST", json={"batchRequests": requests})
    assert answer["hasErrors"] is True
    assert [r["statusCode"] for r in answer["results"]] == [200, 204, 404, 201]
    assert answer["results"][0]["result"]["Name"] != "Batched"
    assert answer["results"][1]["result"] is None
    assert answer["results"][2]["result"][0]["errorCode"] == "NOT_FOUND"

    halted = sf.restful(
        "composite/batch", method="POST", json={"batchRequests": requests, "haltOnError": True}
    )
    assert [r["statusCode"] for r in halted["results"]] == [200, 204, 404, 412]
    assert halted["results"][3]["result"] == [
        {"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}
    ]
    assert _count(sf, "After Error") == 1  # only the first batch created it

    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful(
            "composite/batch",
            method="POST",
            json={"batchRequests": [{"method": "GET", "url": "v59.0/limits"}] * 26},
        )
    assert info.value.content[0]["errorCode"] == "LIMIT_EXCEEDED"
    clean = sf.restful(
        "composite/batch",
        method="POST",
        json={"batchRequests": [{"method": "GET", "url": "v59.0/limits"}]},
    )
    assert clean["hasErrors"] is False
    assert clean["results"][0]["result"]["DailyApiRequests"]["Max"] > 0
