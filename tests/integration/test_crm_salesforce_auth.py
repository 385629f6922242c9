"""Salesforce login flows (issue #16 item 1) against the sandbox, over HTTPS, through the real
client: JWT bearer, refresh token, client credentials and a session id.

Each flow logs in at the sandbox's login host (``https://127.0.0.1:PORT``) and must then send
every data call to the instance URL of the token answer (``https://localhost:PORT``, the My
Domain of the emulated org); a refused grant is an ``auth`` error with Salesforce's own words
and the settings to fix, never the secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from app.crm.http import build_session
from app.crm.salesforce.client import SalesforceClient
from app.errors import AuthError, ConfigError, ErrorCategory
from app.settings import Settings
from crmsync_sandbox import Sandbox, SandboxConfig

ACCOUNTS = 12


def flow_settings(sb: Sandbox, auth: str, **overrides: Any) -> Settings:
    sf = sb.info.salesforce
    values: dict[str, Any] = {
        "salesforce_auth": auth,
        "salesforce_login_url": sf.login_url,
        "salesforce_api_version": sf.api_version,
        "salesforce_client_id": sf.client_id,
        "ca_bundle": sb.info.ca_file,
    }
    if auth == "jwt":
        values |= {
            "salesforce_username": sf.username,
            "salesforce_private_key_file": sf.jwt_private_key_file,
        }
    elif auth == "refresh_token":
        values |= {
            "salesforce_client_secret": SecretStr(sf.client_secret),
            "salesforce_refresh_token": SecretStr(sf.refresh_token),
        }
    elif auth == "client_credentials":
        values |= {"salesforce_client_secret": SecretStr(sf.client_secret)}
    else:
        values |= {
            "salesforce_login_url": None,
            "salesforce_client_id": None,
            "salesforce_instance_url": sf.instance_url,
            "salesforce_access_token": SecretStr(sf.access_token),
        }
    values |= overrides
    return Settings(**values)


class Recorded:
    """A client whose session records the host of every request it sends."""

    def __init__(self, settings: Settings) -> None:
        self.session = build_session(settings)
        self.hosts: list[tuple[str, str]] = []
        self.session.hooks["response"].append(self._record)
        self.client = SalesforceClient(settings, self.session, sleep=lambda _s: None)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        parts = urlsplit(response.url)
        self.hosts.append((str(parts.hostname), parts.path))

    def token_hosts(self) -> set[str]:
        return {host for host, path in self.hosts if path.startswith("/services/oauth2/")}

    def data_hosts(self) -> set[str]:
        return {host for host, path in self.hosts if path.startswith("/services/data/")}


def token_calls(sb: Sandbox) -> int:
    routes = sb.control("GET", "/stats")["calls"].get("salesforce", {})
    return sum(sum(v.values()) for route, v in routes.items() if "oauth2/token" in route)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=ACCOUNTS)) as sb:
        yield sb


@pytest.mark.parametrize("auth", ["jwt", "refresh_token", "client_credentials"])
def test_each_flow_logs_in_at_the_login_host_and_reads_from_the_instance(
    sandbox: Sandbox, auth: str
) -> None:
    recorded = Recorded(flow_settings(sandbox, auth))
    with recorded.client as client:
        assert client.estimate_changes("Account", None) == ACCOUNTS
        assert client.api_calls == 2  # one token request, one query
    assert recorded.token_hosts() == {"127.0.0.1"}
    assert recorded.data_hosts() == {"localhost"}


def test_session_id_reads_from_its_instance_without_login(sandbox: Sandbox) -> None:
    recorded = Recorded(flow_settings(sandbox, "session"))
    with recorded.client as client:
        assert client.estimate_changes("Account", None) == ACCOUNTS
        assert client.api_calls == 1
    assert recorded.token_hosts() == set()
    assert recorded.data_hosts() == {"localhost"}


@pytest.mark.parametrize("auth", ["jwt", "refresh_token", "client_credentials"])
def test_expired_token_is_replaced_once_and_the_call_repeated(auth: str) -> None:
    with (
        Sandbox(SandboxConfig(accounts=5)) as sb,
        SalesforceClient(flow_settings(sb, auth), sleep=lambda _s: None) as client,
    ):
        assert client.estimate_changes("Account", None) == 5
        assert token_calls(sb) == 1
        sb.control("POST", "/tokens/expire", json={"crm": "salesforce"})
        assert client.estimate_changes("Account", None) == 5
        assert token_calls(sb) == 2
        # 2 logins + the first query + the rejected one + its repeat
        assert client.api_calls == 5


def test_expired_session_id_names_the_setting_and_hides_it() -> None:
    with (
        Sandbox(SandboxConfig(accounts=3)) as sb,
        SalesforceClient(flow_settings(sb, "session"), sleep=lambda _s: None) as client,
    ):
        sb.control("POST", "/tokens/expire", json={"crm": "salesforce"})
        with pytest.raises(AuthError) as info:
            client.estimate_changes("Account", None)
    assert "CRMSYNC_SALESFORCE_ACCESS_TOKEN" in str(info.value)
    assert sb.info.salesforce.access_token not in str(info.value)


def refusal(sb: Sandbox, auth: str, **overrides: Any) -> AuthError:
    settings = flow_settings(sb, auth, **overrides)
    with SalesforceClient(settings, sleep=lambda _s: None) as c, pytest.raises(AuthError) as info:
        c.estimate_changes("Account", None)
    assert info.value.category is ErrorCategory.AUTH
    assert not info.value.retriable
    return info.value


def test_revoked_refresh_token_is_invalid_grant_naming_the_setting(sandbox: Sandbox) -> None:
    error = refusal(
        sandbox, "refresh_token", salesforce_refresh_token=SecretStr("5Aep-revoked-abcdef")
    )
    assert error.code == "invalid_grant"
    assert "expired access/refresh token" in str(error)
    assert "CRMSYNC_SALESFORCE_REFRESH_TOKEN" in str(error)
    assert "5Aep-revoked-abcdef" not in str(error)
    assert sandbox.info.salesforce.client_secret not in str(error)


def test_wrong_client_secret_on_refresh_is_invalid_client(sandbox: Sandbox) -> None:
    error = refusal(sandbox, "refresh_token", salesforce_client_secret=SecretStr("nope-secret"))
    assert error.code == "invalid_client"
    assert "nope-secret" not in str(error)


def test_jwt_for_a_user_who_has_not_approved_the_app(sandbox: Sandbox) -> None:
    error = refusal(sandbox, "jwt", salesforce_username="someone.else@example.com")
    assert error.code == "invalid_grant"
    assert "user hasn't approved this consumer" in str(error)
    assert "CRMSYNC_SALESFORCE_USERNAME" in str(error)


def test_jwt_signed_by_another_key_is_an_invalid_assertion(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The sandbox makes one pair per process: sign with a fresh RSA key instead.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "key.pem").write_bytes(pem)
    error = refusal(sandbox, "jwt", salesforce_private_key_file=str(tmp_path / "key.pem"))
    assert (error.code, "invalid assertion" in str(error)) == ("invalid_grant", True)
    assert "PRIVATE KEY" not in str(error)


def test_jwt_from_a_clock_far_behind_is_expired() -> None:
    with Sandbox(SandboxConfig(accounts=2)) as sb:
        sb.control("POST", "/clock/advance", json={"seconds": 3600})
        error = refusal(sb, "jwt")
    assert error.code == "invalid_grant"
    assert "expired authorization code" in str(error)


def test_private_key_that_cannot_sign_is_a_config_error(sandbox: Sandbox, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    settings = flow_settings(sandbox, "jwt", salesforce_private_key_file=str(bad))
    with SalesforceClient(settings, sleep=lambda _s: None) as c, pytest.raises(ConfigError) as info:
        c.estimate_changes("Account", None)
    assert f"CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE {bad} cannot sign" in str(info.value)


def test_sandbox_jwt_checks_audience_and_issuer(sandbox: Sandbox) -> None:
    sf = sandbox.info.salesforce
    assert sf.jwt_private_key_file is not None
    key = Path(sf.jwt_private_key_file).read_bytes()
    url = sf.login_url + "/services/oauth2/token"

    def grant(**claims: Any) -> requests.Response:
        base = {"iss": sf.client_id, "sub": sf.username, "aud": sf.login_url, "exp": 2**31 - 1}
        assertion = jwt.encode({**base, **claims}, key, algorithm="RS256")
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        with sandbox.session() as s:
            return s.post(url, data=form)

    ok = grant(aud="https://login.salesforce.com")
    assert ok.status_code == 200
    body = ok.json()
    assert body["instance_url"] == sf.instance_url
    assert "refresh_token" not in body
    assert "expires_in" not in body
    assert grant(aud="https://evil.example").json() == {
        "error": "invalid_grant",
        "error_description": "audience is invalid",
    }
    wrong_iss = grant(iss="someone-else")
    assert wrong_iss.status_code == 400
    assert wrong_iss.json()["error"] == "invalid_client_id"


def test_sandbox_userinfo_answers_the_token_owner(sandbox: Sandbox) -> None:
    sf = sandbox.info.salesforce
    with sandbox.session() as s:
        token = s.post(
            sf.login_url + "/services/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": sf.client_id,
                "client_secret": sf.client_secret,
                "refresh_token": sf.refresh_token,
            },
        ).json()["access_token"]
        info = s.get(
            sf.login_url + "/services/oauth2/userinfo",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert info.status_code == 200
        assert info.json()["preferred_username"] == sf.username
        assert info.json()["organization_id"] == sf.organization_id
        assert info.json()["urls"]["custom_domain"] == sf.instance_url
        dead = s.get(
            sf.login_url + "/services/oauth2/userinfo",
            headers={"Authorization": "Bearer 00Dnope!nope"},
        )
        assert (dead.status_code, dead.text) == (403, "Bad_OAuth_Token")


def test_clients_sharing_a_token_cache_log_in_once_and_again_after_a_401(
    sandbox: Sandbox,
) -> None:
    """The webhook worker's clients and write-back writers share one token (TokenCache): a
    second client makes no token request; after the token expires, one new token serves both."""
    from app.crm.salesforce.auth import TokenCache

    settings = flow_settings(sandbox, "client_credentials")
    cache = TokenCache()
    before = token_calls(sandbox)
    with (
        SalesforceClient(settings, sleep=lambda _s: None, token_cache=cache) as first,
        SalesforceClient(settings, sleep=lambda _s: None, token_cache=cache) as second,
    ):
        assert first.estimate_changes("Account", None) == ACCOUNTS
        assert second.estimate_changes("Account", None) == ACCOUNTS
        assert token_calls(sandbox) - before == 1
        assert (first.api_calls, second.api_calls) == (2, 1)  # only the first logged in
        sandbox.control("POST", "/tokens/expire", json={"crm": "salesforce"})
        assert first.estimate_changes("Account", None) == ACCOUNTS  # 401, new token, repeat
        assert second.estimate_changes("Account", None) == ACCOUNTS  # 401, the new token
        assert token_calls(sandbox) - before == 2
        assert cache.fetches == 2
