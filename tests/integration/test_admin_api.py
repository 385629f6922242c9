"""The admin read routes and the writes that need no CRM: runs (live counts, rate, ETA), errors
(filters, payload, cursor, resolve), the webhook inbox (filters, replay), status, roles and
audit, on the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import (
    Account,
    SyncCursor,
    SyncErrorRecord,
    SyncRun,
    WebhookEvent,
)
from app.main import create_app
from app.settings import Settings
from tests.support.api import api_client

NOW = utcnow()


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's own "now": under xdist this module is imported long before a test runs."""
    global NOW  # the row helpers below read it
    NOW = utcnow()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,  # the embedded job queue's file (GET /status asks it), not ./var
        hubspot_base_url="https://127.0.0.1:9",
        hubspot_access_token="pat-test",
        # These tests set inbox states by hand: no embedded worker processing them meanwhile.
        webhooks={"embedded_worker": False},
    )
    return create_app(settings)


@pytest.fixture
def factory(app: FastAPI) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.state.session_factory
    return factory


@pytest.fixture
def viewer(app: FastAPI) -> Iterator[TestClient]:
    with api_client(app, "viewer", name="watcher") as client:
        yield client


@pytest.fixture
def operator(app: FastAPI) -> Iterator[TestClient]:
    with api_client(app, "operator", name="fixer") as client:
        yield client


def add(factory: sessionmaker[Session], *rows: Any) -> list[int]:
    with factory() as s:
        s.add_all(rows)
        s.commit()
        return [r.id for r in rows]


def run(**kw: Any) -> SyncRun:
    values: dict[str, Any] = {
        "kind": "pull",
        "crm": "hubspot",
        "object": "companies",
        "status": "succeeded",
        "triggered_by": "cli",
        "params": {},
        "started_at": NOW - timedelta(minutes=10),
        "finished_at": NOW - timedelta(minutes=9),
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
        "payload": {"field": "name", "value": "N" * 300},
        "retriable": False,
    }
    values.update(kw)
    return SyncErrorRecord(**values)


