"""HubSpot OAuth apps (issue #16 item 2) against the sandbox, over HTTPS, through the real
client: 30-minute access tokens renewed 5 minutes before they expire and once on a 401, and
``BAD_REFRESH_TOKEN`` as an ``auth`` error that names the setting but never its value."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from app.crm.hubspot.auth import HubSpotToken, classify_token_answer, refresh_due
from app.crm.hubspot.client import HubSpotClient
from app.errors import AuthError, ErrorCategory
from app.settings import Settings
from crmsync_sandbox import Sandbox, SandboxConfig

COMPANIES = 7
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def oauth_settings(sb: Sandbox, **overrides: Any) -> Settings:
    hs = sb.info.hubspot
    values: dict[str, Any] = {
        "hubspot_base_url": hs.base_url,
        "hubspot_client_id": hs.client_id,
        "hubspot_client_secret": SecretStr(hs.client_secret),
        "hubspot_refresh_token": SecretStr(hs.refresh_token),
        "ca_bundle": sb.info.ca_file,
    } | overrides
    return Settings(**values)


def client_for(sb: Sandbox, clock: FakeClock | None = None, **overrides: Any) -> HubSpotClient:
    return HubSpotClient(
        oauth_settings(sb, **overrides),
        sleep=lambda _s: None,
        clock=clock or FakeClock(),
        index_lag_margin=timedelta(0),
    )


def token_calls(sb: Sandbox) -> int:
    routes = sb.control("GET", "/stats")["calls"].get("hubspot", {})
    return sum(sum(v.values()) for route, v in routes.items() if "/oauth/" in route)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=COMPANIES, hs_rate_limits=False)) as sb:
        yield sb


def test_oauth_app_logs_in_and_reads(sandbox: Sandbox) -> None:
    assert oauth_settings(sandbox).hubspot_auth_mode == "oauth"
    with client_for(sandbox) as client:
        assert client.estimate_changes("companies", None) == COMPANIES
        assert client.api_calls == 2  # one token refresh, one search
    assert token_calls(sandbox) == 1


def test_token_is_renewed_five_minutes_before_it_expires(sandbox: Sandbox) -> None:
    clock = FakeClock()
    with client_for(sandbox, clock) as client:
        client.estimate_changes("companies", None)
        clock.now += timedelta(minutes=24, seconds=59)  # 5 min 1 s left: keep it
        client.estimate_changes("companies", None)
        assert token_calls(sandbox) == 1
        clock.now += timedelta(seconds=2)  # 4 min 59 s left: renew before the call
        assert client.estimate_changes("companies", None) == COMPANIES
        assert token_calls(sandbox) == 2
        assert client.api_calls == 5  # 2 refreshes + 3 searches: no 401 in between


def test_token_expired_at_hubspot_is_renewed_once_and_the_call_repeated(
    sandbox: Sandbox,
) -> None:
    with client_for(sandbox) as client:
        client.estimate_changes("companies", None)
        # HubSpot's clock passes the 30 minutes while ours (skewed) thinks it has 30 left.
        sandbox.control("POST", "/clock/advance", json={"seconds": 1801})
        assert client.estimate_changes("companies", None) == COMPANIES
        assert token_calls(sandbox) == 2
        assert client.api_calls == 5  # refresh, search, rejected search, refresh, repeat


def test_revoked_refresh_token_is_an_auth_error_naming_the_setting(sandbox: Sandbox) -> None:
    settings = {"hubspot_refresh_token": SecretStr("na1-revoked-0000")}
    with client_for(sandbox, **settings) as client, pytest.raises(AuthError) as info:
        client.estimate_changes("companies", None)
    error = info.value
    assert error.code == "BAD_REFRESH_TOKEN"
    assert error.category is ErrorCategory.AUTH
    assert "missing or invalid refresh token" in str(error)
    assert "CRMSYNC_HUBSPOT_REFRESH_TOKEN" in str(error)
    assert "na1-revoked-0000" not in str(error)
    assert sandbox.info.hubspot.client_secret not in str(error)


def test_wrong_client_secret_is_refused(sandbox: Sandbox) -> None:
    settings = {"hubspot_client_secret": SecretStr("wrong-secret-1234")}
    with client_for(sandbox, **settings) as client, pytest.raises(AuthError) as info:
        client.estimate_changes("companies", None)
    assert info.value.code == "BAD_CLIENT_SECRET"
    assert "wrong-secret-1234" not in str(info.value)


@pytest.mark.parametrize("path", ["/oauth/v3/token", "/oauth/2026-03/token", "/oauth/v1/token"])
def test_sandbox_token_endpoints_answer_as_hubspot(sandbox: Sandbox, path: str) -> None:
    hs = sandbox.info.hubspot
    form = {
        "grant_type": "refresh_token",
        "client_id": hs.client_id,
        "client_secret": hs.client_secret,
        "refresh_token": hs.refresh_token,
    }
    with sandbox.session() as s:
        answer = s.post(hs.base_url + path, data=form)
        assert answer.status_code == 200
        body = answer.json()
        assert body["expires_in"] == 1800
        assert body["token_type"] == "bearer"
        assert body["refresh_token"] == hs.refresh_token
        assert len(body["access_token"]) <= 300
        listed = s.get(
            hs.base_url + "/crm/v3/objects/companies",
            headers={"Authorization": f"Bearer {body['access_token']}"},
        )
        assert listed.status_code == 200
        bad = s.post(hs.base_url + path, data={**form, "refresh_token": "na1-nope"})
        assert (bad.status_code, bad.json()) == (
            400,
            {"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"},
        )
        assert s.post(hs.base_url + path, data={**form, "client_id": "x"}).json()["status"] == (
            "BAD_CLIENT_ID"
        )


def test_sandbox_access_token_dies_after_thirty_minutes(sandbox: Sandbox) -> None:
    hs = sandbox.info.hubspot
    with sandbox.session() as s:
        token = s.post(
            hs.base_url + "/oauth/v3/token",
            data={
                "grant_type": "refresh_token",
                "client_id": hs.client_id,
                "client_secret": hs.client_secret,
                "refresh_token": hs.refresh_token,
            },
        ).json()["access_token"]

        def status() -> int:
            url = hs.base_url + "/crm/v3/objects/companies"
            response: requests.Response = s.get(url, headers={"Authorization": f"Bearer {token}"})
            return response.status_code

        sandbox.control("POST", "/clock/advance", json={"seconds": 1799})
        assert status() == 200
        sandbox.control("POST", "/clock/advance", json={"seconds": 2})
        assert status() == 401


@pytest.mark.parametrize(
    ("token", "now", "due"),
    [
        (None, T0, True),
        (HubSpotToken("t", T0 + timedelta(minutes=30)), T0, False),
        (
            HubSpotToken("t", T0 + timedelta(minutes=30)),
            T0 + timedelta(minutes=24, seconds=59),
            False,
        ),
        (HubSpotToken("t", T0 + timedelta(minutes=30)), T0 + timedelta(minutes=25), True),
        (HubSpotToken("t", T0 + timedelta(minutes=30)), T0 + timedelta(minutes=31), True),
    ],
)
def test_refresh_due(token: HubSpotToken | None, now: datetime, due: bool) -> None:
    assert refresh_due(token, now, timedelta(minutes=5)) is due


@pytest.mark.parametrize(
    ("status", "body", "category", "code"),
    [
        (
            400,
            {"status": "BAD_REFRESH_TOKEN", "message": "x"},
            ErrorCategory.AUTH,
            "BAD_REFRESH_TOKEN",
        ),
        (400, {"error": "invalid_grant"}, ErrorCategory.AUTH, "invalid_grant"),
        (401, "not json", ErrorCategory.AUTH, None),
        (503, {}, ErrorCategory.TRANSIENT, None),
    ],
)
def test_classify_token_answer(
    status: int, body: Any, category: ErrorCategory, code: str | None
) -> None:
    verdict = classify_token_answer(status, body)
    assert (verdict.category, verdict.code) == (category, code)
    assert verdict.retriable is (category is ErrorCategory.TRANSIENT)


def test_token_never_in_repr() -> None:
    assert "s3cr3t" not in repr(HubSpotToken("s3cr3t-token", T0))
