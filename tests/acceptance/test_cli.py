"""The ``crmsync`` commands as a user runs them: real processes, real sandbox, real database.

Covers what the README promises: the JSON summary off a terminal, exit codes (0 ok, 1 a pass
failed, 2 bad input), clear messages for bad input, and ``crmsync demo`` end to end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.cli import run_crmsync

# One subprocess runner for every CLI test (tests/support/cli.py).
crmsync = run_crmsync


def base_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["CRMSYNC_DATABASE_URL"] = database_url
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=25, hs_rate_limits=False)) as sb:
        yield sb


def sandbox_env(sb: Sandbox, database_url: str) -> dict[str, str]:
    env = base_env(database_url)
    sf, hs = sb.info.salesforce, sb.info.hubspot
    env.update(
        {
            "CRMSYNC_SALESFORCE_INSTANCE_URL": sf.instance_url,
            "CRMSYNC_SALESFORCE_CLIENT_ID": sf.client_id,
            "CRMSYNC_SALESFORCE_CLIENT_SECRET": sf.client_secret,
            "CRMSYNC_HUBSPOT_BASE_URL": hs.base_url,
            "CRMSYNC_HUBSPOT_ACCESS_TOKEN": hs.access_token,
            "CRMSYNC_CA_BUNDLE": sb.info.ca_file,
        }
    )
    return env


def test_backfill_then_run_print_json_summaries(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(sandbox, database_url)
    done = crmsync("sync", "backfill", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    assert [r["object"] for r in runs] == ["Account", "Opportunity", "Note"]
    assert all(r["status"] == "succeeded" for r in runs)
    assert runs[0]["created"] == 25
    assert all(r["api_calls"] >= 1 for r in runs)

    again = crmsync("sync", "run", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    incremental = json.loads(again.stdout)["runs"]
    assert sum(r["created"] for r in incremental) == 0  # nothing new, nothing duplicated


def test_bad_input_is_a_clear_message_and_exit_2(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(sandbox, database_url)
    bad_date = crmsync(
        "sync", "backfill", "--crm", "salesforce", "--since", "last week", env=env, cwd=tmp_path
    )
    assert bad_date.returncode == 2
    assert "--since" in bad_date.stderr
    bad_crm = crmsync("sync", "backfill", "--crm", "pipedrive", env=env, cwd=tmp_path)
    assert bad_crm.returncode == 2
    assert "pipedrive" in bad_crm.stderr
    bad_object = crmsync(
        "sync", "backfill", "--crm", "hubspot", "--object", "tickets", env=env, cwd=tmp_path
    )
    assert bad_object.returncode == 2
    assert "tickets" in bad_object.stderr
    assert "companies" in bad_object.stderr  # says what is known


def test_unconfigured_crm_and_unsafe_prod_settings_exit_2(
    database_url: str, tmp_path: Path
) -> None:
    env = base_env(database_url)
    nothing = crmsync("sync", "run", env=env, cwd=tmp_path)
    assert nothing.returncode == 2
    assert "no CRM configured" in nothing.stderr
    prod = crmsync("db", "current", env={**env, "CRMSYNC_ENV": "prod"}, cwd=tmp_path)
    assert prod.returncode == 2
    assert "CRMSYNC_ENV=prod" in prod.stderr


def test_rejected_token_fails_the_pass_exits_2_and_names_the_setting(
    database_url: str, tmp_path: Path
) -> None:
    with Sandbox(SandboxConfig(accounts=5)) as sb:
        sb.control("POST", "/tokens/expire", json={"crm": "hubspot"})
        env = sandbox_env(sb, database_url)
        failed = crmsync("sync", "run", "--crm", "hubspot", env=env, cwd=tmp_path)
    assert failed.returncode == 2  # a credential to fix: configuration, not a failed run
    runs = json.loads(failed.stdout)["runs"]
    assert runs[0]["status"] == "failed"
    assert "401" in runs[0]["error"]
    assert "rejected CRMSYNC_HUBSPOT_ACCESS_TOKEN" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_demo_runs_end_to_end_in_a_fresh_directory(tmp_path: Path) -> None:
    env = base_env("sqlite:///./var/crmsync.db")
    demo = crmsync("demo", "--accounts", "30", env=env, cwd=tmp_path, timeout=300)
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "var" / "demo.db").is_file()  # its own database, not CRMSYNC_DATABASE_URL
    assert not (tmp_path / "var" / "crmsync.db").exists()
    assert '"accounts": 60' in demo.stderr  # 30 from each CRM
    assert 'open sync errors": 0' in demo.stderr
