"""The console's admin pages (status, runs, new backfill, errors, webhook inbox, keys): what each
role sees and may do, CSRF on every action, field errors from the API's validation, and the
audit rows written as the signed-in key. On the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import AdminApiKey, AuditEntry, SyncErrorRecord, SyncRun, WebhookEvent
from app.main import create_app
from app.settings import Settings
from tests.support.console import console_client, csrf_token


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,
        hubspot_base_url="https://127.0.0.1:9",
        hubspot_access_token="pat-test",
        webhooks={"embedded_worker": False},
    )
    return create_app(settings)


@pytest.fixture
def factory(app: FastAPI) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.state.session_factory
    return factory


@pytest.fixture
def viewer(app: FastAPI) -> Iterator[TestClient]:
    with console_client(app, "viewer", name="watcher") as client:
        yield client


@pytest.fixture
def operator(app: FastAPI) -> Iterator[TestClient]:
    with console_client(app, "operator", name="fixer") as client:
        yield client


@pytest.fixture
def admin(app: FastAPI) -> Iterator[TestClient]:
    with console_client(app, "admin", name="boss") as client:
        yield client


def add(factory: sessionmaker[Session], *rows: Any) -> list[int]:
    with factory() as s:
        s.add_all(rows)
        s.commit()
        return [r.id for r in rows]


def audit(factory: sessionmaker[Session], action: str) -> list[tuple[str, str | None]]:
    with factory() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return [(a.actor, a.target) for a in rows]


def run(**kw: Any) -> SyncRun:
    now = utcnow()
    values: dict[str, Any] = {
        "kind": "pull",
        "crm": "hubspot",
        "object": "companies",
        "status": "succeeded",
        "triggered_by": "cli",
        "params": {},
        "started_at": now - timedelta(minutes=10),
        "finished_at": now - timedelta(minutes=9),
    }
    values.update(kw)
    return SyncRun(**values)


def error(**kw: Any) -> SyncErrorRecord:
    values: dict[str, Any] = {
        "crm": "hubspot",
        "object": "companies",
        "record_id": "101",
        "category": "invalid_field",
        "message": "name: longer than 255",
        "payload": {"field": "name", "value": "N" * 30},
        "retriable": False,
    }
    values.update(kw)
    return SyncErrorRecord(**values)


def event(**kw: Any) -> WebhookEvent:
    values: dict[str, Any] = {
        "source": "hubspot",
        "external_id": "e1",
        "event_type": "deal.propertyChange",
        "object_id": "9001",
        "raw_body": '[{"eventId": 1}]',
        "headers": {"X-HubSpot-Signature-v3": "sig-value-123", "Content-Type": "application/json"},
        "status": "dead",
        "attempts": 8,
        "last_error": "deal 9001: HTTP 500",
    }
    values.update(kw)
    return WebhookEvent(**values)


def post(client: TestClient, url: str, **data: str) -> Any:
    return client.post(url, data={"csrf_token": csrf_token(client), **data}, follow_redirects=False)


def test_runs_list_filters_pages_and_names_a_bad_filter(
    viewer: TestClient, factory: sessionmaker[Session]
) -> None:
    ids = add(factory, *[run(kind="backfill") for _ in range(26)], run(status="failed"))
    page = viewer.get("/console/runs")
    assert page.status_code == 200
    listed = re.findall(r'<a href="/console/runs/(\d+)">', page.text)
    assert [int(i) for i in listed] == sorted(ids, reverse=True)[:25]
    nxt = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert nxt
    second = viewer.get(nxt.group(1).replace("&amp;", "&"))
    second_ids = [int(i) for i in re.findall(r'<a href="/console/runs/(\d+)">', second.text)]
    assert second_ids == sorted(ids, reverse=True)[25:]
    failed = viewer.get("/console/runs?status=failed&crm=")
    assert re.findall(r'<a href="/console/runs/(\d+)">', failed.text) == [str(ids[-1])]
    bad = viewer.get("/console/runs?status=done")
    assert bad.status_code == 422
    assert 'id="err-status"' in bad.text
    assert "unknown status &#39;done&#39;" in bad.text


def test_a_viewer_sees_no_actions_and_a_forged_cancel_is_403(
    viewer: TestClient, operator: TestClient, factory: sessionmaker[Session]
) -> None:
    (run_id,) = add(factory, run(status="queued", started_at=None, finished_at=None))
    page = viewer.get(f"/console/runs/{run_id}")
    assert page.status_code == 200
    assert "Cancel run" not in page.text
    assert 'hx-get="/console/runs/' in page.text
    assert "New backfill" not in viewer.get("/console/runs").text
    forged = post(viewer, f"/console/runs/{run_id}/cancel")  # a valid session and CSRF token
    assert forged.status_code == 403
    assert "needs the operator role" in forged.text
    no_token = operator.post(f"/console/runs/{run_id}/cancel", data={"csrf_token": "x"})
    assert no_token.status_code == 403
    with factory() as s:
        assert s.get(SyncRun, run_id).status == "queued"  # type: ignore[union-attr]
    assert audit(factory, "sync_run.cancel") == []
    assert "Cancel run" in operator.get(f"/console/runs/{run_id}").text
    done = post(operator, f"/console/runs/{run_id}/cancel")
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/console/runs/{run_id}?notice=")
    with factory() as s:
        assert s.get(SyncRun, run_id).status == "cancelled"  # type: ignore[union-attr]
    assert audit(factory, "sync_run.cancel") == [("key:fixer", f"sync_run:{run_id}")]
    (finished,) = add(factory, run())
    refused = post(operator, f"/console/runs/{finished}/cancel")
    assert refused.headers["location"].startswith(f"/console/runs/{finished}?error=")
    assert "already%20finished" in refused.headers["location"]


def test_new_backfill_shows_the_estimate_then_starts_it_as_the_key(
    viewer: TestClient, operator: TestClient, factory: sessionmaker[Session]
) -> None:
    assert viewer.get("/console/runs/new").status_code == 403
    form = operator.get("/console/runs/new")
    assert form.status_code == 200
    assert 'action="/console/runs/new/estimate"' in form.text
    future = (utcnow() + timedelta(days=3)).date().isoformat()
    bad = post(operator, "/console/runs/new/estimate", crm="hubspot", since=future)
    assert bad.status_code == 422
    assert 'id="err-since"' in bad.text
    assert "since is in the future" in bad.text
    unknown = post(operator, "/console/runs/new/estimate", crm="hubspot", object="widgets")
    assert unknown.status_code == 422
    assert 'id="err-object"' in unknown.text
    assert "unknown backfill object for hubspot" in unknown.text
    off = post(operator, "/console/runs/new/estimate", crm="salesforce")
    assert off.status_code == 422
    assert "salesforce is not configured" in off.text
    estimate = post(
        operator,
        "/console/runs/new/estimate",
        crm="hubspot",
        object="companies",
        since="2026-01-01",
    )
    assert estimate.status_code == 200
    assert 'id="estimate"' in estimate.text
    assert "No budget check" in estimate.text
    assert 'action="/console/runs/new"' in estimate.text
    with factory() as s:
        assert s.scalars(select(SyncRun)).all() == []  # the estimate starts nothing
    started = post(
        operator, "/console/runs/new", crm="hubspot", object="companies", since="2026-01-01"
    )
    assert started.status_code == 303
    run_id = int(started.headers["location"].split("/")[-1].split("?")[0])
    with factory() as s:
        row = s.get(SyncRun, run_id)
        assert row is not None
        assert (row.kind, row.crm, row.object, row.status) == (
            "backfill",
            "hubspot",
            "companies",
            "queued",
        )
        assert row.params["since"].startswith("2026-01-01T00:00:00")
    assert audit(factory, "sync_run.trigger") == [("key:fixer", f"sync_run:{run_id}")]
    assert post(viewer, "/console/runs/new", crm="hubspot").status_code == 403


def test_errors_filter_payload_resolve_with_a_comment_and_retry(
    viewer: TestClient, operator: TestClient, factory: sessionmaker[Session]
) -> None:
    ids = add(
        factory,
        error(),
        error(crm="salesforce", object="Account", category="rate_limit", retriable=True),
    )
    page = viewer.get("/console/errors?crm=hubspot")
    assert page.status_code == 200
    assert f'id="error-{ids[0]}"' in page.text
    assert f'id="error-{ids[1]}"' not in page.text
    assert "<details><summary>name: longer than 255</summary><pre>" in page.text
    assert "Retry all filtered" not in page.text
    assert "Resolve" not in page.text
    retriable = viewer.get("/console/errors?retriable=true")
    assert f'id="error-{ids[1]}"' in retriable.text
    assert f'id="error-{ids[0]}"' not in retriable.text
    bad = viewer.get("/console/errors?category=weather&retriable=maybe")
    assert bad.status_code == 422
    assert 'id="err-category"' in bad.text
    assert 'id="err-retriable"' in bad.text
    detail = viewer.get(f"/console/errors/{ids[0]}")
    assert 'id="payload"' in detail.text
    assert "NNNN" in detail.text
    assert post(viewer, f"/console/errors/{ids[0]}/resolve", comment="x").status_code == 403
    empty = post(operator, f"/console/errors/{ids[0]}/resolve", comment="  ")
    assert empty.status_code == 422
    assert 'id="err-comment"' in empty.text
    done = post(operator, f"/console/errors/{ids[0]}/resolve", comment="shortened in HubSpot")
    assert done.status_code == 303
    assert "notice=" in done.headers["location"]
    with factory() as s:
        row = s.get(SyncErrorRecord, ids[0])
        assert row is not None
        assert row.resolved_by == "key:fixer"
        assert row.resolution_note == "shortened in HubSpot"
    assert audit(factory, "sync_error.resolve") == [("key:fixer", f"sync_error:{ids[0]}")]
    # Not retriable: the API's 409 comes back as the page's error banner.
    refused = post(operator, f"/console/errors/{ids[0]}/retry")
    assert refused.status_code == 303
    assert "error=" in refused.headers["location"]
    assert post(viewer, "/console/errors/retry", crm="hubspot").status_code == 403
    nothing = post(operator, "/console/errors/retry", crm="hubspot", next="/console/errors")
    assert nothing.status_code == 303
    assert "retried%200%3A%20nothing%20to%20retry" in nothing.headers["location"]
    assert audit(factory, "sync_error.retry_all") == [("key:fixer", "sync_errors")]


def test_inbox_filter_headers_masked_and_replay(
    viewer: TestClient, operator: TestClient, factory: sessionmaker[Session]
) -> None:
    ids = add(factory, event(), event(external_id="e2", status="done", last_error="plan 7 made"))
    settled = viewer.get(f"/console/inbox/{ids[1]}").text
    assert "Outcome</dt><dd>plan 7 made" in settled
    assert "Last error" not in settled  # a done event's note is not shown as an error
    assert 'Last error</dt><dd class="field-error">deal 9001: HTTP 500' in (
        viewer.get(f"/console/inbox/{ids[0]}").text
    )
    dead = viewer.get("/console/inbox?status=dead")
    assert f'id="event-{ids[0]}"' in dead.text
    assert f'id="event-{ids[1]}"' not in dead.text
    assert "Replay" not in dead.text
    bad = viewer.get("/console/inbox?status=lost")
    assert bad.status_code == 422
    assert 'id="err-status"' in bad.text
    page = viewer.get(f"/console/inbox/{ids[0]}")
    assert "X-HubSpot-Signature-v3" in page.text
    assert "sig-value-123" not in page.text
    assert "application/json" in page.text
    assert "[{&#34;eventId&#34;: 1}]" in page.text
    assert post(viewer, f"/console/inbox/{ids[0]}/replay").status_code == 403
    assert "Replay" in operator.get("/console/inbox?status=dead").text
    done = post(operator, f"/console/inbox/{ids[0]}/replay", next="/console/inbox?status=dead")
    assert done.status_code == 303
    assert done.headers["location"].startswith("/console/inbox?status=dead&notice=")
    with factory() as s:
        assert s.get(WebhookEvent, ids[0]).status == "received"  # type: ignore[union-attr]
    assert audit(factory, "webhook_event.replay") == [("key:fixer", f"webhook_event:{ids[0]}")]
    again = post(operator, f"/console/inbox/{ids[0]}/replay")
    assert "error=" in again.headers["location"]


def test_keys_are_admin_only_shown_once_and_revoked(
    viewer: TestClient, operator: TestClient, admin: TestClient, factory: sessionmaker[Session]
) -> None:
    assert viewer.get("/console/keys").status_code == 403
    assert operator.get("/console/keys").status_code == 403
    assert post(operator, "/console/keys", name="x", role="admin").status_code == 403
    assert 'href="/console/keys"' in admin.get("/console/status").text
    created = post(admin, "/console/keys", name="ci-bot", role="operator", expires_days="30")
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    key = re.search(r'id="new-key">(crmsync_[^<]+)<', created.text)
    assert key
    listing = admin.get("/console/keys")
    assert key.group(1) not in listing.text
    assert "ci-bot" in listing.text
    dup = post(admin, "/console/keys", name="ci-bot", role="viewer")
    assert dup.status_code == 422
    assert 'id="err-name"' in dup.text
    assert "already named" in dup.text
    blank = post(admin, "/console/keys", name="", role="boss", expires_days="0")
    assert blank.status_code == 422
    assert 'id="err-name"' in blank.text
    assert 'id="err-role"' in blank.text
    assert 'id="err-expires_days"' in blank.text
    with factory() as s:
        key_id = s.scalar(select(AdminApiKey.id).where(AdminApiKey.name == "ci-bot"))
    assert post(operator, f"/console/keys/{key_id}/revoke").status_code == 403
    revoked = post(admin, f"/console/keys/{key_id}/revoke")
    assert revoked.status_code == 303
    assert "notice=" in revoked.headers["location"]
    with factory() as s:
        row = s.get(AdminApiKey, key_id)
        assert row is not None
        assert row.revoked_at is not None
    assert audit(factory, "api_key.create") == [("key:boss", f"api_key:{key_id}")]
    assert audit(factory, "api_key.revoke") == [("key:boss", f"api_key:{key_id}")]
