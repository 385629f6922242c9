"""Clear errors instead of tracebacks (issue #14, item 7): real ``crmsync`` processes.

Every case below must exit 2 (bad input or configuration) with a line or two that name the
problem and the fix, and never print a traceback unless ``CRMSYNC_DEBUG=1``.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from sqlalchemy import text

from app.db.engine import make_engine
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.acceptance.test_cli import base_env, crmsync, sandbox_env

DB_COMMANDS = [
    ("db", "upgrade"),
    ("db", "current"),
    ("sync", "run"),
    ("sync", "backfill", "--crm", "hubspot"),
    ("serve", "--port", "1"),  # never binds: the database check comes first
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_usage_error(result: subprocess.CompletedProcess[str], *says: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    for words in says:
        assert words in result.stderr, result.stderr


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=3, hs_rate_limits=False)) as sb:
        yield sb


# -- CRMSYNC_DATABASE_URL --------------------------------------------------------------------


@pytest.mark.parametrize("command", DB_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://u:p@127.0.0.1/crm", "unsupported database 'mysql'"),
        (f"postgresql://postgres@127.0.0.1:{free_port()}/crmsync", "Connection refused"),
    ],
    ids=["syntax", "mysql", "refused"],
)
def test_bad_database_url_is_one_line_for_every_command(
    command: tuple[str, ...], url: str, says: str, tmp_path: Path
) -> None:
    result = crmsync(*command, env=base_env(url), cwd=tmp_path)
    assert_usage_error(result, says, "CRMSYNC_DATABASE_URL")


def test_unknown_postgres_database_is_named(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/crmsync_no_such_database_h14"
    result = crmsync("db", "upgrade", env=base_env(url), cwd=tmp_path)
    assert_usage_error(result, "crmsync_no_such_database_h14", "CRMSYNC_DATABASE_URL")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/crmsync"
    result = crmsync("db", "current", env={**base_env(url), "CRMSYNC_DEBUG": "1"}, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "DatabaseConfigError" in result.stderr


def test_sqlite_file_in_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "crmsync.db"
    result = crmsync("db", "upgrade", env=base_env(f"sqlite:///{missing}"), cwd=tmp_path)
    assert_usage_error(result, str(missing.parent), "does not exist")
    assert not missing.parent.exists()


def test_default_sqlite_folder_var_is_still_created(tmp_path: Path) -> None:
    result = crmsync("db", "upgrade", env=base_env("sqlite:///./var/crmsync.db"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "crmsync.db").is_file()


# -- schema not migrated / unknown revisions -----------------------------------------------


@pytest.mark.parametrize("command", [("sync", "run"), ("sync", "backfill", "--crm", "hubspot")])
def test_sync_before_db_upgrade_says_run_db_upgrade(
    command: tuple[str, ...], empty_database_url: str, tmp_path: Path
) -> None:
    env = {**base_env(empty_database_url), "CRMSYNC_HUBSPOT_ACCESS_TOKEN": "pat-na1-x"}
    result = crmsync(*command, env=env, cwd=tmp_path)
    assert_usage_error(result, "run `crmsync db upgrade`")


@pytest.mark.parametrize("command", [("upgrade", "zzz999"), ("downgrade", "zzz999")])
def test_unknown_target_revision_is_refused(
    command: tuple[str, ...], database_url: str, tmp_path: Path
) -> None:
    result = crmsync("db", *command, env=base_env(database_url), cwd=tmp_path)
    assert_usage_error(result, "unknown migration revision 'zzz999'", "known: 0001")


def test_relative_target_out_of_range_is_refused(database_url: str, tmp_path: Path) -> None:
    result = crmsync("db", "upgrade", "--", "-1", env=base_env(database_url), cwd=tmp_path)
    assert_usage_error(result, "cannot migrate to '-1'", "crmsync db current")


@pytest.mark.parametrize("command", [("db", "upgrade"), ("db", "current"), ("sync", "run")])
def test_database_stamped_with_an_unknown_revision_is_refused(
    command: tuple[str, ...], database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    env = {**base_env(database_url), "CRMSYNC_HUBSPOT_ACCESS_TOKEN": "pat-na1-x"}
    result = crmsync(*command, env=env, cwd=tmp_path)
    assert_usage_error(result, "revision 'f00d'", "newer crmsync")


# -- settings checked at load ----------------------------------------------------------------


def test_missing_ca_file_is_refused_at_startup(database_url: str, tmp_path: Path) -> None:
    env = {**base_env(database_url), "CRMSYNC_CA_BUNDLE": str(tmp_path / "gone.pem")}
    result = crmsync("sync", "run", env=env, cwd=tmp_path)
    assert_usage_error(result, "CRMSYNC_CA_BUNDLE", "no CA file at")


def test_unknown_log_level_is_refused(database_url: str, tmp_path: Path) -> None:
    env = {**base_env(database_url), "CRMSYNC_LOG_LEVEL": "chatty"}
    result = crmsync("db", "current", env=env, cwd=tmp_path)
    assert_usage_error(result, "CRMSYNC_LOG_LEVEL", "not a log level")


# -- the CRM: TLS, credentials, unreachable ----------------------------------------------------


@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
@pytest.mark.parametrize("ca_bundle", [None, certifi.where()], ids=["no-ca", "wrong-ca"])
def test_tls_failure_says_tls_and_names_the_ca_setting(
    sandbox: Sandbox, database_url: str, tmp_path: Path, crm: str, ca_bundle: str | None
) -> None:
    env = sandbox_env(sandbox, database_url)
    env.pop("CRMSYNC_CA_BUNDLE")
    if ca_bundle is not None:
        env["CRMSYNC_CA_BUNDLE"] = ca_bundle
    result = crmsync("sync", "run", "--crm", crm, env=env, cwd=tmp_path)
    assert_usage_error(result, "TLS", "CRMSYNC_CA_BUNDLE")
    assert "API version" not in result.stderr


def test_wrong_salesforce_client_secret_says_invalid_client(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = {**sandbox_env(sandbox, database_url), "CRMSYNC_SALESFORCE_CLIENT_SECRET": "wrong"}
    result = crmsync("sync", "run", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert_usage_error(result, "invalid_client", "CRMSYNC_SALESFORCE_CLIENT_SECRET")


@pytest.mark.parametrize(
    ("crm", "setting"),
    [
        ("salesforce", "CRMSYNC_SALESFORCE_ACCESS_TOKEN"),
        ("hubspot", "CRMSYNC_HUBSPOT_ACCESS_TOKEN"),
    ],
)
def test_bad_access_token_is_an_auth_error_naming_the_setting(
    sandbox: Sandbox, database_url: str, tmp_path: Path, crm: str, setting: str
) -> None:
    env = sandbox_env(sandbox, database_url)
    env.pop("CRMSYNC_SALESFORCE_CLIENT_ID")  # no client credentials to fall back on
    env.pop("CRMSYNC_SALESFORCE_CLIENT_SECRET")
    env[setting] = "not-a-valid-token"
    result = crmsync("sync", "run", "--crm", crm, env=env, cwd=tmp_path)
    assert_usage_error(result, f"rejected {setting}")
    assert all(run["status"] == "failed" for run in json.loads(result.stdout)["runs"])


def test_bad_access_token_with_client_credentials_refreshes_loudly(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = {
        **sandbox_env(sandbox, database_url),
        "CRMSYNC_SALESFORCE_ACCESS_TOKEN": "not-a-valid-token",
    }
    result = crmsync("sync", "run", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configured Salesforce access token rejected" in result.stderr
    assert "CRMSYNC_SALESFORCE_ACCESS_TOKEN" in result.stderr


def test_unreachable_crm_logs_each_retry_and_names_the_url(
    database_url: str, tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    env = {
        **base_env(database_url),
        "CRMSYNC_HUBSPOT_BASE_URL": url,
        "CRMSYNC_HUBSPOT_ACCESS_TOKEN": "pat-na1-x",
        "CRMSYNC_SYNC__MAX_RETRIES": "2",
        "CRMSYNC_SYNC__RETRY_MAX_WAIT_SECONDS": "0.01",
    }
    result = crmsync("sync", "run", "--crm", "hubspot", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # a run failed: the CRM may come back
    runs = json.loads(result.stdout)["runs"]
    assert len(runs) == 3  # each object is tried: companies, deals, notes
    retries = [json.loads(line) for line in result.stderr.splitlines() if "retrying" in line]
    assert [r["attempt"] for r in retries] == [1, 2] * len(runs)
    assert all(r["level"] == "warning" and r["wait_seconds"] <= 0.01 for r in retries)
    assert all("UNREACHABLE" in r["reason"] for r in retries)
    error = runs[0]["error"]
    assert f"hubspot is unreachable at {url}" in error
    assert "after 3 attempts" in error
