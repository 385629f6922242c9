"""Partitioned backfill benchmark (#19 item 9): one backfill of N Salesforce accounts run by
1 worker, then by 2 workers on Redis, in one run.

The sandbox starts in its own process with N accounts and rate limits off. For each setup a
fresh PostgreSQL database is migrated, ``crmsync worker --workers 1`` processes are started on
a Redis queue of their own (the schedule off) and left to settle, then one backfill of
``Account`` is queued as ``POST /api/v1/sync/runs`` queues it:

* **1 worker**: ``{"kind": "backfill"}``, one pass (a Bulk 2.0 job), as before partitions;
* **2 workers**: ``{"kind": "backfill", "partitions": 2}``: the parent is planned into two
  stamp ranges (count calls), each a child run with its own Bulk 2.0 job, one per worker.

Timed from the enqueue to the (parent) run's end, read from ``sync_runs``. Per setup it prints
records/s, API calls (the run's, and the sandbox's own count of the calls it answered), each
worker's peak RSS (``VmHWM``) and CPU seconds, the sandbox's CPU seconds, and the machine's
busy CPU over the window (``/proc/stat``: the other agents on this shared 2-core machine show
there), then the ratio of 2 workers to 1. Target: >= 1.6x.
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

import redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench.pull import (
    PG_ADMIN,
    crmsync_env,
    drop_database,
    fresh_database,
    rss_mb,
    run_measured,
    start_sandbox,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 1.6


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


def pg_backends(url: str) -> list[int]:
    """Pids of the PostgreSQL backends serving the bench's database (same machine)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchall()
    return [int(r[0]) for r in rows]


class CpuWatch:
    """CPU seconds a changing set of processes used since first seen (polled; a process that
    exits between two polls keeps what the last poll saw)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def poll(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                used = cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            self.first.setdefault(pid, used)
            self.last[pid] = used

    @property
    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)


def sandbox_call_count(info: dict[str, Any]) -> int:
    import requests

    with requests.Session() as session:
        session.trust_env = False
        stats = session.get(f"{info['control_url']}/stats", verify=info["ca_file"], timeout=30)
    stats.raise_for_status()
    routes = stats.json()["calls"].get("salesforce", {})
    return sum(sum(counts.values()) for counts in routes.values())


def _session_factory(url: str) -> Any:
    from app.db.engine import make_engine, make_session_factory

    engine = make_engine(url)
    return engine, make_session_factory(engine)


def queue_backfill(env: dict[str, str], partitions: int) -> int:
    """Queue one backfill of Account as the API does, and enqueue it on the workers' queue."""
    from app.db import job_store
    from app.jobs.tasks import JobQueue
    from app.settings import Settings

    settings = Settings(
        _env_file=None,
        database_url=env["CRMSYNC_DATABASE_URL"],
        redis_url=env["CRMSYNC_REDIS_URL"],
        jobs={"name": env["CRMSYNC_JOBS__NAME"]},
    )
    engine, factory = _session_factory(settings.database_url)
    try:
        params: dict[str, Any] = {"partitions": partitions} if partitions > 1 else {}
        with factory() as session:
            run_id, _ = job_store.queue_run(
                session,
                kind="backfill",
                crm="salesforce",
                object_name="Account",
                triggered_by="bench",
                params=params,
            )
        queue = JobQueue(settings, session_factory=factory, periodic=False)
        try:
            queue.enqueue_run(run_id)
        finally:
            queue.close()
    finally:
        engine.dispose()
    return run_id


def run_state(url: str, run_id: int) -> dict[str, Any]:
    from app.db.models import Account, SyncRun

    engine, factory = _session_factory(url)
    try:
        with factory() as session:
            row = session.get(SyncRun, run_id)
            assert row is not None
            children = [
                r
                for r in session.scalars(select(SyncRun).where(SyncRun.kind.like("backfill:p%")))
                if (r.params or {}).get("parent") == run_id
            ]
            stored = int(session.scalar(select(func.count()).select_from(Account)) or 0)
            distinct = int(session.scalar(select(func.count(func.distinct(Account.sf_id)))) or 0)
            return {
                "status": row.status,
                "error": row.error,
                "read": row.read_count,
                "created": row.created_count,
                "api_calls": row.api_calls,
                "stored": stored,
                "distinct": distinct,
                "children": [
                    {
                        "kind": c.kind,
                        "read": c.read_count,
                        "api_calls": c.api_calls,
                        "started": c.started_at.isoformat() if c.started_at else None,
                        "finished": c.finished_at.isoformat() if c.finished_at else None,
                    }
                    for c in children
                ],
            }
    finally:
        engine.dispose()


