"""``crmsync sync cursor show|reset`` and a future ``--since``, as a user runs them (#14).

Real processes against the sandbox, on the test database (SQLite or PostgreSQL).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from app.db.engine import make_session_factory
from app.db.sync_store import SqlSyncStore
from app.sync import backfill as backfills
from app.sync.cursor import CursorState
from crmsync_sandbox import Sandbox
from tests.acceptance.test_cli import crmsync, sandbox, sandbox_env

__all__ = ["sandbox"]  # the module-scoped sandbox fixture, shared with test_cli


def cursors(env: dict[str, str], cwd: Path, *args: str) -> list[dict[str, Any]]:
    shown = crmsync("sync", "cursor", "show", *args, env=env, cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    listed: list[dict[str, Any]] = json.loads(shown.stdout)["cursors"]
    return listed


def reset(env: dict[str, str], cwd: Path, obj: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``crmsync sync cursor reset --crm salesforce --object obj`` with ``args``."""
    return crmsync(
        "sync", "cursor", "reset", "--crm", "salesforce", "--object", obj, *args, env=env, cwd=cwd
    )


@pytest.fixture
def store(database_url: str) -> Iterator[SqlSyncStore]:
    """The test database seen as the sync engine sees it (to write checkpoints, hold leases)."""
    db = create_engine(database_url)
    try:
        yield SqlSyncStore(make_session_factory(db))
    finally:
        db.dispose()


@contextmanager
def lease_held(store: SqlSyncStore, name: str) -> Iterator[None]:
    """Lease ``name`` held, as a live pass on this host holds it, while the block runs."""
    holder = f"{socket.gethostname()}:{os.getpid()}:test"
    store.acquire_lease(name, holder, timedelta(minutes=5))
    try:
        yield
    finally:
        store.release_lease(name, holder)


def test_a_future_since_is_refused_and_moves_no_cursor(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(sandbox, database_url)
    future = crmsync(
        "sync", "backfill", "--crm", "salesforce", "--since", "2030-01-01", env=env, cwd=tmp_path
    )
    assert future.returncode == 2
    assert "--since 2030-01-01 is in the future" in future.stderr
    assert "Traceback" not in future.stderr
    assert cursors(env, tmp_path, "--crm", "salesforce") == []


def test_cursor_show_and_reset_repair_a_stream(
    sandbox: Sandbox, database_url: str, tmp_path: Path, store: SqlSyncStore
) -> None:
    env = sandbox_env(sandbox, database_url)
    done = crmsync("sync", "backfill", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = cursors(env, tmp_path, "--crm", "salesforce", "--object", "Account")
    assert [(c["object"], c["stream"]) for c in shown] == [
        ("Account", "backfill"),
        ("Account", "changes"),
    ]
    assert shown[0]["state"]["in_progress"] is False
    assert shown[1]["watermark_at"] is not None

    moved = reset(env, tmp_path, "Account", "--to", "2026-01-01")
    assert moved.returncode == 0, moved.stderr
    change = json.loads(moved.stdout)["reset"][0]
    assert change["before"]["watermark_at"] == shown[1]["watermark_at"]
    assert change["after"]["watermark_at"] == "2026-01-01T00:00:00+00:00"
    assert "salesforce Account changes" in moved.stderr
    changes = cursors(env, tmp_path, "--crm", "salesforce", "--object", "Account")[1]
    assert (changes["watermark_at"], changes["watermark_id"]) == ("2026-01-01T00:00:00+00:00", None)

    future = reset(env, tmp_path, "Account", "--to", "2099-01-01")
    assert future.returncode == 2
    assert "future" in future.stderr

    # A live pass holds the object's lease: refused, nothing changed.
    with lease_held(store, "sync:salesforce:Account"):
        held = reset(env, tmp_path, "Account")
    assert held.returncode == 1
    assert "sync:salesforce:Account" in held.stderr
    assert cursors(env, tmp_path, "--crm", "salesforce", "--object", "Account")[1] == changes

    cleared = reset(env, tmp_path, "Account")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["reset"][0]["after"] is None
    left = cursors(env, tmp_path, "--crm", "salesforce", "--object", "Account")
    assert [c["stream"] for c in left] == ["backfill"]
    # Only the object named was touched.
    assert len(cursors(env, tmp_path, "--crm", "salesforce", "--object", "Opportunity")) == 2

    unknown = reset(env, tmp_path, "Acount")
    assert unknown.returncode == 2
    assert "Acount" in unknown.stderr


def test_a_completed_backfill_run_again_begins_a_new_one(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = sandbox_env(sandbox, database_url)
    first = crmsync("sync", "backfill", "--crm", "hubspot", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = crmsync("sync", "backfill", "--crm", "hubspot", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    a, b = (json.loads(r.stdout)["runs"] for r in (first, second))
    assert [r["backfill"]["step"] for r in b] == ["start"] * len(b)
    assert b[0]["backfill"]["generation"] != a[0]["backfill"]["generation"]
    assert b[0]["read"] == a[0]["read"] > 0
    other_since = crmsync(
        "sync", "backfill", "--crm", "hubspot", "--since", "2026-01-01", env=env, cwd=tmp_path
    )
    assert other_since.returncode == 0, other_since.stderr  # nothing open: a new one, no conflict


def test_reset_clears_one_partition_checkpoint_under_its_own_lease(
    sandbox: Sandbox, database_url: str, tmp_path: Path, store: SqlSyncStore
) -> None:
    """A partitioned backfill's checkpoints (``backfill:p<i>``, ADR 0008) are streams too: one
    is cleared alone, refused while its partition's lease is held, never with ``--to``."""
    env = sandbox_env(sandbox, database_url)
    generation = backfills.Generation(datetime(2026, 3, 1, tzinfo=UTC), None)
    read = CursorState(at=datetime(2025, 6, 1, tzinfo=UTC), id="001A")
    checkpoint = backfills.page_state(generation, read)
    with store.page() as writer:
        for stream in ("backfill:p0", "backfill:p1"):
            writer.save_cursor("salesforce", "Account", stream, checkpoint)
    shown = cursors(env, tmp_path, "--crm", "salesforce", "--object", "Account")
    assert sorted(c["stream"] for c in shown) == ["backfill:p0", "backfill:p1"]

    with lease_held(store, "sync:salesforce:Account:p1"):
        held = reset(env, tmp_path, "Account", "--stream", "backfill:p1")
    assert held.returncode == 1
    assert "sync:salesforce:Account:p1" in held.stderr

    with_to = reset(env, tmp_path, "Account", "--stream", "backfill:p1", "--to", "2026-01-01")
    assert with_to.returncode == 2
    bad = reset(env, tmp_path, "Account", "--stream", "backfill:p99")
    assert bad.returncode == 2
    assert "backfill:p<0..15>" in bad.stderr

    # The object's own lease (a pass of the object) does not hold a partition's checkpoint.
    with lease_held(store, "sync:salesforce:Account"):
        cleared = reset(env, tmp_path, "Account", "--stream", "backfill:p1")
    assert cleared.returncode == 0, cleared.stderr
    change = json.loads(cleared.stdout)["reset"][0]
    assert (change["stream"], change["after"]) == ("backfill:p1", None)
    assert change["before"]["watermark_id"] == "001A"
    left = cursors(env, tmp_path, "--crm", "salesforce", "--object", "Account")
    assert [c["stream"] for c in left] == ["backfill:p0"]
