"""The login flows through real ``crmsync`` processes (issue #16 items 1-2): each flow syncs,
a refused grant exits 2 naming the setting, an unreachable login host exits 1, and no token or
secret ever reaches the output, even at DEBUG."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync_sandbox import Sandbox, SandboxConfig
from tests.acceptance.test_cli import base_env, crmsync

SF_TOKEN = re.compile(r"00D[0-9A-Za-z]{12}![0-9A-Za-z_\-.]{20,}")  # Salesforce access tokens
HS_TOKEN = re.compile(r"CN[0-9A-Za-z_\-]{100,}")  # the sandbox's HubSpot OAuth access tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=4, hs_rate_limits=False)) as sb:
        yield sb


def salesforce_env(sb: Sandbox, database_url: str, auth: str) -> dict[str, str]:
    sf = sb.info.salesforce
    env = base_env(database_url)
    env |= {
        "CRMSYNC_LOG_LEVEL": "DEBUG",
        "CRMSYNC_CA_BUNDLE": sb.info.ca_file,
        "CRMSYNC_SALESFORCE_AUTH": auth,
        "CRMSYNC_SALESFORCE_LOGIN_URL": sf.login_url,
        "CRMSYNC_SALESFORCE_CLIENT_ID": sf.client_id,
    }
    if auth == "jwt":
        env["CRMSYNC_SALESFORCE_USERNAME"] = sf.username
        env["CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE"] = str(sf.jwt_private_key_file)
    else:
        env["CRMSYNC_SALESFORCE_CLIENT_SECRET"] = sf.client_secret
    if auth == "refresh_token":
        env["CRMSYNC_SALESFORCE_REFRESH_TOKEN"] = sf.refresh_token
    return env


def secrets_of(sb: Sandbox) -> list[str]:
    sf, hs = sb.info.salesforce, sb.info.hubspot
    key_body = Path(str(sf.jwt_private_key_file)).read_text().splitlines()[1]
    return [
        sf.client_secret,
        sf.refresh_token,
        sf.access_token,
        hs.client_secret,
        hs.refresh_token,
        hs.access_token,
        key_body,
    ]


def assert_no_secret(sb: Sandbox, *outputs: str) -> None:
    for text in outputs:
        for secret in secrets_of(sb):
            assert secret not in text
        assert SF_TOKEN.search(text) is None, SF_TOKEN.search(text)
        assert HS_TOKEN.search(text) is None


@pytest.mark.parametrize("auth", ["jwt", "refresh_token", "client_credentials"])
def test_each_salesforce_flow_syncs_and_logs_no_secret(
    sandbox: Sandbox, database_url: str, tmp_path: Path, auth: str
) -> None:
    env = salesforce_env(sandbox, database_url, auth)
    result = crmsync("sync", "run", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert runs[0]["created"] == 4
    issued = [json.loads(line) for line in result.stderr.splitlines() if "token issued" in line]
    assert issued, result.stderr
    assert {line["grant"] for line in issued} == {auth}
    assert {line["instance_url"] for line in issued} == {sandbox.info.salesforce.instance_url}
    assert_no_secret(sandbox, result.stdout, result.stderr)


def test_refused_refresh_token_exits_2_naming_the_setting(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = salesforce_env(sandbox, database_url, "refresh_token")
    env["CRMSYNC_SALESFORCE_REFRESH_TOKEN"] = "5Aep861-revoked-refresh-token"
    result = crmsync("sync", "run", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "invalid_grant" in result.stderr
    assert "expired access/refresh token" in result.stderr
    assert "CRMSYNC_SALESFORCE_REFRESH_TOKEN" in result.stderr
    assert "5Aep861-revoked-refresh-token" not in result.stderr + result.stdout
    assert_no_secret(sandbox, result.stdout, result.stderr)


def test_unreachable_login_host_exits_1(database_url: str, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    env = base_env(database_url) | {
        "CRMSYNC_SALESFORCE_AUTH": "refresh_token",
        "CRMSYNC_SALESFORCE_LOGIN_URL": url,
        "CRMSYNC_SALESFORCE_CLIENT_ID": "cid",
        "CRMSYNC_SALESFORCE_REFRESH_TOKEN": "5Aep861-unused",
        "CRMSYNC_SYNC__MAX_RETRIES": "1",
        "CRMSYNC_SYNC__RETRY_MAX_WAIT_SECONDS": "0.01",
    }
    result = crmsync("sync", "run", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the CRM may come back: a failed run
    error = json.loads(result.stdout)["runs"][0]["error"]
    assert f"salesforce is unreachable at {url}: check CRMSYNC_SALESFORCE_LOGIN_URL" in error


def test_half_configured_flow_exits_2_naming_the_missing_setting(
    database_url: str, tmp_path: Path
) -> None:
    env = base_env(database_url) | {
        "CRMSYNC_SALESFORCE_AUTH": "jwt",
        "CRMSYNC_SALESFORCE_CLIENT_ID": "cid",
        "CRMSYNC_SALESFORCE_USERNAME": "integration@acme.com",
    }
    result = crmsync("sync", "run", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def hubspot_env(sb: Sandbox, database_url: str) -> dict[str, str]:
    hs = sb.info.hubspot
    return base_env(database_url) | {
        "CRMSYNC_LOG_LEVEL": "DEBUG",
        "CRMSYNC_CA_BUNDLE": sb.info.ca_file,
        "CRMSYNC_HUBSPOT_AUTH": "oauth",
        "CRMSYNC_HUBSPOT_BASE_URL": hs.base_url,
        "CRMSYNC_HUBSPOT_CLIENT_ID": hs.client_id,
        "CRMSYNC_HUBSPOT_CLIENT_SECRET": hs.client_secret,
        "CRMSYNC_HUBSPOT_REFRESH_TOKEN": hs.refresh_token,
    }


def test_hubspot_oauth_app_syncs_and_logs_no_secret(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = hubspot_env(sandbox, database_url)
    result = crmsync("sync", "run", "--crm", "hubspot", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runs"][0]["created"] == 4
    assert "hubspot token refreshed" in result.stderr
    assert_no_secret(sandbox, result.stdout, result.stderr)


def test_hubspot_bad_refresh_token_exits_2(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = hubspot_env(sandbox, database_url) | {"CRMSYNC_HUBSPOT_REFRESH_TOKEN": "na1-gone-1234"}
    result = crmsync("sync", "run", "--crm", "hubspot", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "BAD_REFRESH_TOKEN" in result.stderr
    assert "CRMSYNC_HUBSPOT_REFRESH_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert "na1-gone-1234" not in result.stderr + result.stdout
    assert_no_secret(sandbox, result.stdout, result.stderr)
