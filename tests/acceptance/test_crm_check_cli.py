"""``crmsync crm check`` against the sandbox, as a user runs it (subprocess, JSON output)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.cli import clean_env, run_crmsync, sandbox_settings


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=5, hs_rate_limits=True)) as sb:
        yield sb


def _env(sb: Sandbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = clean_env(database_url=f"sqlite:///{tmp_path / 'check.db'}")
    env.update(sandbox_settings(sb))
    env.update({f"CRMSYNC_{k.upper()}": v for k, v in extra.items()})
    return env


def test_ready_org_reports_every_check_and_exits_0(sandbox: Sandbox, tmp_path: Path) -> None:
    done = run_crmsync("crm", "check", env=_env(sandbox, tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["crms"]
    assert set(report) == {"salesforce", "hubspot"}
    sf = {(f["check"], f["subject"]): f for f in report["salesforce"]["findings"]}
    assert sf[("API version", "salesforce")]["detail"].startswith("59.0")
    assert sf[("Bulk API 2.0", "salesforce")]["detail"] == "available"
    assert " of 1,000,000 used" in sf[("daily API limit", "salesforce")]["detail"]
    assert {s for (c, s) in sf if c == "object"} == {"Account", "Opportunity", "Note"}
    hs = {(f["check"], f["subject"]): f for f in report["hubspot"]["findings"]}
    # a private app: the daily budget comes from the rate-limit headers
    assert " of 1,000,000 used" in hs[("daily API limit", "hubspot")]["detail"]
    assert all(f["status"] == "ok" for f in report["hubspot"]["findings"])


def test_missing_and_read_only_fields_exit_2_with_the_fix(sandbox: Sandbox, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        "[salesforce.Account.fields.Churn_Risk__c]\n"
        'column = "renewal_risk"\ndirection = "cs_to_crm"\n'
        "[hubspot.companies.fields.hs_object_id]\n"
        'column = "health_band"\ndirection = "cs_to_crm"\n'
    )
    env = _env(sandbox, tmp_path, mapping_file=str(mapping))
    done = run_crmsync("crm", "check", env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert (
        "crmsync: salesforce Account.Churn_Risk__c: written back by crmsync; not found or not "
        'visible; fix: create it (docs/connect-salesforce.md "Fields")' in done.stderr
    )
    assert "crmsync: hubspot companies.hs_object_id: written back by crmsync; not updateable" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)["crms"]
    assert report["salesforce"]["status"] == report["hubspot"]["status"] == "missing"


def test_unreachable_crm_exits_1_in_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    dead = "https://127.0.0.1:1"
    env = _env(sandbox, tmp_path, salesforce_instance_url=dead, salesforce_login_url=dead)
    done = run_crmsync("crm", "check", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "unreachable at https://127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_or_unconfigured_crm_exits_2(sandbox: Sandbox, tmp_path: Path) -> None:
    done = run_crmsync(
        "crm", "check", "--crm", "pipedrive", env=_env(sandbox, tmp_path), cwd=tmp_path
    )
    assert done.returncode == 2
    assert "expected salesforce or hubspot" in done.stderr
    env = clean_env(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    done = run_crmsync("crm", "check", "--crm", "hubspot", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "hubspot is not configured" in done.stderr
