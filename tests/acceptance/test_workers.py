"""Jobs as they run in production: separate processes started from the command line.

* ``crmsync serve`` (the API) and two ``crmsync worker`` processes on Redis, on the suite's
  database (PostgreSQL in the PostgreSQL run): a backfill triggered through the API runs on the
  workers, every record once (#19 item 7's process test).
* ``crmsync serve --with-worker`` on the embedded SQLite queue: the one-process setup.
* A worker killed with ``kill -9`` during a backfill: the run is closed as abandoned and
  resumed by the other worker from its cursor; nothing lost, nothing twice (#19 item 8).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from app.db.engine import make_engine, make_session_factory
from app.db.models import Account, SyncRun
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.acceptance.test_cli import sandbox_env
from tests.support.jobs import REDIS_URL, redis_available

BOOTSTRAP_KEY = "workers-test-bootstrap-key-0123456789"
AUTH = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}

ACCOUNTS = 3000


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=ACCOUNTS, hs_rate_limits=False)) as sb:
        yield sb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """Processes of one test, stopped (SIGTERM, then kill) at its end."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        # POST /api/v1/sync/runs needs an operator key: the bootstrap admin key of the settings.
        self.env = {**env, "CRMSYNC_ADMIN_BOOTSTRAP_KEY": BOOTSTRAP_KEY}
        self.cwd = cwd
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        self.handles: list[Any] = []

    def start(self, *args: str, name: str) -> subprocess.Popen[str]:
        log = self.cwd / f"{name}.log"
        handle = log.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli.main", *args],
            env=self.env,
            cwd=self.cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        self.logs.append(log)
        self.handles.append(handle)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in self.handles:
            handle.close()

    def output(self) -> str:
        codes = [p.returncode for p in self.procs]
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs)
        return f"exit codes {codes}\n{logs}"


def wait_until(check: Callable[[], Any], timeout: float, what: str, stack: Stack) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{stack.output()}")


