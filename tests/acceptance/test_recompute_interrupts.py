"""``crmsync health recompute`` killed with kill -9 mid-run (issue #18 item 6): each chunk is all
or nothing, the next run takes the dead run's lease over at once, closes its row as abandoned,
and computes exactly the accounts the killed run had not committed: no snapshot and no event
twice, nothing lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from app.db.engine import make_engine, make_session_factory
from app.db.models import Account, AccountEvent, HealthSnapshot, JobLease, SyncRun, UsageSnapshot
from tests.support.cli import clean_env, run_crmsync

ACCOUNTS = 200
CHUNK = 20

# The real command, with small chunks and a pause inside each chunk's transaction (after its
# writes, before its commit), so the kill lands mid-run and mid-transaction.
SLOW_RECOMPUTE = f"""
import sys, time
import app.wiring.recompute as w
w.CHUNK_SIZE = {CHUNK}
write = w.write_chunk
def slow(*args, **kwargs):
    done = write(*args, **kwargs)
    time.sleep(0.25)
    return done
w.write_chunk = slow
sys.argv = ["crmsync", "health", "recompute", "--all"]
from app.cli.main import main
main()
"""


def seed(database_url: str) -> None:
    today = datetime.now(UTC).date()
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s, s.begin():
            for i in range(ACCOUNTS):
                a = Account(
                    name=f"A{i}",
                    arr=Decimal(1_000 * (i + 1)),
                    licensed_seats=10,
                    contract_end_on=today + timedelta(days=i),
                )
                s.add(a)
                s.flush()
                s.add(
                    UsageSnapshot(
                        account_id=a.id,
                        observed_on=today - timedelta(days=1),
                        active_users_30d=i % 10,
                        logins_30d=5 * (i % 10),
                    )
                )
    finally:
        engine.dispose()


def count(database_url: str, stmt: object) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(stmt) or 0)  # type: ignore[call-overload]
    finally:
        engine.dispose()


def computed(database_url: str) -> int:
    stmt = select(func.count()).select_from(Account).where(Account.health_computed_at.is_not(None))
    return count(database_url, stmt)


def test_kill_9_mid_recompute_then_rerun_finishes_without_duplicates(
    database_url: str, tmp_path: Path
) -> None:
    seed(database_url)
    env = clean_env(database_url=database_url, log_level="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RECOMPUTE],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while computed(database_url) < 2 * CHUNK:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chunk committed within 60 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    done = computed(database_url)
    assert 2 * CHUNK <= done < ACCOUNTS
    assert done % CHUNK == 0  # a chunk is all or nothing
    assert count(database_url, select(func.count()).select_from(HealthSnapshot)) == done
    assert count(database_url, select(func.count()).select_from(JobLease)) == 1  # left behind

    started = time.monotonic()
    again = run_crmsync("health", "recompute", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 30  # the dead holder's lease is taken over at once
    summary = json.loads(again.stdout)
    assert summary["selected"] == ACCOUNTS - done
    assert summary["status"] == "succeeded"

    assert computed(database_url) == ACCOUNTS
    assert count(database_url, select(func.count()).select_from(HealthSnapshot)) == ACCOUNTS
    tier_events = select(func.count()).where(AccountEvent.kind == "tier_changed")
    assert count(database_url, tier_events) == ACCOUNTS  # one per account: none twice
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                select(SyncRun.status, SyncRun.error)
                .where(SyncRun.kind == "recompute")
                .order_by(SyncRun.id)
            ).all()
    finally:
        engine.dispose()
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert runs[0].error.startswith("abandoned")

    third = run_crmsync("health", "recompute", env=env, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["selected"] == 0
