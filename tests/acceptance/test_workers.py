"""Jobs as they run in production: separate processes started from the command line.

* ``crmsync serve`` (the API) and two ``crmsync worker`` processes on Redis, on the suite's
  database (PostgreSQL in the PostgreSQL run): a backfill triggered through the API runs on the
  workers, every record once (#19 item 7's process test).
* ``crmsync serve --with-worker`` on the embedded SQLite queue: the one-process setup.
* A worker killed with ``kill -9`` during a backfill: the run is closed as abandoned and
  resumed by the other worker from its cursor; nothing lost, nothing twice (#19 item 8).
* The same during one partition of a partitioned backfill: the other worker runs the other
  partition and the sweeper's resumption of the dead one; the parent succeeds, every record
  once, the object's cursor at the newest record read.
* A worker killed while its POST of an onboarding notice waits for an answer: once the claim
  expires the sweeper hands the notice to the restarted worker, which delivers it.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from app.db.base import utcnow
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


def closed(database_url: str, run_id: int) -> Callable[[], SyncRun | None]:
    """For :func:`wait_until`: run ``run_id``'s row once it is no longer queued or running."""

    def check() -> SyncRun | None:
        row = next(r for r in run_rows(database_url) if r.id == run_id)
        return row if row.status not in ("queued", "running") else None

    return check


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

        row = wait_until(closed(database_url, resumption), 120, "the resumption", stack)
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


@contextmanager
def slow_salesforce_pages(sandbox: Sandbox, ms: int) -> Iterator[None]:
    """Every Salesforce query page the sandbox serves takes ``ms`` more while the block runs."""
    sandbox.control(
        "PUT", "/faults", json={"routes": [{"match": "GET /services/*", "slow_ms": ms}]}
    )
    try:
        yield
    finally:
        sandbox.control("PUT", "/faults", json={"routes": []})


def queue_partitioned_backfill(stack: Stack) -> dict[str, Any]:
    """``crmsync sync backfill --partitions 2`` of Salesforce's Account as a user runs it (it
    queues the parent run); its JSON answer."""
    queued = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "sync", "backfill", "--crm", "salesforce",
         "--object", "Account", "--partitions", "2"],
        env=stack.env, cwd=stack.cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    answer: dict[str, Any] = json.loads(queued.stdout)
    return answer


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
    stack = Stack(env, tmp_path)
    # Every query page takes 0.25 s: each partition lasts seconds, long enough to overlap.
    with slow_salesforce_pages(sandbox, 250):
        try:
            answer = queue_partitioned_backfill(stack)
            (parent,) = [r["run_id"] for r in answer["runs"]]
            assert answer["status"] == "queued"
            stack.start("worker", "--workers", "1", name="worker1")
            stack.start("worker", "--workers", "1", name="worker2")
            done = wait_until(closed(database_url, parent), 240, "the partitioned backfill", stack)
        finally:
            stack.stop()
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


