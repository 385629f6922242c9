"""HubSpot emulator: CRM search (operators, sorts, windows, limits, 10,000 cap, index lag)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hubspot.crm.companies import ApiException
from hubspot_harness import TIMEOUT, MiniPlan, Running, factory, serve

from crmsync_sandbox.context import SandboxConfig
from crmsync_sandbox.hubspot import schema


@pytest.fixture
def make_hs(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    with factory(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("hs"), plan=MiniPlan(accounts=30)) as running:
        yield running


def _search(hs: Running, object_type: str, body: dict[str, Any]) -> Any:
    api = hs.client()
    apis = {
        "companies": api.crm.companies.search_api,
        "deals": api.crm.deals.search_api,
        "notes": api.crm.objects.notes.search_api,
    }
    return apis[object_type].do_search(body, _request_timeout=TIMEOUT)


def _ids(result: Any) -> list[int]:
    return [int(r.id) for r in result.results]


def _one(prop: str, op: str, **kw: Any) -> dict[str, Any]:
    return {
        "filterGroups": [{"filters": [{"propertyName": prop, "operator": op, **kw}]}],
        "limit": 100,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_one("hs_object_id", "EQ", value="10000000002"), [2]),
        (_one("name", "EQ", value="company 3 alpha"), [3]),  # case-insensitive
        (_one("arr", "GT", value="27000"), [28, 29, 30]),
        (_one("arr", "LTE", value="2000"), [1, 2]),
        (_one("arr", "BETWEEN", value="5000", highValue="7000"), [5, 6, 7]),
        (_one("hs_object_id", "IN", values=["10000000004", "10000000009"]), [4, 9]),
        (_one("industry", "IN", values=["retail"]), [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]),
        (_one("contract_end_date", "NOT_HAS_PROPERTY"), [4, 8, 12, 16, 20, 24, 28]),
        (_one("name", "CONTAINS_TOKEN", value="beta"), list(range(2, 31, 2))),
        (_one("domain", "CONTAINS_TOKEN", value="company1*"), [1, *range(10, 20)]),
        (_one("createdate", "LT", value="2024-01-01T03:00:00Z"), [1, 2]),
        (
            _one(
                "createdate",
                "LT",
                value=str(int(datetime(2024, 1, 1, 3, tzinfo=UTC).timestamp() * 1000)),
            ),
            [1, 2],
        ),
    ],
)
def test_operators(hs: Running, body: dict[str, Any], expected: list[int]) -> None:
    got = _search(hs, "companies", body)
    assert sorted(i - schema.ID_BASE["companies"] for i in _ids(got)) == expected
    assert got.total == len(expected)


def test_neq_not_in_and_not_contains_include_missing(hs: Running) -> None:
    neq = _search(hs, "companies", _one("contract_end_date", "NEQ", value="2025-01-01"))
    assert neq.total == 7
    not_in = _search(hs, "companies", _one("country", "NOT_IN", values=["germany"]))
    assert not_in.total == 15
    not_tok = _search(hs, "companies", _one("name", "NOT_CONTAINS_TOKEN", value="alpha"))
    assert not_tok.total == 15
    has = _search(hs, "companies", _one("contract_end_date", "HAS_PROPERTY"))
    assert has.total == 23


def test_groups_or_filters_and_top_level_filters(hs: Running) -> None:
    body = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "arr", "operator": "GTE", "value": "10000"},
                    {"propertyName": "arr", "operator": "LT", "value": "12000"},
                ]
            },
            {
                "filters": [
                    {"propertyName": "hs_object_id", "operator": "EQ", "value": "10000000001"}
                ]
            },
        ],
        "limit": 50,
    }
    assert sorted(_ids(_search(hs, "companies", body))) == [10000000001, 10000000010, 10000000011]
    top = {
        "filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}],
        "limit": 100,
    }
    won = _search(hs, "deals", top)
    assert won.total == 10
    assert all(r.properties["dealstage"] == "closedwon" for r in won.results)


def test_association_pseudo_property(hs: Running) -> None:
    body = _one("associations.company", "EQ", value="10000000003")
    assert sorted(_ids(_search(hs, "deals", body))) == [20000000005, 20000000006]


def test_sorts_as_objects_and_strings(hs: Running) -> None:
    desc = _search(
        hs, "companies", {"sorts": [{"propertyName": "arr", "direction": "DESCENDING"}], "limit": 3}
    )
    assert _ids(desc) == [10000000030, 10000000029, 10000000028]
    asc = _search(hs, "companies", {"sorts": ["createdate"], "limit": 2, "properties": ["name"]})
    assert _ids(asc) == [10000000001, 10000000002]
    assert set(asc.results[0].properties) == {
        "name",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }
    neg = _search(hs, "companies", {"sorts": ["-hs_object_id"], "limit": 1})
    assert _ids(neg) == [10000000030]


def test_window_paging_sorted_by_lastmodified(hs: Running) -> None:
    base = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    body: dict[str, Any] = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(base)}
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["dealname"],
        "limit": 7,
        "after": "0",
    }
    seen: list[Any] = []
    while True:
        page = _search(hs, "deals", body)
        assert page.total >= 58
        seen.extend(page.results)
        if page.paging is None:
            break
        assert page.paging.next.after == str(len(seen))
        body["after"] = page.paging.next.after
    stamps = [r.properties["hs_lastmodifieddate"] for r in seen]
    assert stamps == sorted(stamps)
    assert len({r.id for r in seen}) == len(seen) == page.total


def test_shared_timestamp_across_page_boundary(make_hs: Callable[..., Running]) -> None:
    hs = make_hs(plan=MiniPlan(accounts=80))
    at = datetime(2024, 3, 1, tzinfo=UTC)
    touched = hs.em.touch("deals", ids=None, count=150, at=at)
    at_ms = str(int(at.timestamp() * 1000))
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "EQ", "value": at_ms}]}
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "limit": 100,
    }
    first = _search(hs, "deals", body)
    assert first.total == 150
    assert first.paging.next.after == "100"
    body["after"] = "100"
    second = _search(hs, "deals", body)
    assert second.paging is None
    assert [r.id for r in first.results + second.results] == touched


def test_search_limits_are_400(hs: Running) -> None:
    too_many_groups = {"filterGroups": [{"filters": []}] * 6}
    six = [{"propertyName": "arr", "operator": "HAS_PROPERTY"}] * 6
    seven = {"filterGroups": [{"filters": [*six, six[0]]}]}
    nineteen = {"filterGroups": [{"filters": six}] * 3 + [{"filters": [six[0]]}]}
    eighteen = {"filterGroups": [{"filters": six}] * 3}
    big = {
        "filterGroups": [
            {"filters": [{"propertyName": "name", "operator": "EQ", "value": "x" * 3000}]}
        ]
    }
    for body in (too_many_groups, seven, nineteen, big, {"limit": 201}, {"after": "abc"}):
        with pytest.raises(ApiException) as info:
            _search(hs, "companies", body)
        assert info.value.status == 400
        assert json.loads(info.value.body)["category"] == "VALIDATION_ERROR"
    assert _search(hs, "companies", eighteen).total == 30


def test_archived_never_returned(hs: Running) -> None:
    api = hs.client()
    api.crm.companies.basic_api.archive("10000000030", _request_timeout=TIMEOUT)
    got = _search(hs, "companies", _one("hs_object_id", "EQ", value="10000000030"))
    assert got.total == 0
    assert got.results == []


def test_ten_thousand_cap(make_hs: Callable[..., Running]) -> None:
    hs = make_hs()
    stamp = int(datetime(2024, 2, 1, tzinfo=UTC).timestamp() * 1000)
    hs.em.store.bulk_insert(
        "companies",
        ((schema.ID_BASE["companies"] + i, stamp, stamp, '{"name":"n"}') for i in range(1, 10_051)),
    )
    body: dict[str, Any] = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(stamp)}
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "limit": 200,
        "after": "9800",
    }
    page = _search(hs, "companies", body)
    assert page.total == 10_050
    assert len(page.results) == 200
    assert page.paging.next.after == "10000"
    body["after"] = page.paging.next.after
    with pytest.raises(ApiException) as info:
        _search(hs, "companies", body)
    assert info.value.status == 400
    assert json.loads(info.value.body)["category"] == "VALIDATION_ERROR"
    # the documented way out: restart at after=0 with hs_object_id GT the last id seen
    last = page.results[-1].id
    body["filterGroups"][0]["filters"].append(
        {"propertyName": "hs_object_id", "operator": "GT", "value": last}
    )
    body["after"] = "0"
    rest = _search(hs, "companies", body)
    assert rest.total == 50


def test_index_lag_hides_fresh_writes(make_hs: Callable[..., Running]) -> None:
    config = SandboxConfig(hs_rate_limits=False, hs_search_index_lag_ms=60_000)
    hs = make_hs(config=config, plan=MiniPlan(accounts=2))
    now = datetime(2024, 6, 1, tzinfo=UTC)
    hs.clock.freeze(now)
    api = hs.client()
    api.crm.companies.basic_api.update(
        "10000000001", {"properties": {"plan": "fresh"}}, _request_timeout=TIMEOUT
    )
    body = _one("plan", "EQ", value="fresh")
    assert _search(hs, "companies", body).total == 0
    hs.clock.freeze(now + timedelta(seconds=61))
    assert _search(hs, "companies", body).total == 1


def test_search_secondly_limit_has_no_headers(make_hs: Callable[..., Running]) -> None:
    config = SandboxConfig(hs_search_per_second=2, hs_burst_max=1000)
    hs = make_hs(config=config, plan=MiniPlan(accounts=1))
    api = hs.client()
    _ok, _, headers = api.crm.companies.search_api.do_search_with_http_info(
        {"limit": 1}, _request_timeout=TIMEOUT
    )
    assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in headers)
    _search(hs, "companies", {"limit": 1})
    with pytest.raises(ApiException) as info:
        _search(hs, "companies", {"limit": 1})
    assert info.value.status == 429
    body = json.loads(info.value.body)
    assert body["policyName"] == "SECONDLY"
    assert body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your secondly limit."
    assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in info.value.headers)
    # searches do not consume the burst window of other calls
    _page, _, headers = api.crm.companies.basic_api.get_page_with_http_info(
        limit=1, _request_timeout=TIMEOUT
    )
    assert headers["X-HubSpot-RateLimit-Remaining"] == "999"
