"""``crmsync runs|errors|inbox|status`` as an admin runs them: real processes, the sandbox, the
test database. The retry re-reads the record from the sandbox and syncs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.engine import make_engine, make_session_factory
from app.db.models import Account, AuditEntry, WebhookEvent
from app.wiring.sync import run_sync
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.integration.test_pull_pitfalls import settings_for, sf_rest
from tests.support.cli import clean_env, run_crmsync, sandbox_settings


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=6, hs_rate_limits=False)) as sb:
        yield sb


def crmsync(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, Any, str]:
    done = run_crmsync(*args, "--json", env=env, cwd=cwd)
    try:
        data = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        data = done.stdout
    return done.returncode, data, done.stderr


def test_admin_commands_end_to_end(sandbox: Sandbox, database_url: str, tmp_path: Path) -> None:
    env = clean_env(database_url=database_url)
    env.update(sandbox_settings(sandbox))
    q = "SELECT Id FROM Account ORDER BY Id LIMIT 2"
    fixed, bad = [
        r["Id"] for r in sf_rest(sandbox, "GET", "query/", params={"q": q}).json()["records"]
    ]
    for record_id in (fixed, bad):
        r = sf_rest(
            sandbox, "PATCH", f"sobjects/Account/{record_id}", json={"Website": "not a website"}
        )
        assert r.status_code == 204
    settings = settings_for(sandbox).model_copy(update={"database_url": database_url})
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    try:
        (result,) = run_sync(
            settings, factory, kind="pull", crms=["salesforce"], objects=["Account"]
        )  # type: ignore[arg-type]
        with factory() as s:
            s.add(WebhookEvent(source="hubspot", external_id="d1", raw_body="[]", status="dead"))
            s.commit()
    finally:
        engine.dispose()
    r = sf_rest(
        sandbox, "PATCH", f"sobjects/Account/{fixed}", json={"Website": "https://ok.example.org"}
    )
    assert r.status_code == 204

    code, runs, _ = crmsync(env, tmp_path, "runs", "list", "--crm", "salesforce")
    assert code == 0
    assert [x["id"] for x in runs["runs"]] == [result.run_id]
    code, shown, _ = crmsync(env, tmp_path, "runs", "show", str(result.run_id))
    assert (code, shown["status"], shown["open_errors"]) == (0, "partial", 2)
    assert shown["progress"]["records_per_second"] is not None
    assert shown["progress"]["expected"] == 6  # the CRM's count, kept for the ETA

    code, listed, _ = crmsync(env, tmp_path, "errors", "list", "--crm", "salesforce")
    assert code == 0
    errors = {e["record_id"]: e for e in listed["errors"]}
    assert errors[fixed]["payload"]["value"] == "not a website"

    code, report, err = crmsync(env, tmp_path, "errors", "retry", str(errors[fixed]["id"]))
    assert code == 0, err
    assert report["outcomes"] == {"resolved": 1}
    code, report, _ = crmsync(env, tmp_path, "errors", "retry", str(errors[bad]["id"]))
    assert code == 3  # retried, failed again
    assert report["outcomes"] == {"failed_again": 1}

    code, resolved, _ = crmsync(
        env, tmp_path, "errors", "resolve", str(errors[bad]["id"]), "--comment", "site is gone"
    )
    assert code == 0
    assert resolved["resolution"] == "manual"
    assert resolved["resolved_by"].startswith("cli:")
    code, _, err = crmsync(
        env, tmp_path, "errors", "resolve", str(errors[bad]["id"]), "--comment", "x"
    )
    assert code == 2
    assert "already resolved" in err

    code, status, _ = crmsync(env, tmp_path, "status")
    objects = {(o["crm"], o["object"]): o for o in status["objects"]}
    account = objects["salesforce", "Account"]
    assert (code, account["open_errors"], account["records"]) == (0, 0, 6)
    assert account["last_successful_run"]["kind"] == "pull"  # retry runs are not passes
    assert status["inbox"]["dead"] == 1

    code, inbox, _ = crmsync(env, tmp_path, "inbox", "list", "--status", "dead")
    assert code == 0
    (dead,) = inbox["events"]
    code, replayed, _ = crmsync(env, tmp_path, "inbox", "replay", str(dead["id"]))
    assert code in (0, 1)
    assert replayed["attempts"] == 0
    code, _, err = crmsync(env, tmp_path, "runs", "list", "--status", "done")
    assert code == 2
    assert "--status 'done'" in err
    assert "Traceback" not in err

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            domain = s.scalars(select(Account.domain).where(Account.sf_id == fixed)).one()
            actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    finally:
        engine.dispose()
    assert domain == "ok.example.org"
    assert actions == [
        "sync_error.retry",
        "sync_error.retry",
        "sync_error.resolve",
        "webhook_event.replay",
    ]


def test_runs_cancel_a_queued_run_then_refuse_the_finished_one(
    database_url: str, tmp_path: Path
) -> None:
    """``crmsync runs cancel``: a queued run is cancelled at once and audited as the CLI user;
    cancelling it again, or an unknown run, is exit 2 with a one-line reason."""
    from app.db.models import SyncRun

    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    try:
        with factory() as s, s.begin():
            queued = SyncRun(
                kind="backfill",
                crm="salesforce",
                object="Account",
                status="queued",
                triggered_by="api",
                params={},
            )
            s.add(queued)
        env = clean_env(database_url=database_url)
        code, answer, _ = crmsync(env, tmp_path, "runs", "cancel", str(queued.id))
        assert (code, answer) == (0, {"run_id": queued.id, "status": "cancelled"})
        code, _, err = crmsync(env, tmp_path, "runs", "cancel", str(queued.id))
        assert code == 2
        assert err.strip() == f"crmsync: run {queued.id} already finished (cancelled)"
        code, _, err = crmsync(env, tmp_path, "runs", "cancel", "99999")
        assert (code, err.strip()) == (2, "crmsync: no sync run with id 99999")
        with factory() as s:
            (entry,) = s.scalars(select(AuditEntry)).all()
            assert (entry.action, entry.target) == ("sync_run.cancel", f"sync_run:{queued.id}")
            assert entry.actor.startswith("cli:")
            assert s.get(SyncRun, queued.id).status == "cancelled"  # type: ignore[union-attr]
    finally:
        engine.dispose()
