"""A broken ``CRMSYNC_MAPPING_FILE`` stops every command at start: two lines, exit 2, no trace.

The whole file is checked, every CRM's sections included: an error in ``[hubspot...]`` stops a
Salesforce-only run before it reads anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.cli import clean_env, run_crmsync, sandbox_settings

BAD_FILES = {
    "toml syntax": ("[salesforce.Account\n", "not valid TOML"),
    "unknown crm": ('[pipedrive.deals.fields.x]\ncolumn = "name"\n', "pipedrive: unknown CRM"),
    "unknown object": (
        '[hubspot.tickets.fields.x]\ncolumn = "name"\n',
        "hubspot.tickets: unknown object",
    ),
    "unknown field": (
        '[salesforce.Account.fields.Industy]\ndirection = "none"\n',
        "salesforce.Account.fields.Industy.column: required for a field that has no default "
        "mapping (did you mean 'Industry'?)",
    ),
    "unknown column": (
        '[hubspot.companies.fields.x]\ncolumn = "nope"\n',
        "hubspot.companies.fields.x.column: table 'accounts' has no column 'nope'",
    ),
    "bad converter": (
        '[hubspot.deals.fields.x]\ncolumn = "amount"\nconvert = "money"\n'
        '[hubspot.deals.fields.amount]\ndirection = "none"\n',
        "hubspot.deals.fields.x.convert",
    ),
    "wrong type": (
        "[hubspot.companies.fields.name]\noptional = 'yes'\n",
        "hubspot.companies.fields.name.optional: expected a bool",
    ),
}


def assert_clear_usage_error(stderr: str, returncode: int, *needles: str) -> None:
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, stderr
    for needle in needles:
        assert needle in lines[0], stderr


@pytest.mark.parametrize(("text", "expected"), BAD_FILES.values(), ids=list(BAD_FILES))
def test_each_kind_of_mapping_error_is_two_lines_and_exit_2(
    text: str, expected: str, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "map.toml").write_text(text, encoding="utf-8")
    env = clean_env(database_url=database_url, mapping_file="map.toml")
    done = run_crmsync("db", "current", env=env, cwd=tmp_path)
    assert_clear_usage_error(done.stderr, done.returncode, "map.toml", expected)


def test_a_missing_mapping_file_is_named(database_url: str, tmp_path: Path) -> None:
    env = clean_env(database_url=database_url, mapping_file="nowhere.toml")
    done = run_crmsync("sync", "run", env=env, cwd=tmp_path)
    assert_clear_usage_error(done.stderr, done.returncode, "nowhere.toml", "not found")


def test_a_hubspot_mistake_stops_a_salesforce_run_before_it_reads(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "map.toml").write_text(BAD_FILES["unknown column"][0], encoding="utf-8")
    with Sandbox(SandboxConfig(accounts=3, hs_rate_limits=False)) as sb:
        env = {
            **clean_env(database_url=database_url, mapping_file="map.toml"),
            **sandbox_settings(sb),
        }
        done = run_crmsync("sync", "run", "--crm", "salesforce", env=env, cwd=tmp_path)
        calls = sb.control("GET", "/stats")["calls_total"]
    assert_clear_usage_error(
        done.stderr, done.returncode, "map.toml", "hubspot.companies.fields.x.column"
    )
    assert done.stdout == ""
    assert not calls.get("salesforce"), calls  # stopped at start, not after a pass
