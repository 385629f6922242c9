"""``crmsync sync run --push``: the pull, then the push of each CRM whose pull succeeded, in one
command and one summary, through the sandbox (issue #17)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.core.types import CrmName
from app.db.cs_writes import stamp_cs_change
from app.db.engine import make_engine, make_session_factory
from app.db.models import Account
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.acceptance.test_cli import crmsync, sandbox_env


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=20, hs_rate_limits=False)) as sb:
        yield sb


def set_health(database_url: str, score: int) -> None:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s, s.begin():
            for account in s.scalars(select(Account).where(Account.deleted_at.is_(None))):
                account.health_score = score
                stamp_cs_change(account, ["health_score"], datetime.now(UTC) - timedelta(minutes=2))
    finally:
        engine.dispose()


@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
def test_sync_run_push_pulls_then_pushes_in_one_summary(
    sandbox: Sandbox, database_url: str, tmp_path: Path, crm: CrmName
) -> None:
    env = sandbox_env(sandbox, database_url)
    first = crmsync("sync", "run", "--crm", crm, "--push", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    kinds = [r["kind"] for r in summary["runs"]]
    assert kinds[0] == "pull"
    assert "push" in kinds
    assert kinds.index("push") > max(i for i, k in enumerate(kinds) if k == "pull")
    assert summary["push_errors"] == {}
    # Nothing written on the CS side yet: the push makes no call.
    assert sum(r["api_calls"] for r in summary["runs"] if r["kind"] == "push") == 0

    set_health(database_url, 77)
    second = crmsync("sync", "run", "--crm", crm, "--push", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    runs = json.loads(second.stdout)["runs"]
    pushes = [r for r in runs if r["kind"] == "push"]
    assert sum(r["updated"] for r in pushes) == 20
    # The next run's pull reads the pushed values back as echoes, and pushes nothing.
    third = crmsync("sync", "run", "--crm", crm, "--push", env=env, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    runs = json.loads(third.stdout)["runs"]
    (accounts,) = [
        r for r in runs if r["kind"] == "pull" and r["object"] in ("Account", "companies")
    ]
    assert accounts["updated"] == 0
    assert sum(r["api_calls"] for r in runs if r["kind"] == "push") == 0


def test_a_crm_whose_pull_failed_is_not_pushed_and_the_command_exits_1(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(sandbox, database_url)
    done = crmsync("sync", "run", "--crm", "hubspot", "--push", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    set_health(database_url, 66)
    sandbox.control(
        "PUT", "/faults", json={"routes": [{"match": "*/search", "unavailable": 1.0}], "seed": 1}
    )
    failed = crmsync("sync", "run", "--crm", "hubspot", "--push", env=env, cwd=tmp_path)
    assert failed.returncode == 1
    summary = json.loads(failed.stdout)
    assert [r for r in summary["runs"] if r["kind"] == "push"] == []
    assert summary["push_errors"]["hubspot"].startswith("not pushed: the pull of")
    sandbox.control("PUT", "/faults", json={"routes": []})
    again = crmsync("sync", "run", "--crm", "hubspot", "--push", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    pushes = [r for r in json.loads(again.stdout)["runs"] if r["kind"] == "push"]
    assert sum(r["updated"] for r in pushes) == 20
