"""Recompute benchmark: a full recompute of N accounts with 90 days of signals (issue #18 item 10).

For each database (SQLite, PostgreSQL) the bench generates, with bulk inserts of its own
(``app.db.bulk`` upserts: ``executemany`` on SQLite, ``COPY`` on PostgreSQL), N accounts and per
account on average 13 weekly usage snapshots, 2 support tickets, 1 NPS answer and 3 touchpoints
(100,000 accounts: 1.3M usage rows, 200,000 tickets, 100,000 NPS answers, 300,000 touchpoints).
Then, as separate processes measured from outside (wall time, peak RSS from ``wait4``):

* **floor**: ``python -m bench.recompute floor URL``: the same inputs read with one plain
  ``SELECT`` per table (the same rows and time windows the recompute reads, fetched whole), and
  the same number of output rows written with DB-API ``executemany`` (the accounts' computed
  columns, one snapshot per account, the events); no computing at all;
* ``crmsync health recompute --all`` with ``CRMSYNC_RECOMPUTE__WORKERS=1``: the full recompute in
  the command's own process (the baseline of the workers' gain); then its outputs are wiped
  (:func:`reset_outputs`) so the next run starts from the same state;
* ``crmsync health recompute --all``: the full recompute as configured by default (one worker
  process per core, at most 4);
* ``crmsync health recompute``: again with no new input (selects nothing).

Targets: <= 10 s per database, <= 2x the floor, the second run <= 1 s, peak RSS flat (the same
at 20,000 accounts as at 100,000: the recompute holds one chunk at a time).

Run: ``.venv/bin/python -m bench.recompute [--accounts N] [--db sqlite|postgresql]``;
``make bench`` runs it with ``--recompute-accounts`` (default 100,000).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from app.db import bulk
from app.db.base import Base
from app.db.migrate import upgrade
from bench.pull import drop_database, fresh_database

TODAY = datetime.now(UTC).date()
BATCH = 50_000


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _accounts(n: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        yield {
            "id": i,
            "name": f"Account {i}",
            "arr": Decimal(rng.choice((2_000, 8_000, 12_000, 30_000, 60_000, 150_000))),
            "licensed_seats": rng.choice((5, 10, 25, 50, 200)),
            "customer_since_on": TODAY - timedelta(days=rng.randint(20, 1500)),
            "contract_end_on": TODAY + timedelta(days=rng.randint(-30, 400)),
            "strategic_account": False,
        }


def _usage(n: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    row_id = 0
    for account in range(1, n + 1):
        seats = 50
        base = rng.randint(0, seats)
        dormant = rng.random() < 0.05
        for week in range(13):
            row_id += 1
            active = 0 if dormant else max(0, base + rng.randint(-5, 5))
            observed = TODAY - timedelta(days=1 + 7 * week)
            yield {
                "id": row_id,
                "account_id": account,
                "observed_on": observed,
                "active_users_30d": active,
                "licensed_seats": seats,
                "logins_30d": active * rng.randint(0, 12),
                "key_features_used_30d": rng.randint(0, 8),
                "key_features_defined": 8,
                "last_login_at": None if dormant else _at(observed, 9),
            }


def _tickets(n: int, count: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(1, count + 1):
        opened = _at(TODAY - timedelta(days=rng.randint(0, 180)), rng.randint(0, 23))
        closed = opened + timedelta(days=rng.randint(0, 10)) if rng.random() < 0.85 else None
        yield {
            "id": i,
            "account_id": rng.randint(1, n),
            "source": "helpdesk",
            "external_id": f"t-{i}",
            "opened_at": opened,
            "closed_at": closed,
            "priority": rng.choice(("P1", "P2", "P3", "P3", "P3")),
            "escalated": rng.random() < 0.05,
            "first_contact_resolved": None if closed is None else rng.random() < 0.7,
        }


def _nps(n: int, count: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(1, count + 1):
        yield {
            "id": i,
            "account_id": rng.randint(1, n),
            "respondent_role": rng.choice(("decision_maker", "champion", "user", "user", None)),
            "score": rng.randint(0, 10),
            "responded_on": TODAY - timedelta(days=rng.randint(0, 400)),
            "source": "survey",
            "external_id": f"n-{i}",
        }


def _touchpoints(n: int, count: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(1, count + 1):
        kind = rng.choice(("meeting", "email", "email", "call"))
        yield {
            "id": i,
            "account_id": rng.randint(1, n),
            "kind": kind,
            "direction": "out" if kind == "email" else None,
            "occurred_at": _at(TODAY - timedelta(days=rng.randint(0, 200)), rng.randint(7, 18)),
            "two_way": rng.random() < 0.5,
            "scheduled": kind == "meeting",
            "source": "crm",
            "external_id": f"tp-{i}",
        }


def _load(url: str, table_name: str, rows: Iterator[dict[str, Any]]) -> int:
    """Insert ``rows`` in batches through :mod:`app.db.bulk` (the columns the table has)."""
    table = Base.metadata.tables[table_name]
    engine = create_engine(url)
    total = 0
    try:
        batch: list[dict[str, Any]] = []
        plan = None
        for row in rows:
            batch.append({k: v for k, v in row.items() if k in table.c})
            if len(batch) >= BATCH:
                plan = plan or bulk.build_plan(engine.dialect, table, "id", list(batch[0]))
                with engine.begin() as conn:
                    bulk.upsert_rows(conn, plan, batch)
                total += len(batch)
                batch = []
        if batch:
            plan = plan or bulk.build_plan(engine.dialect, table, "id", list(batch[0]))
            with engine.begin() as conn:
                bulk.upsert_rows(conn, plan, batch)
            total += len(batch)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), "
                        f"(SELECT max(id) FROM {table_name}))"
                    )
                )
                conn.execute(text(f"ANALYZE {table_name}"))
    finally:
        engine.dispose()
    return total


def generate(url: str, n: int, seed: int = 18) -> dict[str, int]:
    rng = random.Random(seed)
    return {
        "accounts": _load(url, "accounts", _accounts(n, rng)),
        "usage_snapshots": _load(url, "usage_snapshots", _usage(n, rng)),
        "support_tickets": _load(url, "support_tickets", _tickets(n, 2 * n, rng)),
        "nps_responses": _load(url, "nps_responses", _nps(n, n, rng)),
        "touchpoints": _load(url, "touchpoints", _touchpoints(n, 3 * n, rng)),
    }


# --------------------------------------------------------------------------------------------
# the floor: one plain SELECT per table, executemany writes, no computing
# --------------------------------------------------------------------------------------------

FLOOR_READS = {
    "accounts": "SELECT * FROM accounts WHERE deleted_at IS NULL",
    "opportunities": "SELECT * FROM opportunities WHERE deleted_at IS NULL",
    "usage_snapshots": "SELECT * FROM usage_snapshots WHERE observed_on >= :usage_from",
    "support_tickets": "SELECT * FROM support_tickets",
    "nps_responses": "SELECT * FROM nps_responses",
    "survey_responses": "SELECT * FROM survey_responses",
    "touchpoints": "SELECT * FROM touchpoints",
    "invoices": "SELECT * FROM invoices",
    "contacts": "SELECT * FROM contacts WHERE deleted_at IS NULL",
    "success_criteria": "SELECT * FROM success_criteria",
    "health_snapshots": "SELECT * FROM health_snapshots WHERE computed_on >= :trend_from",
}


def floor(url: str, events_per_account: int) -> dict[str, Any]:
    """Read the inputs (fetched whole, table by table), then write as many output rows as the
    recompute does with ``executemany``: accounts' computed columns, snapshots (for yesterday,
    so the recompute's own rows are untouched), events."""
    engine = create_engine(url)
    params = {
        "usage_from": TODAY - timedelta(days=44),
        "trend_from": TODAY - timedelta(days=37),
    }
    read = 0
    started = time.perf_counter()
    ids: list[int] = []
    with engine.connect() as conn:
        for table, sql in FLOOR_READS.items():
            rows = conn.execute(text(sql), params).fetchall()
            read += len(rows)
            if table == "accounts":
                ids = [r.id for r in rows]
            del rows
    read_s = time.perf_counter() - started
    now = datetime.now(UTC)
    day = TODAY - timedelta(days=1)
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        mark = "%s" if engine.dialect.name == "postgresql" else "?"
        stamp = now.isoformat() if engine.dialect.name == "sqlite" else now
        cursor = driver.cursor()
        cursor.executemany(
            "UPDATE accounts SET "
            + ", ".join(
                f"{c} = {mark}"
                for c in (
                    "health_score",
                    "health_band",
                    "health_trend",
                    "health_reasons",
                    "health_coverage",
                    "tier",
                    "renewal_risk",
                    "health_computed_at",
                )
            )
            + f" WHERE id = {mark}",
            [(50, "yellow", "new", "floor", 80, "low", "low", stamp, i) for i in ids],
        )
        doc = json.dumps({"components": {}})
        cursor.executemany(
            "INSERT INTO health_snapshots (account_id, computed_on, computed_at, score, band, "
            "coverage, components, flags, reasons, model_version) VALUES "
            f"({', '.join([mark] * 10)})",
            [(i, day, stamp, 50, "yellow", 80, doc, "[]", "floor", "floor") for i in ids],
        )
        cursor.executemany(
            f"INSERT INTO account_events (account_id, kind, payload, occurred_at) "
            f"VALUES ({mark}, {mark}, {mark}, {mark})",
            [(i, "bench_floor", "{}", stamp) for i in ids for _ in range(events_per_account)],
        )
        cursor.close()
    engine.dispose()
    return {"read": read, "read_s": round(read_s, 2), "written_accounts": len(ids)}