def pages(client: TestClient, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = client.get(url, params=query)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


def test_runs_list_filters_and_pages_newest_first(
    viewer: TestClient, factory: sessionmaker[Session]
) -> None:
    ids = add(
        factory,
        run(),
        run(kind="backfill", status="partial"),
        run(crm="salesforce", object="Account"),
        run(status="failed", error="boom"),
        run(kind="backfill"),
    )
    everything = pages(viewer, "/api/v1/sync/runs", {"limit": 2})
    assert [r["id"] for r in everything] == sorted(ids, reverse=True)
    backfills = pages(viewer, "/api/v1/sync/runs", {"kind": "backfill", "limit": 1})
    assert [r["id"] for r in backfills] == [ids[4], ids[1]]
    failed = viewer.get("/api/v1/sync/runs", params={"status": "failed"}).json()["items"]
    assert [(r["id"], r["error"]) for r in failed] == [(ids[3], "boom")]
    sf = viewer.get("/api/v1/sync/runs", params={"crm": "salesforce", "object": "Account"})
    assert [r["id"] for r in sf.json()["items"]] == [ids[2]]
    for params, field in (
        ({"kind": "sideways"}, "kind"),
        ({"status": "done"}, "status"),
        ({"crm": "pipedrive"}, "crm"),
        ({"limit": 0}, "limit"),
        ({"cursor": "nope"}, "cursor"),
    ):
        r = viewer.get("/api/v1/sync/runs", params=params)
        assert r.status_code == 422, params
        assert r.json()["detail"][0]["loc"] == ["query", field]
    first = viewer.get("/api/v1/sync/runs", params={"limit": 1}).json()["next_cursor"]
    r = viewer.get("/api/v1/sync/runs", params={"cursor": first, "kind": "backfill"})
    assert r.status_code == 422
    assert "other filters" in r.json()["detail"][0]["msg"]


def test_a_running_run_shows_live_counts_rate_and_eta(
    viewer: TestClient, factory: sessionmaker[Session]
) -> None:
    (run_id,) = add(
        factory,
        run(
            status="running",
            kind="backfill",
            finished_at=None,
            started_at=NOW - timedelta(seconds=100),
            heartbeat_at=NOW - timedelta(seconds=3),
            read_count=500,
            created_count=480,
            api_calls=5,
            params={"expected": 2000},
        ),
    )
    add(factory, error(run_id=run_id), error(run_id=run_id, record_id="102", resolved_at=NOW))
    r = viewer.get(f"/api/v1/sync/runs/{run_id}")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "running"
    assert body["counts"]["read"] == 500
    assert body["counts"]["created"] == 480
    assert body["api_calls"] == 5
    assert body["open_errors"] == 1
    progress = body["progress"]
    assert progress["expected"] == 2000
    assert progress["remaining"] == 1500
    assert progress["percent"] == 25.0
    assert 4.0 < progress["records_per_second"] <= 5.0
    assert 290 < progress["eta_seconds"] < 400
    assert body["heartbeat_age_seconds"] >= 3
    assert viewer.get("/api/v1/sync/runs/99999").status_code == 404


def test_errors_list_with_payload_filters_and_resolve(
    viewer: TestClient, operator: TestClient, factory: sessionmaker[Session]
) -> None:
    ids = add(
        factory,
        error(),
        error(record_id="102", category="transient", retriable=True, message="HTTP 503"),
        error(crm="salesforce", object="Account", record_id="001000000000000AAA"),
        error(record_id="103", resolved_at=NOW, resolution="synced"),
    )
    everything = pages(viewer, "/api/v1/sync/errors", {"limit": 3})
    assert [e["id"] for e in everything] == sorted(ids, reverse=True)
    assert everything[-1]["payload"] == {"field": "name", "value": "N" * 300}
    retriable = viewer.get("/api/v1/sync/errors", params={"retriable": "true"}).json()["items"]
    assert [e["id"] for e in retriable] == [ids[1]]
    still_open = pages(viewer, "/api/v1/sync/errors", {"resolved": "false", "crm": "hubspot"})
    assert [e["id"] for e in still_open] == [ids[1], ids[0]]
    r = viewer.get("/api/v1/sync/errors", params={"category": "weird"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "category"]
    assert viewer.get(f"/api/v1/sync/errors/{ids[2]}").json()["object"] == "Account"

    # A viewer may not act.
    r = viewer.post(f"/api/v1/sync/errors/{ids[0]}/resolve", json={"comment": "x"})
    assert (r.status_code, r.json()["required_role"]) == (403, "operator")
    assert viewer.post(f"/api/v1/sync/errors/{ids[0]}/retry").status_code == 403
    assert viewer.post("/api/v1/sync/errors/retry", json={}).status_code == 403

    r = operator.post(f"/api/v1/sync/errors/{ids[0]}/resolve", json={"comment": "  "})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "comment"]
    r = operator.post(
        f"/api/v1/sync/errors/{ids[0]}/resolve", json={"comment": "name shortened in HubSpot"}
    )
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["resolution"] == "manual"
    assert resolved["resolved_by"] == "key:fixer"
    assert resolved["resolution_note"] == "name shortened in HubSpot"
    again = operator.post(f"/api/v1/sync/errors/{ids[0]}/resolve", json={"comment": "again"})
    assert (again.status_code, again.json()["reason"]) == (409, "resolved")
    assert (
        operator.post("/api/v1/sync/errors/999/resolve", json={"comment": "x"}).status_code == 404
    )
    # A push error is not retried by re-reading the record.
    (push_error,) = add(factory, error(direction="push", record_id="104"))
    r = operator.post(f"/api/v1/sync/errors/{push_error}/retry")
    assert (r.status_code, r.json()["reason"]) == (409, "not_retriable")
    assert "next push" in r.json()["detail"]

    audit = viewer.get("/api/v1/audit", params={"action": "sync_error.resolve"}).json()["items"]
    assert [(a["actor"], a["target"]) for a in audit] == [("key:fixer", f"sync_error:{ids[0]}")]
    assert audit[0]["detail"]["comment"] == "name shortened in HubSpot"


def event(**kw: Any) -> WebhookEvent:
    values: dict[str, Any] = {
        "source": "hubspot",
        "external_id": "e1",
        "event_type": "deal.propertyChange",
        "object_id": "9001",
        "raw_body": '[{"eventId": 1}]',
        "headers": {"X-HubSpot-Signature-v3": "secret-ish"},
        "status": "dead",
        "attempts": 8,
        "last_error": "deal 9001: HTTP 500",
    }
    values.update(kw)
    return WebhookEvent(**values)


def test_inbox_by_status_and_replay(
    viewer: TestClient, operator: TestClient, factory: sessionmaker[Session]
) -> None:
    ids = add(
        factory,
        event(),
        event(external_id="e2", status="received", attempts=0, last_error=None),
        event(external_id="e3", status="failed", attempts=2),
        event(
            external_id="e4",
            status="done",
            attempts=1,
            handled_at=NOW,
            last_error="plan 7 (full, low, 13 tasks)",
        ),
    )

    def listed(status: str) -> list[int]:
        r = viewer.get("/api/v1/webhooks/inbox", params={"status": status})
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["items"]]

    assert listed("dead") == [ids[0]]
    assert listed("pending") == [ids[2], ids[1]]
    assert listed("done") == [ids[3]]
    item = viewer.get("/api/v1/webhooks/inbox", params={"status": "dead"}).json()["items"][0]
    assert item["body"] == '[{"eventId": 1}]'
    assert item["last_error"] == "deal 9001: HTTP 500"
    assert item["outcome"] is None
    assert "headers" not in item
    # A done event's note is what processing did, not an error.
    done = viewer.get("/api/v1/webhooks/inbox", params={"status": "done"}).json()["items"][0]
    assert (done["outcome"], done["last_error"]) == ("plan 7 (full, low, 13 tasks)", None)
    r = viewer.get("/api/v1/webhooks/inbox", params={"status": "lost"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "status"]

    assert viewer.post(f"/api/v1/webhooks/inbox/{ids[0]}/replay").status_code == 403
    r = operator.post(f"/api/v1/webhooks/inbox/{ids[0]}/replay")
    assert r.status_code == 200, r.text
    replayed = r.json()
    assert replayed["attempts"] == 0
    assert replayed["processing"] in ("queued", "notified")
    if replayed["processing"] == "queued":
        assert replayed["status"] == "received"
        assert ids[0] in listed("pending")
    r = operator.post(f"/api/v1/webhooks/inbox/{ids[1]}/replay")
    assert (r.status_code, r.json()["reason"]) == (409, "pending")
    assert operator.post("/api/v1/webhooks/inbox/999/replay").status_code == 404
    audit = viewer.get("/api/v1/audit", params={"target": f"webhook_event:{ids[0]}"}).json()
    assert [(a["actor"], a["action"], a["detail"]["was"]) for a in audit["items"]] == [
        ("key:fixer", "webhook_event.replay", "dead")
    ]


def test_status_per_crm_object(viewer: TestClient, factory: sessionmaker[Session]) -> None:
    _yesterday, ok, _partial, _running = add(
        factory,
        run(
            started_at=NOW - timedelta(hours=30), finished_at=NOW - timedelta(hours=25), api_calls=9
        ),
        run(finished_at=NOW - timedelta(minutes=30), api_calls=40),
        run(status="partial", kind="pull", finished_at=NOW - timedelta(minutes=5), api_calls=5),
        run(status="running", finished_at=None),
    )
    add(
        factory,
        SyncCursor(
            crm="hubspot",
            object="companies",
            stream="changes",
            watermark_at=NOW - timedelta(minutes=7),
        ),
        Account(name="A", hs_id="1"),
        Account(name="B", hs_id="2"),
        Account(name="C", hs_id="3", deleted_at=NOW),
        Account(name="S", sf_id="001000000000000AAA"),
        error(),
        error(record_id="2", retriable=True, category="transient"),
        error(record_id="3", resolved_at=NOW),
        run(crm="salesforce", object="Account"),
        event(),
        event(external_id="x2", status="received"),
    )
    r = viewer.get("/api/v1/status")
    assert r.status_code == 200, r.text
    body = r.json()
    objects = {(o["crm"], o["object"]): o for o in body["objects"]}
    companies = objects["hubspot", "companies"]
    assert companies["configured"] is True
    assert companies["records"] == 2
    assert companies["open_errors"] == 2
    assert companies["open_retriable_errors"] == 1
    assert companies["last_successful_run"]["status"] == "partial"
    assert companies["running_run_id"] == _running
    # The lag counts from the start of the last successful pass (the partial one, 10 min ago),
    # not from the watermark (7 min): it says how far CS may be behind the CRM.
    assert 10 * 60 <= companies["lag_seconds"] < 12 * 60
    assert companies["watermark_at"] is not None
    assert objects["hubspot", "deals"]["last_successful_run"] is None
    # Salesforce is not configured here, but it has runs: listed, unconfigured, and its
    # records still counted through the default mapping's table.
    assert objects["salesforce", "Account"]["configured"] is False
    assert objects["salesforce", "Account"]["records"] == 1
    assert body["inbox"]["dead"] == 1
    assert body["inbox"]["received"] == 1
    # Only HubSpot is configured; its last 24 h of calls, no daily limit known (no call made).
    assert body["budget"] == {
        "hubspot": {
            "daily_limit": None,
            "limit_source": None,
            "share": 1.0,
            "allowed": None,
            "used_24h": 45,
            "left": None,
            "org_used": None,
        }
    }
    assert body["queue"]["ok"] is True
    assert body["queue"]["queued_messages"] == 0
    assert ok
