"""``GET /metrics`` moves with the work, and ``/readyz`` reports the job broker (#19 item 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import SyncErrorRecord, WebhookEvent
from app.main import create_app
from app.settings import Settings
from tests.support.api import api_client
from tests.support.jobs import HookedSalesforce, accounts, job_settings, use_crm


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_move_with_a_run_errors_the_inbox_and_the_queue(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = HookedSalesforce()
    accounts(crm, 250)
    use_crm(monkeypatch, crm)
    settings: Settings = job_settings(database_url, tmp_path)
    with api_client(create_app(settings), role="operator") as client:
        before = client.get("/metrics")
        assert before.status_code == 200
        assert "crmsync_webhook_to_onboarding_seconds_bucket" in before.text
        assert sample(before.text, "crmsync_records_synced_total", object="Account") is None
        assert sample(before.text, "crmsync_queue_depth") == 0

        run_id = client.post(
            "/api/v1/sync/runs", json={"crm": "salesforce", "object": "Account", "kind": "backfill"}
        ).json()["run_id"]
        queued = client.get("/metrics").text
        assert sample(queued, "crmsync_queue_depth") == 1
        assert sample(queued, "crmsync_runs", kind="backfill", status="queued") == 1

        jobs = client.app.state.jobs  # type: ignore[attr-defined]
        assert jobs._run(run_id) == "ran"
        factory: sessionmaker[Session] = client.app.state.session_factory  # type: ignore[attr-defined]
        with factory() as s:
            s.add(
                SyncErrorRecord(
                    crm="salesforce",
                    object="Account",
                    record_id="001x",
                    category="validation",
                    message="bad",
                    retriable=False,
                )
            )
            s.add(
                WebhookEvent(source="hubspot", external_id="e1", raw_body="[]", status="received")
            )
            s.add(WebhookEvent(source="hubspot", external_id="e2", raw_body="[]", status="dead"))
            s.commit()

        after = client.get("/metrics").text
    labels = {"crm": "salesforce", "object": "Account", "kind": "backfill"}
    assert sample(after, "crmsync_records_synced_total", outcome="created", **labels) == 250
    assert (sample(after, "crmsync_api_calls_total", **labels) or 0) >= 2
    lag = sample(after, "crmsync_sync_lag_seconds", crm="salesforce", object="Account")
    assert lag is not None
    assert 0 <= lag < 60
    assert sample(after, "crmsync_sync_errors_open", category="validation") == 1
    assert sample(after, "crmsync_webhook_inbox", status="received") == 1
    assert sample(after, "crmsync_webhook_inbox", status="dead") == 1
    assert (sample(after, "crmsync_api_budget_used", crm="salesforce") or 0) >= 2
    assert (
        sample(after, "crmsync_job_duration_seconds_count", kind="run", outcome="ran") or 0
    ) >= 1
    assert sample(after, "crmsync_runs", kind="backfill", status="queued") is None


def test_readyz_reports_the_broker(database_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(job_settings(database_url, tmp_path))) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["broker"] == {
        "kind": "sqlite",
        "ok": True,
        "file": str(tmp_path / "jobs.db"),
    }
    down = job_settings(database_url, tmp_path, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(down)) as client:
        unready = client.get("/readyz")
    assert unready.status_code == 503
    body = unready.json()
    assert body["broker"]["kind"] == "redis"
    assert body["broker"]["ok"] is False
    assert "job broker unreachable (redis)" in body["reason"]