def wait_started(logs: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(
                    "a worker exited at start:\n" + "\n".join(p.read_text() for p in logs)
                )
        if all("jobs.worker.started" in log.read_text() for log in logs):
            return
        time.sleep(0.2)
    raise SystemExit("the workers did not start")


def one_setup(
    info: dict[str, Any], sandbox_pid: int, workdir: Path, workers: int, *, bulk: bool = True
) -> dict[str, Any]:
    url = fresh_database("postgresql", workdir)
    name = f"crmsync-bench-{uuid.uuid4().hex[:8]}"
    env = crmsync_env(info, url, bulk=bulk)
    env.update(
        {
            "CRMSYNC_REDIS_URL": REDIS_URL,
            "CRMSYNC_JOBS__NAME": name,
            "CRMSYNC_JOBS__INCREMENTAL_MINUTES": "0",
            "CRMSYNC_JOBS__NIGHTLY_HOUR": "-1",
            "CRMSYNC_LOG_LEVEL": "WARNING",
            "CRMSYNC_DATA_DIR": str(workdir / name),
        }
    )
    procs: list[subprocess.Popen[bytes]] = []
    handles: list[Any] = []
    logs: list[Path] = []
    try:
        run_measured([sys.executable, "-m", "app.cli.main", "db", "upgrade"], env)
        for i in range(workers):
            log = workdir / f"{name}-worker{i}.log"
            handle = log.open("wb")
            handles.append(handle)
            logs.append(log)
            env_i = {**env, "CRMSYNC_LOG_LEVEL": "INFO"}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "app.cli.main", "worker", "--workers", "1"],
                    env=env_i,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_started(logs, procs)
        time.sleep(2)  # imports done, the scheduler's first tick past
        calls_before = sandbox_call_count(info)
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        sandbox_before = cpu_seconds(sandbox_pid)
        busy_before, total_before = machine_busy()
        database_cpu = CpuWatch()
        database_cpu.poll(pg_backends(url))
        started = time.perf_counter()
        run_id = queue_backfill(env, partitions=workers)
        while True:
            database_cpu.poll(pg_backends(url))
            state = run_state(url, run_id)
            if state["status"] not in ("queued", "running", "cancelling"):
                break
            if any(p.poll() is not None for p in procs):
                raise SystemExit(
                    "a worker died:\n" + "\n".join(p.read_text()[-3000:] for p in logs)
                )
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        busy_after, total_after = machine_busy()
        return {
            "workers": workers,
            "partitions": workers,
            "secs": elapsed,
            "records": state["read"],
            "stored": state["stored"],
            "distinct": state["distinct"],
            "status": state["status"],
            "error": state["error"],
            "api_calls": state["api_calls"],
            "sandbox_calls": sandbox_call_count(info) - calls_before,
            "worker_rss": [peak_rss_mb(p.pid) for p in procs],
            "worker_cpu": [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu_before, strict=True)],
            "sandbox_cpu": cpu_seconds(sandbox_pid) - sandbox_before,
            "database_cpu": database_cpu.seconds,
            "machine_busy": busy_after - busy_before,
            "machine_cores": (total_after - total_before) / elapsed if elapsed else 0.0,
            "children": state["children"],
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in handles:
            handle.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{name}*"):
            client.delete(key)
        drop_database(url)


def ours(row: dict[str, Any]) -> float:
    """CPU seconds the backfill's own processes used: workers, sandbox, database backends."""
    return float(sum(row["worker_cpu"]) + row["sandbox_cpu"] + row["database_cpu"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=300_000)
    parser.add_argument(
        "--path",
        choices=["bulk", "rest"],
        default="bulk",
        help="bulk: Bulk 2.0 jobs (the default above 10,000 rows); rest: REST query pages",
    )
    args = parser.parse_args(argv)
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        console.print(f"partition bench: starting the sandbox with {args.accounts:,} accounts ...")
        seeded = time.perf_counter()
        proc, info = start_sandbox(workdir, args.accounts, timeout=3600)
        seed_secs = time.perf_counter() - seeded
        try:
            rows = []
            for workers in (1, 2):
                console.print(f"partition bench: backfill with {workers} worker(s) ...")
                rows.append(one_setup(info, proc.pid, workdir, workers, bulk=args.path == "bulk"))
            sandbox_rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    table = Table(
        title=f"backfill of {args.accounts:,} Salesforce accounts, {args.path} (sandbox, rate "
        "limits off, PostgreSQL, workers on Redis)"
    )
    for col in (
        "workers",
        "status",
        "records",
        "seconds",
        "records/s",
        "API calls (run / sandbox)",
        "peak RSS MB per worker",
        "worker CPU s",
        "sandbox CPU s",
        "PostgreSQL CPU s",
        "our cores",
        "machine busy cores",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["workers"]),
            str(r["status"]),
            f"{r['records']:,}",
            f"{r['secs']:.1f}",
            f"{r['records'] / r['secs']:,.0f}",
            f"{r['api_calls']} / {r['sandbox_calls']}",
            " / ".join(f"{v:.0f}" for v in r["worker_rss"]),
            " / ".join(f"{v:.1f}" for v in r["worker_cpu"]),
            f"{r['sandbox_cpu']:.1f}",
            f"{r['database_cpu']:.1f}",
            f"{ours(r) / r['secs']:.2f}",
            f"{r['machine_busy'] / r['secs']:.2f} of {r['machine_cores']:.0f}",
        )
    console.print(table)
    one, two = rows
    ratio = (two["records"] / two["secs"]) / (one["records"] / one["secs"])
    ok = all(
        r["status"] == "succeeded" and r["distinct"] == r["stored"] == args.accounts for r in rows
    )
    console.print(
        f"2 workers : 1 worker = {ratio:.2f}x records/s (target >= {TARGET}x: "
        f"{'met' if ratio >= TARGET else 'NOT met'}); every record once in both: {ok}; "
        f"sandbox seeded in {seed_secs:.0f} s, its RSS {sandbox_rss:.0f} MB"
    )
    for r in rows:
        if r["error"]:
            console.print(f"  {r['workers']} workers: {r['status']}: {r['error']}")
        for c in r["children"]:
            console.print(
                f"  {r['workers']} workers: {c['kind']} read {c['read']:,} "
                f"({c['api_calls']} calls) {c['started']} -> {c['finished']}"
            )
    summary = {
        "bench": "partition",
        "accounts": args.accounts,
        "ratio": round(ratio, 3),
        "every_record_once": ok,
        "rows": rows,
    }
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
