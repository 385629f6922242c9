"""``crmsync demo`` and ``crmsync sandbox`` never damage a user's data or settings.

* The demo writes into its own ``./var/demo.db`` and reads neither ``.env`` nor
  ``CRMSYNC_DATABASE_URL``; a database that holds data the demo did not write is refused (exit 2,
  untouched); its own database, or an empty one, works again and again.
* ``crmsync sandbox --env-file`` replaces only a file it wrote itself, unless ``--force``.
* A port already in use is two lines and exit 2, no traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select

from app.cli.demo_db import DEMO_TRIGGER
from app.core.access import Role
from app.db.api_keys import Principal, authenticate
from app.db.engine import make_engine, make_session_factory
from app.db.models import Account, AdminApiKey, SyncRun
from tests.support.cli import clean_env, run_crmsync

ACCOUNTS = "4"  # companies per CRM: enough to sync every object, small enough to be quick


def count(engine: Engine, model: type[Account] | type[SyncRun]) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def user_db(database_url: str) -> Iterator[Engine]:
    """A user's database: one hand-made account, one run of ``crmsync sync``."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(Account).values(name="Hand-synced GmbH", sf_id="001HAND00000001AAA"))
        conn.execute(
            insert(SyncRun).values(
                kind="pull", crm="salesforce", object="Account", triggered_by="cli"
            )
        )
    yield engine
    engine.dispose()


def assert_untouched(engine: Engine) -> None:
    with engine.connect() as conn:
        names = conn.scalars(select(Account.name)).all()
        triggers = conn.scalars(select(SyncRun.triggered_by)).all()
    assert names == ["Hand-synced GmbH"]
    assert triggers == ["cli"]


def assert_refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, done.stderr
    for needle in needles:
        assert needle in done.stderr


def test_demo_ignores_the_configured_database_and_dotenv(
    user_db: Engine, database_url: str, tmp_path: Path
) -> None:
    # the user's settings, both ways: in the environment and in ./.env (with a CRM token)
    (tmp_path / ".env").write_text(
        f"CRMSYNC_DATABASE_URL={database_url}\nCRMSYNC_HUBSPOT_ACCESS_TOKEN=pat-real-token\n"
    )
    env = clean_env(database_url=database_url)
    first = run_crmsync("demo", "--accounts", ACCOUNTS, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert_untouched(user_db)
    demo_db = make_engine(f"sqlite:///{tmp_path / 'var' / 'demo.db'}")
    try:
        assert count(demo_db, Account) == 8  # 4 from each CRM
    finally:
        demo_db.dispose()
    assert "var/demo.db" in first.stderr
    # It ends with the console's URL and an operator key stored in the demo's database.
    last = first.stderr.strip().splitlines()
    assert last[-2].strip() == "open:    http://127.0.0.1:8000/console/"
    key = last[-1].rsplit(" ", 1)[-1]
    demo_db = make_engine(f"sqlite:///{tmp_path / 'var' / 'demo.db'}")
    try:
        with make_session_factory(demo_db)() as s:
            found = authenticate(s, key)
    finally:
        demo_db.dispose()
    assert isinstance(found, Principal)
    assert (found.name, found.role) == ("demo-operator", Role.OPERATOR)

    second = run_crmsync("demo", "--accounts", ACCOUNTS, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr  # its own database: recreated, not refused
    assert '"accounts": 8' in second.stderr
    assert_untouched(user_db)


def test_demo_refuses_a_database_with_data_it_did_not_write(
    user_db: Engine, database_url: str, tmp_path: Path
) -> None:
    env = clean_env()
    done = run_crmsync(
        "demo", "--accounts", ACCOUNTS, "--database-url", database_url, env=env, cwd=tmp_path
    )
    assert_refused(done, "refusing to write", "not started by the demo", "--database-url")
    assert_untouched(user_db)


def test_demo_refuses_its_default_file_once_a_user_synced_into_it(tmp_path: Path) -> None:
    demo_db = tmp_path / "var" / "demo.db"
    env = clean_env()
    assert run_crmsync("demo", "--accounts", ACCOUNTS, env=env, cwd=tmp_path).returncode == 0
    engine = make_engine(f"sqlite:///{demo_db}")
    try:
        with engine.begin() as conn:
            conn.execute(insert(SyncRun).values(kind="pull", crm="hubspot", object="deals"))
        done = run_crmsync("demo", "--accounts", ACCOUNTS, env=env, cwd=tmp_path)
        assert_refused(done, "var/demo.db", "move")
        assert count(engine, SyncRun) > 1  # not recreated
    finally:
        engine.dispose()


def test_demo_writes_into_an_empty_database_and_reuses_it(
    database_url: str, tmp_path: Path
) -> None:
    env = clean_env()
    args = ("demo", "--accounts", ACCOUNTS, "--database-url", database_url)
    assert run_crmsync(*args, env=env, cwd=tmp_path).returncode == 0
    again = run_crmsync(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            triggers = set(conn.scalars(select(SyncRun.triggered_by)))
        assert triggers == {DEMO_TRIGGER}
        assert count(engine, Account) == 8
        with engine.connect() as conn:  # a new console key each run, the earlier one revoked
            keys = conn.execute(
                select(AdminApiKey.revoked_at).where(AdminApiKey.name == "demo-operator")
            ).all()
        assert sorted(revoked is None for (revoked,) in keys) == [False, True]
    finally:
        engine.dispose()
    assert not (tmp_path / "var" / "demo.db").exists()


def start_sandbox(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "sandbox", "--accounts", "3", *args],
        env=clean_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_serving(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("env_file:"):
            return
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"sandbox exited with {proc.returncode}: {err}")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.communicate(timeout=30)  # waits, and closes the pipes


def test_sandbox_refuses_to_overwrite_a_users_env_file(tmp_path: Path) -> None:
    users = "CRMSYNC_HUBSPOT_ACCESS_TOKEN=pat-real-token\n"
    (tmp_path / ".env").write_text(users)
    refused = run_crmsync(
        "sandbox", "--port", "0", "--env-file", ".env", env=clean_env(), cwd=tmp_path
    )
    assert_refused(refused, ".env", "--force")
    assert (tmp_path / ".env").read_text() == users
    assert not (tmp_path / "var" / "sandbox.json").exists()  # refused before it started

    forced = start_sandbox(tmp_path, "--port", "0", "--env-file", ".env", "--force")
    try:
        wait_serving(forced)
    finally:
        stop(forced)
    written = (tmp_path / ".env").read_text()
    assert written.startswith("# written by crmsync sandbox")
    assert "pat-real-token" not in written

    own = start_sandbox(tmp_path, "--port", "0", "--env-file", ".env")  # its own file: fine
    try:
        wait_serving(own)
    finally:
        stop(own)
    assert (tmp_path / ".env").read_text() != written  # a new port and CA, rewritten


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_sandbox_on_a_port_in_use_says_so(taken_port: int, tmp_path: Path) -> None:
    done = run_crmsync("sandbox", "--port", str(taken_port), env=clean_env(), cwd=tmp_path)
    assert_refused(done, f"127.0.0.1:{taken_port}", "already in use", "--port")
    assert done.stdout == ""