def reset_outputs(url: str) -> None:
    """Back to the state before the first recompute: outputs, snapshots, events and stamps
    gone (PostgreSQL: vacuumed, so the next run does not pay for the dead rows)."""
    from app.domain.recompute import OUTPUT_COLUMNS

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            nulls = ", ".join(f"{c} = NULL" for c in OUTPUT_COLUMNS if c != "flags")
            conn.execute(
                text(
                    f"UPDATE accounts SET {nulls}, flags = '[]', field_stamps = '{{}}', "
                    "cs_changed_at = NULL, health_computed_at = NULL"
                )
            )
            conn.execute(text("DELETE FROM health_snapshots"))
            conn.execute(text("DELETE FROM account_events"))
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE accounts, health_snapshots, account_events"))
    finally:
        engine.dispose()
    checkpoint(url)


def checkpoint(url: str) -> None:
    """SQLite: the write-ahead log folded into the database file and emptied, so the run that
    follows does not read through the previous writes' log (each measured run starts alike)."""
    if not url.startswith("sqlite"):
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["CRMSYNC_DATABASE_URL"] = url
    env["CRMSYNC_LOG_LEVEL"] = "WARNING"
    return env


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str, float]:
    """Run a child; return (wall seconds, peak RSS MB, stdout, CPU seconds). The CPU time
    (user + system, from ``wait4``) is what the work costs when the machine is shared: wall
    time then counts the neighbours too."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{text}\n{errors[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024, text, usage.ru_utime + usage.ru_stime


def measure(kind: str, n: int, workdir: Path) -> list[dict[str, Any]]:
    url = fresh_database(kind, workdir)
    try:
        upgrade(url)
        began = time.perf_counter()
        loaded = generate(url, n)
        checkpoint(url)
        generated_s = time.perf_counter() - began
        env = _env(url)
        crmsync = [sys.executable, "-m", "app.cli.main", "health", "recompute"]
        # The same full recompute in one process first (the baseline of the workers' gain),
        # then its outputs wiped, so the default run does the same work from the same state.
        one_s, one_rss, out, one_cpu = run_measured(
            [*crmsync, "--all"], {**env, "CRMSYNC_RECOMPUTE__WORKERS": "1"}
        )
        one = json.loads(out)
        reset_outputs(url)
        full_s, full_rss, out, full_cpu = run_measured([*crmsync, "--all"], env)
        full = json.loads(out)
        again_s, again_rss, out, again_cpu = run_measured(crmsync, env)
        again = json.loads(out)
        events = max(1, round(full["events"] / max(1, full["selected"])))
        floor_s, floor_rss, out, floor_cpu = run_measured(
            [sys.executable, "-m", "bench.recompute", "floor", url, str(events)], env
        )
        base = json.loads(out)
    finally:
        drop_database(url)
    inputs = sum(v for k, v in loaded.items() if k != "accounts")
    common = {"db": kind, "accounts": n, "signal_rows": inputs, "generated_s": generated_s}
    return [
        {
            **common,
            "path": "floor",
            "s": floor_s,
            "cpu": floor_cpu,
            "rss": floor_rss,
            "detail": base,
        },
        {
            **common,
            "path": "recompute --all, 1 process",
            "s": one_s,
            "cpu": one_cpu,
            "rss": one_rss,
            "detail": one,
        },
        {
            **common,
            "path": "recompute --all",
            "s": full_s,
            "cpu": full_cpu,
            "rss": full_rss,
            "detail": full,
        },
        {
            **common,
            "path": "recompute, no new input",
            "s": again_s,
            "cpu": again_cpu,
            "rss": again_rss,
            "detail": again,
        },
    ]


def _inside(detail: dict[str, Any]) -> str:
    """The recompute's own time (select, read, compute, write), without the process start."""
    parts = detail.get("seconds")
    if not isinstance(parts, dict):
        return "-"
    return f"{sum(parts.values()):.2f} ({' / '.join(f'{v:.1f}' for v in parts.values())})"


