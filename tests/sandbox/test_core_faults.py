"""Route faults applied by the middleware, record faults, and the fault rule parser."""

from __future__ import annotations

import time

import pytest
import requests

from crmsync_sandbox import Sandbox
from crmsync_sandbox.faults import Faults, RouteFault, parse_fault_spec

QUERY = "/services/data/v59.0/query"


def _get(core: Sandbox, http: requests.Session, path: str = QUERY) -> requests.Response:
    token = (
        core.info.salesforce.access_token
        if path.startswith("/services")
        else core.info.hubspot.access_token
    )
    return http.get(core.base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _set(core: Sandbox, *rules: dict[str, object], seed: int = 1) -> None:
    core.control("PUT", "/faults", json={"routes": list(rules), "seed": seed})


def test_rate_limit_at_rate_one_answers_with_the_crms_own_refusal(
    core: Sandbox, core_http: requests.Session
) -> None:
    _set(core, {"match": "GET /services/data/{version}/query", "rate_limit": 1.0})
    for _ in range(3):
        response = _get(core, core_http)
        assert response.status_code == 403
        assert response.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert _get(core, core_http, "/crm/v3/objects/companies").status_code == 200  # not matched
    stats = core.control("GET", "/stats")
    assert stats["rate_limited"]["salesforce"] == {"GET /services/data/{version}/query": 3}
    assert stats["calls"]["salesforce"]["GET /services/data/{version}/query"] == {"403": 3}

    _set(core, {"match": "GET /crm/*", "rate_limit": 1.0})
    assert _get(core, core_http, "/crm/v3/objects/deals").status_code == 429


def test_rate_zero_never_fires(core: Sandbox, core_http: requests.Session) -> None:
    _set(core, {"match": "*", "rate_limit": 0.0, "unavailable": 0.0, "reset": 0.0})
    assert all(_get(core, core_http).status_code == 200 for _ in range(20))


def test_partial_rates_are_seeded_and_repeatable() -> None:
    def draws(seed: int) -> list[str]:
        faults = Faults(seed, [RouteFault("GET /x", unavailable=0.3)])
        return [faults.decide(["GET /x"]).action for _ in range(200)]

    first = draws(7)
    assert first == draws(7)
    assert first != draws(8)
    assert 30 < first.count("unavailable") < 90


def test_unavailable_answers_503(core: Sandbox, core_http: requests.Session) -> None:
    _set(core, {"match": "/crm/v3/objects/*", "unavailable": 1.0})
    assert _get(core, core_http, "/crm/v3/objects/companies").status_code == 503
    assert _get(core, core_http).status_code == 200


def test_connection_reset_raises_a_connection_error(
    core: Sandbox, core_http: requests.Session
) -> None:
    _set(core, {"match": "GET /services/*", "reset": 1.0})
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(core, core_http)
    _set(core)
    assert _get(core, core_http).status_code == 200  # the server survives
    calls = core.control("GET", "/stats")["calls"]["salesforce"]
    assert calls["GET /services/data/{version}/query"]["reset"] >= 1


def test_slow_adds_at_least_the_delay(core: Sandbox, core_http: requests.Session) -> None:
    _get(core, core_http)  # warm the connection
    _set(core, {"match": "GET /services/data/{version}/query", "slow_ms": 300})
    started = time.monotonic()
    assert _get(core, core_http).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    _get(core, core_http, "/crm/v3/objects/companies")
    assert time.monotonic() - started < 0.3


def test_match_by_route_name(core: Sandbox, core_http: requests.Session) -> None:
    _set(core, {"match": "hs4", "unavailable": 1.0})
    token = core.info.hubspot.access_token
    response = core_http.patch(
        core.base_url + "/crm/v4/objects/deals/1", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503


def test_record_faults_fail_chosen_writes_count_times(
    core: Sandbox, core_http: requests.Session
) -> None:
    url = core.base_url + "/services/data/v59.0/sobjects/Opportunity/006A"
    headers = {"Authorization": f"Bearer {core.info.salesforce.access_token}"}
    core.control(
        "POST",
        "/faults/records",
        json={
            "crm": "salesforce",
            "object": "Opportunity",
            "ids": ["006A"],
            "kind": "lock",
            "count": 2,
        },
    )
    core.control(
        "POST",
        "/faults/records",
        json={"crm": "salesforce", "object": "*", "ids": ["006B"], "kind": "validation"},
    )
    answers = [core_http.patch(url, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 204]
    assert answers[0].json()[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    other = core.base_url + "/services/data/v59.0/sobjects/Opportunity/006B"
    for _ in range(3):  # no count: until cleared
        assert core_http.patch(other, headers=headers).json()[0]["errorCode"].startswith("FIELD_")
    snapshot = core.control("GET", "/faults")
    assert snapshot["records"] == [
        {"crm": "salesforce", "object": "*", "id": "006B", "kind": "validation", "remaining": None}
    ]
    core.control("DELETE", "/faults/records", json={"crm": "salesforce"})
    assert core_http.patch(other, headers=headers).status_code == 204


def test_parse_fault_spec() -> None:
    rule = parse_fault_spec("GET /crm/*:rate_limit=0.1,slow_ms=200")
    assert rule == RouteFault("GET /crm/*", rate_limit=0.1, slow_ms=200)
    assert parse_fault_spec("*/query:reset=1").reset == 1.0
    for bad in ("no-options", "GET /x:rate_limit", "GET /x:rate_limit=3", "GET /x:bogus=1"):
        with pytest.raises(ValueError, match=r"\w"):
            parse_fault_spec(bad)
