"""HubSpot emulator: batch read/create/update/upsert/archive (207 partials, 400s, faults)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hubspot.crm.companies import ApiException
from hubspot_harness import TIMEOUT, MiniPlan, Running, serve


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("hs"), plan=MiniPlan(accounts=30)) as running:
        yield running


def _with_info(call: Any, body: dict[str, Any]) -> tuple[Any, int]:
    data, status, _ = call(body, _request_timeout=TIMEOUT)
    return data, status


def test_batch_read_maps_results_and_reports_missing(hs: Running) -> None:
    api = hs.client()
    data, status = _with_info(
        api.crm.companies.batch_api.read_with_http_info,
        {
            "inputs": [{"id": "10000000001"}, {"id": "999"}, {"id": "10000000002"}],
            "properties": ["name", "arr"],
            "propertiesWithHistory": [],
        },
    )
    assert status == 207
    assert data.status == "COMPLETE"
    assert sorted(r.id for r in data.results) == ["10000000001", "10000000002"]
    assert data.results[0].properties["arr"] in ("1000", "2000")
    assert data.num_errors == 1
    assert data.errors[0].category == "OBJECT_NOT_FOUND"
    assert data.errors[0].context == {"ids": ["999"]}
    full, status = _with_info(
        api.crm.companies.batch_api.read_with_http_info,
        {"inputs": [{"id": "10000000003"}], "properties": ["name"], "propertiesWithHistory": []},
    )
    assert status == 200
    assert not getattr(full, "errors", None)


def test_batch_limits_and_duplicates_are_400(hs: Running) -> None:
    api = hs.client()
    too_many = {"inputs": [{"id": str(10000000000 + i), "properties": {}} for i in range(1, 102)]}
    with pytest.raises(ApiException) as info:
        api.crm.companies.batch_api.update(too_many, _request_timeout=TIMEOUT)
    assert info.value.status == 400
    dupes = {
        "inputs": [
            {"id": "10000000001", "properties": {"plan": "a"}},
            {"id": "10000000001", "properties": {"plan": "b"}},
        ]
    }
    with pytest.raises(ApiException) as info:
        api.crm.companies.batch_api.update(dupes, _request_timeout=TIMEOUT)
    assert info.value.status == 400
    body = json.loads(info.value.body)
    assert body["message"] == (
        "Duplicate IDs found in batch input: [10000000001]. IDs must be unique"
    )
    assert body["context"] == {"ids": ["10000000001"]}
    assert body["category"] == "VALIDATION_ERROR"
    assert "correlationId" in body


def test_batch_update_partial_with_faults_and_missing(hs: Running) -> None:
    api = hs.client()
    hs.faults.set_record_fault("hubspot", "deals", ["20000000012"], "validation")
    hs.faults.set_record_fault("hubspot", "deals", ["20000000013"], "lock")
    data, status = _with_info(
        api.crm.deals.batch_api.update_with_http_info,
        {
            "inputs": [
                {"id": "20000000011", "properties": {"amount": "111"}},
                {"id": "20000000012", "properties": {"amount": "112"}},
                {"id": "20000000013", "properties": {"amount": "113"}},
                {"id": "404", "properties": {"amount": "1"}},
                {"id": "20000000014", "properties": {"dealstage": "closedwon"}},
            ]
        },
    )
    assert status == 207
    assert {r.id: r.properties["amount"] for r in data.results} == {
        "20000000011": "111",
        "20000000014": "1400",
    }
    by_category = {e.category: e for e in data.errors}
    assert by_category["OBJECT_NOT_FOUND"].context == {"ids": ["404"]}
    assert by_category["VALIDATION_ERROR"].context == {"ids": ["20000000012"]}
    assert by_category["LOCKED"].context == {"ids": ["20000000013"]}
    assert data.num_errors == 3
    # the rejected items were not written
    got = api.crm.deals.basic_api.get_by_id(
        "20000000012", properties=["amount"], _request_timeout=TIMEOUT
    )
    assert got.properties["amount"] == "1200"
    # closed-won via batch update calls the outbox
    assert [e["objectId"] for e in hs.outbox.events] == [20000000014]
    stamps = {r.properties["hs_lastmodifieddate"] for r in data.results}
    assert len(stamps) == 1  # one batch, one stamp


def test_batch_update_invalid_property_fails_whole_batch_without_trace_ids(hs: Running) -> None:
    api = hs.client()
    inputs: list[dict[str, Any]] = [
        {"id": "10000000020", "properties": {"plan": "ok"}},
        {"id": "10000000021", "properties": {"nope": "x"}},
    ]
    with pytest.raises(ApiException) as info:
        api.crm.companies.batch_api.update({"inputs": inputs}, _request_timeout=TIMEOUT)
    assert info.value.status == 400
    assert "PROPERTY_DOESNT_EXIST" in json.loads(info.value.body)["message"]
    inputs[0]["objectWriteTraceId"] = "t-1"
    inputs[1]["objectWriteTraceId"] = "t-2"
    data, status = _with_info(api.crm.companies.batch_api.update_with_http_info, {"inputs": inputs})
    assert status == 207
    assert [r.id for r in data.results] == ["10000000020"]
    assert data.results[0].object_write_trace_id == "t-1"
    assert data.errors[0].context == {"ids": ["10000000021"], "objectWriteTraceId": ["t-2"]}


def test_batch_upsert_on_unique_property(hs: Running) -> None:
    api = hs.client()
    api.crm.companies.basic_api.update(
        "10000000025", {"properties": {"crmsync_id": "acc-25"}}, _request_timeout=TIMEOUT
    )
    data, status = _with_info(
        api.crm.companies.batch_api.upsert_with_http_info,
        {
            "inputs": [
                {"id": "acc-25", "idProperty": "crmsync_id", "properties": {"crmsync_tier": "key"}},
                {"id": "acc-new", "idProperty": "crmsync_id", "properties": {"name": "Fresh"}},
            ]
        },
    )
    assert status == 200
    by_id = {r.properties.get("crmsync_id"): r for r in data.results}
    assert by_id["acc-25"].id == "10000000025"
    assert by_id["acc-25"].new is False
    assert by_id["acc-new"].new is True
    assert by_id["acc-new"].properties["name"] == "Fresh"
    with pytest.raises(ApiException) as info:
        api.crm.companies.batch_api.upsert(
            {"inputs": [{"id": "10000000001", "idProperty": "hs_object_id", "properties": {}}]},
            _request_timeout=TIMEOUT,
        )
    assert info.value.status == 400
    assert "non-unique 0-2 property hs_object_id" in json.loads(info.value.body)["message"]
    # a second record cannot take the same unique value
    with pytest.raises(ApiException) as info:
        api.crm.companies.basic_api.update(
            "10000000026", {"properties": {"crmsync_id": "acc-25"}}, _request_timeout=TIMEOUT
        )
    assert info.value.status == 409


def test_batch_create_and_archive(hs: Running) -> None:
    api = hs.client()
    data, status = _with_info(
        api.crm.companies.batch_api.create_with_http_info,
        {
            "inputs": [
                {"properties": {"name": "New A"}, "associations": [], "objectWriteTraceId": "a"},
                {"properties": {"bogus": "x"}, "associations": [], "objectWriteTraceId": "b"},
            ]
        },
    )
    assert status == 207
    assert [r.properties["name"] for r in data.results] == ["New A"]
    assert data.errors[0].category == "VALIDATION_ERROR"
    assert data.errors[0].context == {"objectWriteTraceId": ["b"]}
    ok, status = _with_info(
        api.crm.companies.batch_api.create_with_http_info,
        {"inputs": [{"properties": {"name": "New B"}, "associations": []}]},
    )
    assert status == 201
    new_ids = [data.results[0].id, ok.results[0].id]
    api.crm.companies.batch_api.archive(
        {"inputs": [{"id": i} for i in new_ids]}, _request_timeout=TIMEOUT
    )
    read, status = _with_info(
        api.crm.companies.batch_api.read_with_http_info,
        {"inputs": [{"id": i} for i in new_ids], "properties": [], "propertiesWithHistory": []},
    )
    assert status == 207
    assert read.results == []
    assert hs.stats.snapshot()["written"]["hubspot"]["companies"] >= 4
