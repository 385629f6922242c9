"""``crmsync sync backfill`` stopped mid-run, as ``docker stop`` (SIGTERM) or the OOM killer
(kill -9) do it, then run again at once: the rerun starts immediately, resumes and completes
with no duplicates (issue #14 item 1).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.db.engine import make_engine
from app.db.models import Account, JobLease, SyncRun
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.acceptance.test_cli import crmsync, sandbox_env

ACCOUNTS = 600  # three Salesforce pages of 200


@pytest.fixture
def slow_sandbox() -> Iterator[Sandbox]:
    """Salesforce queries take 0.5 s each, so a backfill is still running when it is stopped."""
    with Sandbox(SandboxConfig(accounts=ACCOUNTS, hs_rate_limits=False)) as sb:
        rule = {"match": "GET /services/*", "slow_ms": 500}
        sb.control("PUT", "/faults", json={"routes": [rule], "seed": 1})
        yield sb


def count(database_url: str, model: type[Any]) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def start_and_stop_after_first_page(
    env: dict[str, str], cwd: Path, database_url: str, sig: signal.Signals
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "sync", "backfill", "--crm", "salesforce"],
        env={**env, "CRMSYNC_SYNC__PAGE_SIZE": "200"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while count(database_url, Account) == 0:  # the first page is committed
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no page committed within 60 s"
        time.sleep(0.1)
    proc.send_signal(sig)
    return proc


def rerun_completes_without_duplicates(
    sb: Sandbox, env: dict[str, str], cwd: Path, database_url: str
) -> list[dict[str, object]]:
    sb.control("PUT", "/faults", json={"routes": []})
    again = crmsync("sync", "backfill", "--crm", "salesforce", env=env, cwd=cwd)
    assert again.returncode == 0, again.stderr
    runs = json.loads(again.stdout)["runs"]
    assert [r["status"] for r in runs] == ["succeeded"] * 3  # started at once: no lease wait
    assert count(database_url, Account) == ACCOUNTS
    assert count(database_url, JobLease) == 0
    return runs


def test_sigterm_cancels_the_run_and_the_rerun_resumes_at_once(
    slow_sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(slow_sandbox, database_url)
    proc = start_and_stop_after_first_page(env, tmp_path, database_url, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 1, stderr
    assert "interrupted: run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)["runs"]
    assert [(r["object"], r["status"]) for r in summary] == [
        ("Account", "cancelled"),
        ("Opportunity", "cancelled"),
        ("Note", "cancelled"),
    ]
    assert "SIGTERM" in str(summary[0]["error"])
    assert summary[1]["run_id"] is None  # not started
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(SyncRun.object, SyncRun.status)).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("Account", "cancelled")]
    assert count(database_url, JobLease) == 0  # released on the way out
    committed = count(database_url, Account)

    runs = rerun_completes_without_duplicates(slow_sandbox, env, tmp_path, database_url)
    assert runs[0]["created"] == ACCOUNTS - committed  # resumed, not restarted


def test_kill_9_then_rerun_takes_the_dead_lease_over_at_once(
    slow_sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(slow_sandbox, database_url)
    proc = start_and_stop_after_first_page(env, tmp_path, database_url, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert count(database_url, JobLease) == 1  # left behind by the killed process

    rerun_completes_without_duplicates(slow_sandbox, env, tmp_path, database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            killed = conn.execute(
                select(SyncRun.status, SyncRun.error).order_by(SyncRun.id).limit(1)
            ).one()
    finally:
        engine.dispose()
    assert killed.status == "failed"
    assert str(killed.error).startswith("abandoned")
