"""``crmsync signals import FILE --kind KIND`` as a user runs it (issue #18 item 1): the same
validation and storage as the API, errors with line numbers, exit codes 0 / 2 / 3, a file
imported twice stored once, and an import killed with kill -9 finished by running it again with
nothing lost and nothing twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select

from app.db.engine import make_engine, make_session_factory
from app.db.models import Account, SupportTicket, UsageSnapshot
from tests.support.cli import clean_env, run_crmsync


def seed_accounts(database_url: str, n: int) -> list[int]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s, s.begin():
            made = [
                Account(name=f"C{i}", domain=f"c{i}.example.com", hs_id=str(9000 + i))
                for i in range(n)
            ]
            s.add_all(made)
            s.flush()
            return [a.id for a in made]
    finally:
        engine.dispose()


def count(database_url: str, model: object) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(model)) or 0)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_csv_rows_stored_with_line_numbers_for_bad_ones_and_twice_is_once(
    database_url: str, tmp_path: Path
) -> None:
    seed_accounts(database_url, 3)
    env = clean_env(database_url=database_url, log_level="WARNING")
    csv = tmp_path / "usage.csv"
    csv.write_text(
        "domain,hs_id,observed_on,active_users_30d,licensed_seats,logins_30d\n"
        "c0.example.com,,2026-03-01,5,10,40\n"
        ",9001,2026-03-01,x,10,40\n"  # line 3: bad number
        "\n"
        '"c2.example.com",,2026-03-01,7,,31\n'
        "nowhere.example.com,,2026-03-01,7,,31\n"  # line 6: unknown account
        ",9001,2026-03-02,4,10,12\n",
        encoding="utf-8",
    )
    first = run_crmsync("signals", "import", str(csv), "--kind", "usage", env=env, cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["rows"], summary["stored"], summary["rejected"]) == (5, 3, 2)
    assert summary["created"] == 3
    lines = first.stderr.strip().splitlines()
    assert lines[0].startswith("line 3: active_users_30d: Input should be a valid integer")
    assert lines[1] == "line 6: domain: no such account (got 'nowhere.example.com')"
    assert "Traceback" not in first.stderr
    again = run_crmsync("signals", "import", str(csv), "--kind", "usage", env=env, cwd=tmp_path)
    assert again.returncode == 3
    assert (json.loads(again.stdout)["created"], json.loads(again.stdout)["updated"]) == (0, 3)
    assert count(database_url, UsageSnapshot) == 3

    good = tmp_path / "tickets.csv"
    good.write_text(
        "hs_id,external_id,opened_at,priority,escalated\n"
        "9000,Z-1,2026-03-01T10:00:00Z,P1,true\n"
        "9002,Z-2,2026-03-02 11:00:00,P3,no\n",
        encoding="utf-8",
    )
    ok = run_crmsync("signals", "import", str(good), "--kind", "tickets", env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stored"] == 2
    assert count(database_url, SupportTicket) == 2


def test_a_file_that_cannot_be_imported_is_exit_2_and_stores_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """(Every header problem is table-tested in tests/unit/test_signals_import.py.)"""
    seed_accounts(database_url, 1)
    env = clean_env(database_url=database_url)
    path = tmp_path / "colour.csv"
    path.write_text(
        "domain,observed_on,active_users_30d,colour\nc0.example.com,2026-03-01,3,red\n",
        encoding="utf-8",
    )
    done = run_crmsync("signals", "import", str(path), "--kind", "usage", env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "'colour' is not a usage column" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 2
    missing = run_crmsync(
        "signals", "import", str(tmp_path / "nope.csv"), "--kind", "usage", env=env, cwd=tmp_path
    )
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr + done.stderr
    assert count(database_url, UsageSnapshot) == 0


# The real command with batches of 500 rows and a pause after each commit, so that the kill
# lands between and inside batches.
SLOW_IMPORT = """
import sys, time
import app.cli.signals_import as m
real = m.ingest
def slow(*args, **kwargs):
    done = real(*args, **kwargs)
    time.sleep(0.2)
    return done
m.ingest = slow
batches = m.read_batches
m.read_batches = lambda reader, names, size=0: batches(reader, names, 500)
sys.argv = ["crmsync", "signals", "import", sys.argv[1], "--kind", "usage"]
from app.cli.main import main
main()
"""


def test_kill_9_mid_import_then_rerun_stores_everything_once(
    database_url: str, tmp_path: Path
) -> None:
    ids = seed_accounts(database_url, 100)
    rows = ["account_id,observed_on,active_users_30d,logins_30d"]
    start = date(2026, 1, 1)
    for day in range(50):
        for account_id in ids:
            rows.append(f"{account_id},{start + timedelta(days=day)},{day % 9},{day}")
    path = tmp_path / "usage.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    total = len(rows) - 1
    env = clean_env(database_url=database_url, log_level="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_IMPORT, str(path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while count(database_url, UsageSnapshot) < 1_000:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no batch committed within 60 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    stored = count(database_url, UsageSnapshot)
    assert 1_000 <= stored < total
    assert stored % 500 == 0  # a batch is all or nothing

    again = run_crmsync("signals", "import", str(path), "--kind", "usage", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["updated"]) == (total - stored, stored)
    assert count(database_url, UsageSnapshot) == total
