"""HubSpot emulator: its own rate limits (rolling burst window, daily budget, headers, 429s)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from hubspot.crm.companies import ApiException
from hubspot_harness import TIMEOUT, MiniPlan, Running, factory

from crmsync_sandbox.context import SandboxConfig
from crmsync_sandbox.hubspot.ratelimit import RateLimiter

HEADERS = (
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
)


@pytest.fixture
def make_hs(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    with factory(tmp_path) as start:
        yield start


def test_burst_window_429_with_headers_and_reset(make_hs: Callable[..., Running]) -> None:
    config = SandboxConfig(hs_burst_max=3, hs_burst_window_ms=60_000, hs_daily_limit=100)
    hs = make_hs(config=config, plan=MiniPlan(accounts=2))
    api = hs.client()
    remaining = []
    for _ in range(3):
        _, status, headers = api.crm.companies.basic_api.get_page_with_http_info(
            limit=1, _request_timeout=TIMEOUT
        )
        assert status == 200
        assert all(h in headers for h in HEADERS)
        assert headers["X-HubSpot-RateLimit-Max"] == "3"
        assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "60000"
        remaining.append(headers["X-HubSpot-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    with pytest.raises(ApiException) as info:
        api.crm.companies.basic_api.get_page(limit=1, _request_timeout=TIMEOUT)
    assert info.value.status == 429
    body = json.loads(info.value.body)
    assert body["status"] == "error"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert {"correlationId", "requestId"} <= set(body)
    assert info.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert info.value.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "97"
    assert hs.stats.snapshot()["rate_limited"] == {"hubspot": {"/crm/v3/objects/companies": 1}}
    hs.em.reset_rate_limits()
    _, status, headers = api.crm.companies.basic_api.get_page_with_http_info(
        limit=1, _request_timeout=TIMEOUT
    )
    assert status == 200
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "99"


def test_daily_limit(make_hs: Callable[..., Running]) -> None:
    config = SandboxConfig(hs_burst_max=100, hs_daily_limit=2)
    hs = make_hs(config=config, plan=MiniPlan(accounts=1))
    api = hs.client()
    api.crm.companies.basic_api.get_page(limit=1, _request_timeout=TIMEOUT)
    api.crm.companies.basic_api.get_page(limit=1, _request_timeout=TIMEOUT)
    with pytest.raises(ApiException) as info:
        api.crm.companies.basic_api.get_page(limit=1, _request_timeout=TIMEOUT)
    assert info.value.status == 429
    body = json.loads(info.value.body)
    assert body["policyName"] == "DAILY"
    assert body["message"] == "You have reached your daily limit."


def test_rate_limits_switch_off_and_core_answers(
    make_hs: Callable[..., Running],
) -> None:
    hs = make_hs(
        config=SandboxConfig(hs_rate_limits=False, hs_burst_max=1), plan=MiniPlan(accounts=1)
    )
    api = hs.client()
    for _ in range(3):
        _, status, headers = api.crm.companies.basic_api.get_page_with_http_info(
            limit=1, _request_timeout=TIMEOUT
        )
        assert status == 200
        assert "X-HubSpot-RateLimit-Max" not in headers
    resp = hs.em.rate_limited_response()
    assert resp.status_code == 429
    assert json.loads(bytes(resp.body))["policyName"] == "TEN_SECONDLY_ROLLING"
    assert hs.em.unavailable_response().status_code == 503


def test_window_rolls_with_monotonic_time() -> None:
    now = [0.0]
    limiter = RateLimiter(
        enabled=True,
        burst_max=2,
        burst_window_ms=10_000,
        search_per_second=1,
        daily_limit=10,
        today=lambda: date(2024, 1, 1),
        monotonic=lambda: now[0],
    )
    assert limiter.admit(search=False).policy is None
    now[0] = 5.0
    assert limiter.admit(search=False).policy is None
    assert limiter.admit(search=False).policy == "TEN_SECONDLY_ROLLING"
    now[0] = 10.01  # the first call left the window
    assert limiter.admit(search=False).policy is None
    assert limiter.admit(search=True).policy is None
    assert limiter.admit(search=True).policy == "SECONDLY"
    now[0] = 11.2
    assert limiter.admit(search=True).policy is None
