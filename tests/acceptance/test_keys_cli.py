"""``crmsync keys create|list|revoke`` as a user runs them, and the key they print at work."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.engine import make_engine, make_session_factory
from app.db.models import AdminApiKey, AuditEntry
from app.main import create_app
from app.settings import Settings
from tests.support.cli import clean_env, run_crmsync


def test_create_list_revoke_and_the_key_works_until_revoked(
    database_url: str, tmp_path: Path
) -> None:
    env = clean_env(database_url=database_url)
    made = run_crmsync(
        "keys", "create", "--role", "operator", "--name", "ci-bot", "--expires", "7",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    key = created["key"]
    assert key.startswith("crmsync_")
    assert created["role"] == "operator"
    assert created["expires_at"] is not None

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            stored = session.scalars(select(AdminApiKey)).one()
            assert key not in (stored.key_hash, stored.key_prefix)  # only a hash is stored
            actions = [
                (a.actor.startswith("cli:"), a.action) for a in session.scalars(select(AuditEntry))
            ]
            assert actions == [(True, "api_key.create")]
    finally:
        engine.dispose()

    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    with TestClient(create_app(settings), headers={"X-API-Key": key}) as api:
        assert api.get("/api/v1/audit").status_code == 200
        listed = run_crmsync("keys", "list", "--json", env=env, cwd=tmp_path)
        assert listed.returncode == 0
        (only,) = json.loads(listed.stdout)["keys"]
        assert (only["name"], only["state"]) == ("ci-bot", "active")
        assert "key" not in only

        revoked = run_crmsync("keys", "revoke", str(created["id"]), env=env, cwd=tmp_path)
        assert revoked.returncode == 0
        assert json.loads(revoked.stdout)["state"] == "revoked"
        r = api.get("/api/v1/audit")
        assert (r.status_code, r.json()["reason"]) == (401, "revoked")


def test_bad_input_is_one_line_and_exit_2(database_url: str, tmp_path: Path) -> None:
    env = clean_env(database_url=database_url)
    cases = [
        (("keys", "create", "--role", "root", "--name", "x"), "--role 'root'"),
        (("keys", "create", "--role", "admin", "--name", "x", "--expires", "0"), "--expires"),
        (("keys", "revoke", "41"), "no API key with id 41"),
    ]
    for argv, words in cases:
        done = run_crmsync(*argv, env=env, cwd=tmp_path)
        assert done.returncode == 2, (argv, done.stderr)
        assert words in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2
    run_crmsync("keys", "create", "--role", "admin", "--name", "dup", env=env, cwd=tmp_path)
    again = run_crmsync("keys", "create", "--role", "admin", "--name", "dup", env=env, cwd=tmp_path)
    assert again.returncode == 2
    assert "already named 'dup'" in again.stderr
