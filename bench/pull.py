"""Pull benchmark: crmsync's Salesforce backfill vs the raw floor, on SQLite and PostgreSQL.

One command (``make bench`` or ``python -m bench``) starts the sandbox in its own process with
rate limits off, then for each database runs, as separate processes measured from outside
(wall time and peak RSS from ``wait4``):

* ``crmsync sync backfill --crm salesforce --object Account --object Opportunity`` on REST JSON
  pages (the Bulk threshold is raised so both sides read the same pages), and again with Bulk
  API 2.0 (the default above 10,000 rows);
* the floor (``bench/floor.py``): the same JSON pages parsed and inserted with plain DB-API
  ``executemany`` into the same migrated tables (same indexes), as SQLAlchemy's
  ``examples/performance`` compares strategies on one table.

Figures are printed beside the floor as ratios: these machines are shared and noisy, so the
ratio, not the absolute time, is the result. Targets: crmsync within 2x of the floor; peak RSS
under 250 MB at any size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
OBJECTS = ["Account", "Opportunity"]


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a child; return (wall seconds, peak RSS MB, stdout). Its stderr is shown on failure."""
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
    return elapsed, usage.ru_maxrss / 1024, text


def start_sandbox(workdir: Path, accounts: int) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    info_file = workdir / "sandbox.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "sandbox",
            "--port",
            "0",
            "--accounts",
            str(accounts),
            "--no-rate-limits",
            "--info-file",
            str(info_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not info_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the sandbox did not start")
        time.sleep(0.2)
    return proc, json.loads(info_file.read_text())


def rss_mb(pid: int) -> float:
    """Current resident memory of a running process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fresh_database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
    name = f"crmsync_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    if url.startswith("postgresql"):
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def crmsync_env(info: dict[str, Any], database_url: str, bulk: bool) -> dict[str, str]:
    sf = info["salesforce"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(
        {
            "CRMSYNC_DATABASE_URL": database_url,
            "CRMSYNC_SALESFORCE_INSTANCE_URL": sf["instance_url"],
            "CRMSYNC_SALESFORCE_ACCESS_TOKEN": sf["access_token"],
            "CRMSYNC_SALESFORCE_API_VERSION": sf["api_version"],
            "CRMSYNC_CA_BUNDLE": info["ca_file"],
            "CRMSYNC_SYNC__BULK_THRESHOLD": "10000" if bulk else "1000000000",
        }
    )
    return env


def bench_database(
    kind: str, info: dict[str, Any], info_path: Path, workdir: Path
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    floor_url = fresh_database(kind, workdir)
    try:
        run_measured(
            [sys.executable, "-m", "app.cli.main", "db", "upgrade"],
            crmsync_env(info, floor_url, bulk=False),
        )
        secs, rss, out = run_measured(
            [sys.executable, "-m", "bench.floor", floor_url, str(info_path), *OBJECTS],
            dict(os.environ),
        )
        floor = json.loads(out)
        rows.append(
            {
                "db": kind,
                "path": "floor: same pages, plain executemany",
                "secs": secs,
                "rss": rss,
                **floor,
            }
        )
    finally:
        drop_database(floor_url)
    for bulk in (False, True):
        url = fresh_database(kind, workdir)
        try:
            env = crmsync_env(info, url, bulk)
            run_measured([sys.executable, "-m", "app.cli.main", "db", "upgrade"], env)
            cmd = [sys.executable, "-m", "app.cli.main", "sync", "backfill", "--crm", "salesforce"]
            for obj in OBJECTS:
                cmd += ["--object", obj]
            secs, rss, out = run_measured(cmd, env)
            runs = json.loads(out)["runs"]
            rows.append(
                {
                    "db": kind,
                    "path": "crmsync backfill, Bulk 2.0 CSV"
                    if bulk
                    else "crmsync backfill, REST JSON",
                    "secs": secs,
                    "rss": rss,
                    "records": sum(r["read"] for r in runs),
                    "api_calls": sum(r["api_calls"] for r in runs),
                }
            )
        finally:
            drop_database(url)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        console.print(f"starting the sandbox with {args.accounts:,} accounts ...")
        seed_started = time.perf_counter()
        proc, info = start_sandbox(workdir, args.accounts)
        seed_secs = time.perf_counter() - seed_started
        sandbox_rss = [rss_mb(proc.pid)]
        try:
            rows: list[dict[str, Any]] = []
            for kind in args.db or ["sqlite", "postgresql"]:
                console.print(f"benchmarking {kind} ...")
                rows += bench_database(kind, info, workdir / "sandbox.json", workdir)
                sandbox_rss.append(rss_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    table = Table(title=f"pull of {args.accounts:,} accounts + opportunities (Salesforce sandbox)")
    for col in (
        "db",
        "path",
        "records",
        "seconds",
        "records/s",
        "x floor time",
        "API calls",
        "peak RSS MB",
    ):
        table.add_column(col, justify="right" if col not in ("db", "path") else "left")
    for kind in args.db or ["sqlite", "postgresql"]:
        group = [r for r in rows if r["db"] == kind]
        floor = group[0]
        for r in group:
            table.add_row(
                kind,
                r["path"],
                f"{r['records']:,}",
                f"{r['secs']:.1f}",
                f"{r['records'] / r['secs']:,.0f}",
                f"{r['secs'] / floor['secs']:.2f}",
                str(r["api_calls"]),
                f"{r['rss']:.0f}",
            )
    console.print(table)
    console.print(
        f"sandbox: seeded and serving in {seed_secs:.1f} s; its RSS after seeding "
        f"{sandbox_rss[0]:.0f} MB, after each database's runs "
        + ", ".join(f"{v:.0f} MB" for v in sandbox_rss[1:])
    )