def test_a_worker_killed_during_a_partition_is_finished_by_the_sweeper_and_the_other(
    sandbox: Sandbox, redis_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """``kill -9`` of the worker running one partition of a partitioned backfill: the other
    worker runs the other partition, the sweeper resumes the dead one from its checkpoint on
    it, and the parent succeeds with every record once and the cursor at the newest read."""
    env = {
        **redis_env,
        "CRMSYNC_SYNC__PAGE_SIZE": "200",
        "CRMSYNC_SYNC__LEASE_SECONDS": "2",
        "CRMSYNC_SYNC__LOOKBACK_SECONDS": "0",
        "CRMSYNC_SYNC__BULK_THRESHOLD": "1000000",  # REST pages, each slowed below
    }
    stack = Stack(env, tmp_path)
    # Every query page takes 0.4 s: a partition (about 8 pages) lasts seconds, time to kill it.
    with slow_salesforce_pages(sandbox, 400):
        try:
            (parent,) = [r["run_id"] for r in queue_partitioned_backfill(stack)["runs"]]
            doomed = stack.start("worker", "--workers", "1", name="worker1")

            def midway() -> SyncRun | None:
                for row in run_rows(database_url):
                    child = (row.params or {}).get("parent") == parent and row.status == "running"
                    if child and 400 <= row.read_count < ACCOUNTS // 2 - 400:
                        return row
                return None

            victim = wait_until(midway, 120, "a partition to be midway", stack)
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait()
            killed = next(r for r in run_rows(database_url) if r.id == victim.id)
            assert killed.status == "running"  # nobody closed it: the process is gone
            stack.start("worker", "--workers", "1", name="worker2")
            time.sleep(4.5)  # two lease TTLs without a heartbeat: the sweeper calls it stalled
            swept = _sweep(env)
            resumption = swept["resumed_runs"][str(victim.id)]
            done = wait_until(closed(database_url, parent), 240, "the partitioned backfill", stack)
        finally:
            stack.stop()
    assert done.status == "succeeded", stack.output()
    rows = {r.id: r for r in run_rows(database_url)}
    dead, resumed = rows[victim.id], rows[resumption]
    assert dead.status == "failed", stack.output()  # closed as abandoned by its resumption
    assert (dead.error or "").startswith("abandoned"), dead.error
    assert resumed.status == "succeeded", stack.output()
    assert (resumed.kind, resumed.params["resumes"]) == (dead.kind, dead.id)
    # From the dead child's checkpoint: the pages it committed were not read again.
    assert resumed.cursor_from is not None
    children = [r for r in rows.values() if (r.params or {}).get("parent") == parent]
    other = [r for r in children if r.kind != dead.kind]
    assert [r.status for r in other] == ["succeeded"], stack.output()
    assert dead.read_count + resumed.read_count + other[0].read_count == ACCOUNTS
    assert account_count(database_url) == (ACCOUNTS, ACCOUNTS)  # every record once
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            from app.db import cursors

            changes = cursors.load_cursor(s, "salesforce", "Account", "changes")
            newest = s.scalar(select(func.max(Account.sf_modified_at)))
    finally:
        engine.dispose()
    assert changes.at is not None
    assert newest is not None
    assert changes.at == newest  # the cursor moved to the newest record read, once, at the end


class _Receiver:
    """A chat webhook on localhost: it holds the first POST unanswered (the worker is killed
    while waiting on it) and answers every later one 200."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict[str, Any]] = []
        self.answered: list[dict[str, Any]] = []
        self.first = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.append(body)
                if len(receiver.bodies) == 1:
                    receiver.first.set()
                    receiver.release.wait(60)  # never answered: its sender dies meanwhile
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.answered.append(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/onboarding"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_worker_killed_while_posting_a_notice_leaves_it_to_be_delivered_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    """``kill -9`` of the worker while its POST of an onboarding notice waits for an answer:
    the notice stays ``pending`` (claimed for two minutes); once the claim has expired the
    sweeper hands it to the restarted worker, which delivers it. The receiver answered one
    delivery: the one it never answered is the documented at-least-once repeat."""
    from app.db.models import OnboardingPlan
    from app.jobs.tasks import JobQueue
    from app.settings import Settings
    from app.wiring.notices import CLAIM
    from tests.acceptance.test_cli import base_env
    from tests.integration.test_webhooks_notice import plan

    receiver = _Receiver()
    env = {
        **base_env(database_url),
        "CRMSYNC_DATA_DIR": str(tmp_path / "data"),  # the embedded SQLite queue
        "CRMSYNC_WEBHOOKS__NOTICE_URL": receiver.url,
        "CRMSYNC_WEBHOOKS__NOTICE_TIMEOUT_SECONDS": "120",
        "CRMSYNC_JOBS__INCREMENTAL_MINUTES": "0",
        "CRMSYNC_JOBS__NIGHTLY_HOUR": "-1",
    }
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=tmp_path / "data",
        jobs={"sweep_seconds": 1},  # type: ignore[arg-type]
    )
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    jobs = JobQueue(settings, session_factory=factory, periodic=False)
    stack = Stack(env, tmp_path)

    def notice() -> tuple[str | None, int]:
        with factory() as s:
            row = s.get(OnboardingPlan, plan_id)
            assert row is not None
            return row.notice_status, row.notice_attempts

    try:
        plan_id = plan(engine)
        doomed = stack.start("worker", "--workers", "1", name="worker1")
        jobs.enqueue_notice(plan_id)
        if not receiver.first.wait(60):
            raise AssertionError(f"the notice was never posted\n{stack.output()}")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        assert notice() == ("pending", 1)  # claimed by the dead worker, not sent
        assert jobs.sweep().notices == []  # its claim still holds: nobody sends it twice

        # The claim expires (CLAIM after the dead worker took it).
        with factory() as s:
            s.execute(
                update(OnboardingPlan)
                .where(OnboardingPlan.id == plan_id)
                .values(notice_due_at=utcnow() - CLAIM)
            )
            s.commit()
        stack.start("worker", "--workers", "1", name="worker2")
        assert jobs.sweep().notices == [plan_id]
        wait_until(lambda: notice()[0] == "sent", 60, "the notice to be sent", stack)
        assert jobs.sweep().notices == []  # sent: never again
        time.sleep(1)
        final = notice()
    finally:
        stack.stop()
        jobs.close()
        engine.dispose()
        receiver.close()
    assert final == ("sent", 2), stack.output()
    assert len(receiver.answered) == 1  # delivered once
    assert [b["plan_id"] for b in receiver.bodies] == [plan_id, plan_id]
    assert receiver.bodies[0] == receiver.bodies[1]  # the same message again