def wait_ready(base: str, stack: Stack) -> None:
    def ready() -> bool:
        try:
            return requests.get(f"{base}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, 60, "the API", stack)


def run_rows(database_url: str) -> list[SyncRun]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            return list(s.scalars(select(SyncRun).order_by(SyncRun.id)))
    finally:
        engine.dispose()


def account_count(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            total = int(s.scalar(select(func.count()).select_from(Account)) or 0)
            distinct = int(s.scalar(select(func.count(func.distinct(Account.sf_id)))) or 0)
            return total, distinct
    finally:
        engine.dispose()


@pytest.fixture
def redis_env(sandbox: Sandbox, database_url: str) -> Iterator[dict[str, str]]:
    if not redis_available():
        pytest.skip("no Redis at 127.0.0.1:6379")
    import redis

    name = f"crmsync-test-{uuid.uuid4().hex[:10]}"
    env = sandbox_env(sandbox, database_url)
    env.update(
        {
            "CRMSYNC_REDIS_URL": REDIS_URL,
            "CRMSYNC_JOBS__NAME": name,
            # No schedule: at a minute divisible by 5 a worker's scheduler would queue
            # incremental runs beside the test's own (more rows, a worker taken). The schedule
            # itself is tested in tests/integration/test_jobs.py.
            "CRMSYNC_JOBS__INCREMENTAL_MINUTES": "0",
            "CRMSYNC_JOBS__NIGHTLY_HOUR": "-1",
            "CRMSYNC_LOG_LEVEL": "INFO",
            # HubSpot left out: these tests drive Salesforce only.
            "CRMSYNC_HUBSPOT_ACCESS_TOKEN": "",
        }
    )
    env.pop("CRMSYNC_HUBSPOT_ACCESS_TOKEN")
    yield env
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"*{name}*"):
        client.delete(key)


def test_api_and_two_workers_on_redis_run_a_backfill(
    redis_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack = Stack(redis_env, tmp_path)
    try:
        stack.start("serve", "--port", str(port), name="api")
        stack.start("worker", "--workers", "2", name="worker1")
        stack.start("worker", "--workers", "2", name="worker2")
        wait_ready(base, stack)
        answer = requests.post(
            f"{base}/api/v1/sync/runs",
            json={"crm": "salesforce", "kind": "backfill"},
            headers=AUTH,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        ids = set(answer.json()["run_ids"])

        def finished() -> list[SyncRun] | None:
            rows = [r for r in run_rows(database_url) if r.id in ids]
            ended = ("succeeded", "partial", "failed", "cancelled")
            done = len(rows) == len(ids) and all(r.status in ended for r in rows)
            return rows if done else None

        rows = wait_until(finished, 120, "the backfill", stack)
    finally:
        stack.stop()
    assert {r.status for r in rows} == {"succeeded"}, stack.output()
    assert account_count(database_url) == (ACCOUNTS, ACCOUNTS)
    assert len(run_rows(database_url)) == 3  # one row per object, none refused or repeated
    # uvicorn re-raises the SIGTERM it handled once it has shut down; the workers exit 0.
    assert stack.procs[0].returncode in (0, -signal.SIGTERM), stack.output()
    assert [p.returncode for p in stack.procs[1:]] == [0, 0], stack.output()


def test_serve_with_worker_on_the_embedded_queue(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(sandbox, database_url)
    env.pop("CRMSYNC_HUBSPOT_ACCESS_TOKEN")
    env["CRMSYNC_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack = Stack(env, tmp_path)
    try:
        stack.start("serve", "--with-worker", "--port", str(port), name="serve")
        wait_ready(base, stack)
        answer = requests.post(
            f"{base}/api/v1/sync/runs",
            json={"crm": "salesforce", "object": "Account", "kind": "backfill"},
            headers=AUTH,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]

        def finished() -> SyncRun | None:
            row = next(r for r in run_rows(database_url) if r.id == run_id)
            return row if row.status not in ("queued", "running") else None

        row = wait_until(finished, 120, "the backfill", stack)
    finally:
        stack.stop()
    assert row.status == "succeeded", stack.output()
    assert (tmp_path / "data" / "jobs.db").is_file()
    assert account_count(database_url) == (ACCOUNTS, ACCOUNTS)
    # SIGTERM: the API shuts down, then the worker stops its runs; the process exits 0.
    assert stack.procs[0].returncode == 0, stack.output()


def _start_backfill(base: str, stack: Stack) -> int:
    answer = requests.post(
        f"{base}/api/v1/sync/runs",
        json={"crm": "salesforce", "object": "Account", "kind": "backfill"},
        headers=AUTH,
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["run_id"])


def _sweep(env: dict[str, str]) -> dict[str, Any]:
    """One pass of the sweeper, as the periodic task runs it (same queue, same database)."""
    from app.jobs.tasks import JobQueue
    from app.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=env["CRMSYNC_DATABASE_URL"],
        redis_url=env["CRMSYNC_REDIS_URL"],
        jobs={"name": env["CRMSYNC_JOBS__NAME"], "sweep_seconds": 1},  # type: ignore[arg-type]
        sync={"lease_seconds": float(env["CRMSYNC_SYNC__LEASE_SECONDS"])},  # type: ignore[arg-type]
    )
    queue = JobQueue(settings, periodic=False)
    try:
        return queue.sweep().as_dict()
    finally:
        queue.close()


def test_a_worker_killed_during_a_backfill_is_resumed_by_the_other(
    redis_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    env = {**redis_env, "CRMSYNC_SYNC__PAGE_SIZE": "200", "CRMSYNC_SYNC__LEASE_SECONDS": "2"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack = Stack(env, tmp_path)
    try:
        stack.start("serve", "--port", str(port), name="api")
        doomed = stack.start("worker", name="worker1")
        wait_ready(base, stack)
        run_id = _start_backfill(base, stack)

        def midway() -> bool:
            row = next(r for r in run_rows(database_url) if r.id == run_id)
            return row.status == "running" and 400 <= row.read_count < ACCOUNTS - 400

        wait_until(midway, 60, "the backfill to be midway", stack)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        killed = next(r for r in run_rows(database_url) if r.id == run_id)
        assert killed.status == "running"  # nobody closed it: the process is gone
        stack.start("worker", name="worker2")
        time.sleep(4.5)  # two lease TTLs without a heartbeat: the sweeper calls it stalled
        swept = _sweep(env)
        resumption = swept["resumed_runs"][str(run_id)]

        def resumed() -> SyncRun | None:
            row = next(r for r in run_rows(database_url) if r.id == resumption)
            return row if row.status not in ("queued", "running") else None

        row = wait_until(resumed, 120, "the resumption", stack)
    finally:
        stack.stop()
    dead = next(r for r in run_rows(database_url) if r.id == run_id)
    assert dead.status == "failed", stack.output()
    assert dead.error is not None
    assert dead.error.startswith("abandoned")
    assert row.status == "succeeded", stack.output()
    assert row.params["resumes"] == run_id
    # It went on from the dead run's cursor: it read the rest, not everything again.
    assert row.read_count <= ACCOUNTS - dead.read_count + 200
    assert account_count(database_url) == (ACCOUNTS, ACCOUNTS)


def test_two_workers_never_run_the_same_sync_at_once(
    redis_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    env = {**redis_env, "CRMSYNC_SYNC__PAGE_SIZE": "200", "CRMSYNC_SYNC__LEASE_SECONDS": "10"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack = Stack(env, tmp_path)
    try:
        stack.start("serve", "--port", str(port), name="api")
        stack.start("worker", name="worker1")
        stack.start("worker", name="worker2")
        wait_ready(base, stack)
        first, second = _start_backfill(base, stack), _start_backfill(base, stack)

        def both_done() -> list[SyncRun] | None:
            rows = [r for r in run_rows(database_url) if r.id in (first, second)]
            if all(r.status not in ("queued", "running") for r in rows):
                return rows
            if any(r.status == "queued" for r in rows):
                _sweep({**env, "CRMSYNC_SYNC__LEASE_SECONDS": "10"})  # the waiting one again
            return None

        rows = wait_until(both_done, 180, "both backfills", stack)
    finally:
        stack.stop()
    assert [r.status for r in rows] == ["succeeded", "succeeded"], stack.output()
    every = [r for r in run_rows(database_url) if r.kind == "backfill"]
    assert len(every) == 2  # the one that waited stayed queued: no refused row
    a, b = sorted(every, key=lambda r: r.started_at)
    assert a.finished_at is not None
    assert a.finished_at <= b.started_at  # one after the other, never at once
    assert account_count(database_url) == (ACCOUNTS, ACCOUNTS)


def _started_by(log: Path) -> set[int]:
    """Run ids whose pass a worker started (its ``sync.run.start`` log lines)."""
    found: set[int] = set()
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "sync.run.start" and event.get("run_id") is not None:
            found.add(int(event["run_id"]))
    return found


def test_two_workers_on_redis_run_the_partitions_of_one_backfill_at_once(
    sandbox: Sandbox, redis_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """``crmsync sync backfill --partitions 2`` queues it; each of two one-thread workers takes
    one partition (its own lease), and they run at the same time; every record once."""
    env = {
        **redis_env,
        "CRMSYNC_SYNC__PAGE_SIZE": "200",
        "CRMSYNC_SYNC__BULK_THRESHOLD": "1000000",  # REST pages, each slowed below
    }
    # Every query page takes 0.25 s: each partition lasts seconds, long enough to overlap.
    sandbox.control(
        "PUT", "/faults", json={"routes": [{"match": "GET /services/*", "slow_ms": 250}]}
    )
    stack = Stack(env, tmp_path)
    try:
        queued = subprocess.run(
            [
                sys.executable,
                "-m",
                "app.cli.main",
                "sync",
                "backfill",
                "--crm",
                "salesforce",
                "--object",
                "Account",
                "--partitions",
                "2",
            ],
            env=stack.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert queued.returncode == 0, queued.stderr
        answer = json.loads(queued.stdout)
        (parent,) = [r["run_id"] for r in answer["runs"]]
        assert answer["status"] == "queued"
        stack.start("worker", "--workers", "1", name="worker1")
        stack.start("worker", "--workers", "1", name="worker2")

        def finished() -> SyncRun | None:
            row = next(r for r in run_rows(database_url) if r.id == parent)
            return row if row.status not in ("queued", "running") else None

        done = wait_until(finished, 240, "the partitioned backfill", stack)
    finally:
        stack.stop()
        sandbox.control("PUT", "/faults", json={"routes": []})
    assert done.status == "succeeded", stack.output()
    children = [r for r in run_rows(database_url) if (r.params or {}).get("parent") == parent]
    assert sorted(r.kind for r in children) == ["backfill:p0", "backfill:p1"], stack.output()
    assert all(r.status == "succeeded" for r in children), stack.output()
    a, b = children
    assert a.finished_at is not None
    assert b.finished_at is not None
    # At the same time: each started before the other finished.
    assert a.started_at < b.finished_at, stack.output()
    assert b.started_at < a.finished_at, stack.output()
    # On different workers: each worker's log starts one of them.
    by_worker = [_started_by(log) & {a.id, b.id} for log in stack.logs]
    assert sorted(map(sorted, by_worker)) == sorted([[a.id], [b.id]]), stack.output()
    assert sum(r.read_count for r in children) == ACCOUNTS
    assert account_count(database_url) == (ACCOUNTS, ACCOUNTS)