def compile_bytecode() -> None:
    """Compile ``app/`` to bytecode first, as a wheel install has it (pip compiles on install):
    in an editable checkout under ``PYTHONDONTWRITEBYTECODE`` every command would otherwise
    compile some ninety modules from source, 0.1-0.2 s of each start."""
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parents[1] / "app", quiet=1)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        print(json.dumps(floor(sys.argv[2], int(sys.argv[3]))))
        return
    compile_bytecode()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--accounts", "--recompute-accounts", dest="accounts", type=int, default=100_000
    )
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    args, _others = parser.parse_known_args()  # `python -m bench` passes the pull's options too
    console = Console(width=150)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.db or ["sqlite", "postgresql"]:
            rows.extend(measure(kind, args.accounts, Path(tmp)))
    console.print(
        "in-process s: select / read / compute / write, added up over the workers (with 2 "
        "workers more than the wall time); CPU s: the command and its workers"
    )
    table = Table(title=f"health recompute, {args.accounts:,} accounts")
    columns = (
        "db",
        "path",
        "signal rows",
        "seconds",
        "x floor",
        "CPU s",
        "x floor CPU",
        "in-process s",
        "peak RSS MB",
    )
    for column in (*columns, "changed", "workers"):
        table.add_column(column)
    for row in rows:
        floor_row = next(r for r in rows if r["db"] == row["db"] and r["path"] == "floor")
        ratio = row["path"] != "recompute, no new input"
        table.add_row(
            row["db"],
            row["path"],
            f"{row['signal_rows']:,}",
            f"{row['s']:.2f}",
            f"{row['s'] / floor_row['s']:.2f}" if ratio else "-",
            f"{row['cpu']:.2f}",
            f"{row['cpu'] / floor_row['cpu']:.2f}" if ratio else "-",
            _inside(row["detail"]),
            f"{row['rss']:.0f}",
            str(row["detail"].get("changed", "-")),
            str(row["detail"].get("workers", "-")),
        )
    console.print(table)
    for row in rows:
        if row["path"].startswith("recompute --all"):
            console.print(
                f"{row['db']} ({row['path']}): data generated in {row['generated_s']:.1f} s; "
                f"summary {json.dumps(row['detail'])}"
            )


if __name__ == "__main__":
    main()
