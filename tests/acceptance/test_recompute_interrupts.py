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

import pytest
from sqlalchemy import func, select

from app.db.engine import make_engine, make_session_factory
from app.db.models import Account, AccountEvent, HealthSnapshot, JobLease, SyncRun, UsageSnapshot
from tests.support.cli import clean_env, run_crmsync

ACCOUNTS = 200
CHUNK = 20

# The real command, with small chunks (CRMSYNC_RECOMPUTE__CHUNK_SIZE) and a pause inside each
# chunk's transaction (after its writes, before its commit), so the kill lands mid-run and
# mid-transaction. With workers, the chunks run in forked worker processes (which inherit the
# pause); MIN_CHUNK is lowered so 200 accounts are worth two workers.
SLOW_RECOMPUTE = """
import sys, time
import app.wiring.recompute as w
import app.wiring.recompute_chunk as c
w.MIN_CHUNK = 10
write = c.write_chunk
def slow(*args, **kwargs):
    done = write(*args, **kwargs)
    time.sleep(0.25)
    return done
c.write_chunk = slow
sys.argv = ["crmsync", "health", "recompute", "--all"]
from app.cli.main import main
main()
"""


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    """No such process any more (or only its zombie, which writes nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


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


def start_slow_recompute(
    database_url: str, tmp_path: Path, workers: int, *, until: int
) -> tuple[dict[str, str], subprocess.Popen[str]]:
    """Seed, start the slow command with ``workers``, and return (its environment, the
    process) once ``until`` accounts are committed, mid-run."""
    seed(database_url)
    env = clean_env(database_url=database_url, log_level="WARNING")
    env["CRMSYNC_RECOMPUTE__CHUNK_SIZE"] = str(CHUNK)
    env["CRMSYNC_RECOMPUTE__WORKERS"] = str(workers)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RECOMPUTE],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while computed(database_url) < until:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chunk committed within 60 s"
        time.sleep(0.05)
    return env, proc


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_mid_recompute_then_rerun_finishes_without_duplicates(
    database_url: str, tmp_path: Path, workers: int
) -> None:
    env, proc = start_slow_recompute(database_url, tmp_path, workers, until=2 * CHUNK)
    helpers = children_of(proc.pid)
    assert len(helpers) == (workers if workers > 1 else 0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # The workers die with the command (none goes on writing on its own).
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in helpers):
        assert time.monotonic() < deadline, "a worker outlived the killed command"
        time.sleep(0.05)

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
    assert summary["workers"] == 1  # unpatched, fewer than 1,000 accounts stay in-process

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


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_mid_recompute_stops_cleanly_and_the_rerun_resumes(
    database_url: str, tmp_path: Path, workers: int
) -> None:
    env, proc = start_slow_recompute(database_url, tmp_path, workers, until=CHUNK)
    helpers = children_of(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    summary = json.loads(out)
    assert summary["status"] == "cancelled"
    assert summary["workers"] == workers
    assert all(gone(pid) for pid in helpers)
    done = computed(database_url)
    assert done % CHUNK == 0
    assert done < ACCOUNTS
    assert summary["changed"] == done  # the summary counts exactly the committed chunks

    again = run_crmsync("health", "recompute", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["selected"] == ACCOUNTS - done
    assert computed(database_url) == ACCOUNTS
    assert count(database_url, select(func.count()).select_from(HealthSnapshot)) == ACCOUNTS
