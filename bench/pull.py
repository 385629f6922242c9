"""Pull benchmark: crmsync's Salesforce backfill vs the raw floor, on SQLite and PostgreSQL.

One command (``make bench`` or ``python -m bench``) starts the sandbox in its own process with
rate limits off, then for each database runs, as separate processes measured from outside
(wall time and peak RSS from ``wait4``):

* ``crmsync sync backfill --crm salesforce --object Account --object Opportunity`` on REST JSON
  pages (the Bulk threshold is raised so both sides read the same pages), and again with Bulk
  API 2.0 (the default above 10,000 rows);
* ``crmsync sync backfill --crm hubspot --object companies --object deals`` (search pages and
  association batch reads; no floor process, so no time ratio);
* the floor (``bench/floor.py``): the same JSON pages parsed and inserted with plain DB-API
  ``executemany`` into the same migrated tables (same indexes), as SQLAlchemy's
  ``examples/performance`` compares strategies on one table.

API calls are printed per 10,000 records beside the call floor of each path
(:func:`floor_calls`), since the CRM's daily API budget is shared by every integration of the
org. Figures are printed beside the floor as ratios: these machines are shared and noisy, so the
ratio, not the absolute time, is the result. Targets: crmsync within 2x of the floor; peak RSS
under 250 MB at any size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests
from rich.console import Console
from rich.table import Table

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
OBJECTS = ["Account", "Opportunity"]
HS_OBJECTS = ["companies", "deals"]
# HubSpot objects whose records carry associations read with v4 batch reads (one per type).
HS_ASSOCIATIONS = {"companies": 0, "deals": 1}
SF_REST_PAGE = 2_000  # Salesforce REST query page (batchSize max)
HS_SEARCH_PAGE = 200  # HubSpot search page (limit max)
HS_ASSOC_BATCH = 1_000  # HubSpot v4 association batch read inputs (max since February 2025)
BULK_CALLS_PER_OBJECT = 4  # count or first page, create job, poll, first results page


def floor_calls(path: str, per_object: dict[str, int], bulk_extra_pages: int = 0) -> int:
    """The fewest API calls a path can pull ``per_object`` records in (issue #16's floors).

    * Salesforce REST: ceil(N / 2,000) query pages per object;
    * Salesforce Bulk 2.0: about 4 calls per object (choose, create, poll, first results
      page) plus one per further results page (``bulk_extra_pages``, counted by the sandbox);
    * HubSpot: ceil(N / 200) search pages plus ceil(N / 1,000) association batch reads per
      association type of the object.
    """
    if path == "rest":
        return sum(math.ceil(n / SF_REST_PAGE) for n in per_object.values())
    if path == "bulk":
        return BULK_CALLS_PER_OBJECT * len(per_object) + bulk_extra_pages
    return sum(
        math.ceil(n / HS_SEARCH_PAGE) + HS_ASSOCIATIONS.get(obj, 0) * math.ceil(n / HS_ASSOC_BATCH)
        for obj, n in per_object.items()
    )


def per_10k(calls: int, records: int) -> str:
    return f"{calls * 10_000 / records:.1f}" if records else "-"


def sandbox_calls(info: dict[str, Any], needle: str) -> int:
    """Calls the sandbox answered on routes containing ``needle`` (its call accounting)."""
    with requests.Session() as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify (crm-api.md 0)
        stats = session.get(f"{info['control_url']}/stats", verify=info["ca_file"], timeout=30)
    stats.raise_for_status()
    calls = stats.json()["calls"]
    return sum(
        sum(counts.values())
        for routes in calls.values()
        for route, counts in routes.items()
        if needle in route
    )


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


def start_sandbox(
    workdir: Path, accounts: int, timeout: float = 600
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``crmsync sandbox`` with ``accounts`` seeded, rate limits off, and wait for its
    info file. Its output goes to ``sandbox.log`` in ``workdir`` so a failure can show it; a
    sandbox that exits or does not come up within ``timeout`` seconds is killed, not left
    running behind the bench."""
    info_file = workdir / "sandbox.json"
    log = workdir / "sandbox.log"
    with log.open("wb") as handle:
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
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while not info_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise SystemExit(f"the sandbox did not start:\n{log.read_text()[-3000:]}")
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
    hs = info["hubspot"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(
        {
            "CRMSYNC_DATABASE_URL": database_url,
            "CRMSYNC_SALESFORCE_INSTANCE_URL": sf["instance_url"],
            "CRMSYNC_SALESFORCE_ACCESS_TOKEN": sf["access_token"],
            "CRMSYNC_SALESFORCE_API_VERSION": sf["api_version"],
            "CRMSYNC_HUBSPOT_BASE_URL": hs["base_url"],
            "CRMSYNC_HUBSPOT_ACCESS_TOKEN": hs["access_token"],
            "CRMSYNC_CA_BUNDLE": info["ca_file"],
            "CRMSYNC_SYNC__BULK_THRESHOLD": "10000" if bulk else "1000000000",
        }
    )
    return env


def backfill_row(kind: str, info: dict[str, Any], workdir: Path, path: str) -> dict[str, Any]:
    """One crmsync backfill (``rest``, ``bulk`` or ``hubspot``) on a fresh database."""
    url = fresh_database(kind, workdir)
    try:
        env = crmsync_env(info, url, bulk=path == "bulk")
        run_measured([sys.executable, "-m", "app.cli.main", "db", "upgrade"], env)
        crm = "hubspot" if path == "hubspot" else "salesforce"
        cmd = [sys.executable, "-m", "app.cli.main", "sync", "backfill", "--crm", crm]
        for obj in HS_OBJECTS if crm == "hubspot" else OBJECTS:
            cmd += ["--object", obj]
        pages_before = sandbox_calls(info, "/results")
        secs, rss, out = run_measured(cmd, env)
        extra_pages = 0
        if path == "bulk":
            # Results pages beyond the first of each object (the floor counts one per page).
            extra_pages = max(0, sandbox_calls(info, "/results") - pages_before - len(OBJECTS))
        runs = json.loads(out)["runs"]
        per_object = {r["object"]: r["read"] for r in runs}
        return {
            "db": kind,
            "path": {
                "rest": "crmsync backfill, REST JSON",
                "bulk": "crmsync backfill, Bulk 2.0 CSV",
                "hubspot": "crmsync backfill, HubSpot search",
            }[path],
            "secs": secs,
            "rss": rss,
            "records": sum(per_object.values()),
            "api_calls": sum(r["api_calls"] for r in runs),
            "floor_calls": floor_calls(path, per_object, extra_pages),
        }
    finally:
        drop_database(url)


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
        floor["floor_calls"] = floor["api_calls"]
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
    for path in ("rest", "bulk", "hubspot"):
        rows.append(backfill_row(kind, info, workdir, path))
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
        "calls / 10k",
        "floor / 10k",
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
                f"{r['secs'] / floor['secs']:.2f}" if "HubSpot" not in r["path"] else "-",
                str(r["api_calls"]),
                per_10k(r["api_calls"], r["records"]),
                per_10k(r["floor_calls"], r["records"]),
                f"{r['rss']:.0f}",
            )
    console.print(table)
    console.print(
        f"sandbox: seeded and serving in {seed_secs:.1f} s; its RSS after seeding "
        f"{sandbox_rss[0]:.0f} MB, after each database's runs "
        + ", ".join(f"{v:.0f} MB" for v in sandbox_rss[1:])
    )
