"""``crmsync crm setup`` against the sandbox, as a user runs it (subprocess, JSON output).

The sandbox starts without crmsync's write-back fields and external ids
(``without_writeback_fields``); each test gets its own, since setup changes the org.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.cli import clean_env, run_crmsync, sandbox_settings


def _env(sb: Sandbox, tmp_path: Path) -> dict[str, str]:
    env = clean_env(database_url=f"sqlite:///{tmp_path / 'setup.db'}")
    env.update(sandbox_settings(sb))
    return env


def _sandbox(**kw: Any) -> Sandbox:
    return Sandbox(SandboxConfig(accounts=3, without_writeback_fields=True, **kw))


def test_dry_run_then_setup_then_check_then_nothing_to_do(tmp_path: Path) -> None:
    with _sandbox() as sb:
        env = _env(sb, tmp_path)
        dry = run_crmsync("crm", "setup", "--dry-run", env=env, cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)["crms"]
        assert plan["salesforce"]["status"] == plan["hubspot"]["status"] == "planned"
        planned = {p["field"]: p for p in plan["salesforce"]["planned"]}
        assert planned["Account.Health_Score__c"]["type"] == "Number"
        assert (
            planned["Account.Health_Score__c"]["precision"],
            planned["Account.Health_Score__c"]["scale"],
        ) == (3, 0)
        assert planned["Account.Tier__c"]["options"] == ["key", "high", "low", "tech"]
        assert {p["field"] for p in plan["hubspot"]["planned"]} >= {
            "companies.crmsync_health_band",
            "notes.crmsync_id",
        }
        assert plan["salesforce"]["created"] == []

        check = run_crmsync("crm", "check", env=env, cwd=tmp_path)
        assert check.returncode == 2  # the dry run created nothing

        done = run_crmsync("crm", "setup", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)["crms"]
        assert report["salesforce"]["status"] == report["hubspot"]["status"] == "done"
        assert len(report["salesforce"]["created"]) == 12
        assert len(report["hubspot"]["created"]) == 13
        assert "Traceback" not in done.stderr

        check = run_crmsync("crm", "check", env=env, cwd=tmp_path)
        assert check.returncode == 0, check.stderr

        again = run_crmsync("crm", "setup", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)["crms"]
        assert report["salesforce"]["status"] == report["hubspot"]["status"] == "ready"
        assert report["salesforce"]["planned"] == report["hubspot"]["planned"] == []


def test_refused_tooling_prints_exactly_what_to_create_and_exits_2(tmp_path: Path) -> None:
    with _sandbox(sf_customize_application=False) as sb:
        env = _env(sb, tmp_path)
        done = run_crmsync("crm", "setup", "--crm", "salesforce", env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("crmsync: ")]
        assert len(lines) == 13
        assert lines[0] == (
            "crmsync: salesforce refused to create fields: INSUFFICIENT_ACCESS_OR_READONLY: "
            "insufficient access rights on object id: the user needs the Customize Application "
            "permission to create custom fields"
        )
        assert (
            "crmsync: salesforce Account.Health_Score__c: missing; the CRM refused to create it "
            "(INSUFFICIENT_ACCESS_OR_READONLY); fix: create custom field "
            "Account.Health_Score__c (Number, length 3, decimal places 0, label "
            '"Health Score") and give the integration user Edit access to it'
        ) in lines
        assert any("Account.Health_Reasons__c (Text, length 255," in line for line in lines)
        assert any(
            "Opportunity.Crmsync_Id__c (Text, length 36, External ID, Unique," in line
            for line in lines
        )
        report = json.loads(done.stdout)["crms"]["salesforce"]
        assert report["refused"].startswith("INSUFFICIENT_ACCESS_OR_READONLY: ")
        assert report["status"] == "action_needed"
        assert report["created"] == []
        assert {m["field"] for m in report["manual"]} >= {"Account.Renewal_Risk__c"}


def test_read_only_target_is_reported_the_same_way(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        "[hubspot.companies.fields.hs_lastmodifieddate]\n"
        'column = "health_computed_at"\nconvert = "datetime"\ndirection = "cs_to_crm"\n'
    )
    with Sandbox(SandboxConfig(accounts=3)) as sb:
        env = _env(sb, tmp_path)
        env["CRMSYNC_MAPPING_FILE"] = str(mapping)
        done = run_crmsync("crm", "setup", "--crm", "hubspot", env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert (
            "crmsync: hubspot companies.hs_lastmodifieddate: written by crmsync; not updateable; "
            "fix: companies.hs_lastmodifieddate is read-only in HubSpot: map another property in "
            "CRMSYNC_MAPPING_FILE"
        ) in done.stderr
        report = json.loads(done.stdout)["crms"]["hubspot"]
        assert [m["problem"] for m in report["manual"]] == ["not_updateable"]
        # the write-back properties are there; only external ids the portal lacks get created
        assert all(name.endswith(".crmsync_id") for name in report["created"])


def test_unknown_crm_exits_2(tmp_path: Path) -> None:
    env = clean_env(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    done = run_crmsync("crm", "setup", "--crm", "pipedrive", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "expected salesforce or hubspot" in done.stderr


def test_sandbox_flags_start_an_org_to_set_up() -> None:
    from app.cli.sandbox import build_config

    common: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "seed": 1,
        "accounts": 1,
        "state_dir": None,
        "hubspot_webhook_url": None,
        "salesforce_webhook_url": None,
        "no_rate_limits": False,
        "faults": [],
        "custom_fields": [],
    }
    plain = build_config(**common)
    assert (plain.without_writeback_fields, plain.sf_customize_application) == (False, True)
    bare = build_config(**common, without_writeback_fields=True, no_customize_application=True)
    assert (bare.without_writeback_fields, bare.sf_customize_application) == (True, False)
