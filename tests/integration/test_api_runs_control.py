"""``POST /api/v1/sync/runs`` and ``POST /api/v1/sync/runs/{id}/cancel`` (#19 item 3, run control).

The trigger creates queued rows and enqueues their ids (202); bad input is a 422 naming the
field; cancel answers 202 for a queued or running run, 404 for an unknown one, 409 for one that
already finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.db.models import AuditEntry, SyncRun
from app.main import create_app
from tests.support.api import api_client
from tests.support.jobs import job_settings


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with api_client(create_app(job_settings(database_url, tmp_path)), role="operator") as c:
        yield c


def rows(client: TestClient) -> list[SyncRun]:
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        return list(s.scalars(select(SyncRun).order_by(SyncRun.id)))


def test_trigger_queues_one_run_per_object_and_enqueues_each(client: TestClient) -> None:
    answer = client.post("/api/v1/sync/runs", json={"crm": "salesforce", "kind": "backfill"})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "queued"
    assert body["enqueued"] is True
    made = rows(client)
    assert [r.id for r in made] == body["run_ids"]
    assert body["run_id"] == body["run_ids"][0]
    assert [(r.kind, r.object, r.status, r.triggered_by) for r in made] == [
        ("backfill", o, "queued", "api") for o in ("Account", "Opportunity", "Note")
    ]
    assert client.app.state.jobs.depth() == 3  # type: ignore[attr-defined]

    one = client.post(
        "/api/v1/sync/runs",
        json={
            "crm": "salesforce",
            "object": "Account",
            "kind": "incremental",
            "since": "2026-01-01T00:00:00Z",
        },
    ).json()
    row = rows(client)[-1]
    assert one["run_ids"] == [row.id]
    assert (row.kind, row.object, row.params) == (
        "pull",
        "Account",
        {"since": "2026-01-01T00:00:00+00:00"},
    )

    split = client.post(
        "/api/v1/sync/runs",
        json={"crm": "salesforce", "object": "Account", "kind": "backfill", "partitions": 4},
    )
    assert split.status_code == 202, split.text
    row = rows(client)[-1]
    assert (row.kind, row.object, row.status, row.params) == (
        "backfill",
        "Account",
        "queued",
        {"partitions": 4},
    )

    recompute = client.post("/api/v1/sync/runs", json={"kind": "recompute", "push": True}).json()
    row = rows(client)[-1]
    assert recompute["run_id"] == row.id
    assert (row.kind, row.crm, row.object, row.params) == (
        "recompute",
        "cs",
        "accounts",
        {"push": True},
    )


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"crm": "salesforce"}, "kind", "Field required"),
        ({"crm": "salesforce", "kind": "resync"}, "kind", "backfill"),
        ({"crm": "pipedrive", "kind": "backfill"}, "crm", "salesforce"),
        ({"kind": "backfill"}, "crm", "crm is required"),
        ({"crm": "hubspot", "kind": "backfill"}, "crm", "hubspot is not configured"),
        (
            {"crm": "salesforce", "kind": "backfill", "object": "Tickets"},
            "object",
            "known: Account",
        ),
        (
            {"crm": "salesforce", "kind": "backfill", "since": "2999-01-01T00:00:00Z"},
            "since",
            "future",
        ),
        ({"crm": "salesforce", "kind": "backfill", "since": "yesterday"}, "since", "datetime"),
        (
            {"crm": "salesforce", "kind": "push", "since": "2026-01-01T00:00:00Z"},
            "since",
            "not push",
        ),
        ({"crm": "salesforce", "kind": "incremental", "restart": True}, "restart", "backfill only"),
        ({"crm": "salesforce", "kind": "backfill", "colour": "red"}, "colour", "Extra inputs"),
        ({"crm": "salesforce", "kind": "incremental", "partitions": 2}, "partitions", "backfill"),
        ({"crm": "salesforce", "kind": "backfill", "partitions": 0}, "partitions", "greater"),
        ({"crm": "salesforce", "kind": "backfill", "partitions": 17}, "partitions", "less"),
    ],
)
def test_bad_input_names_the_field(
    client: TestClient, body: dict[str, object], field: str, words: str
) -> None:
    answer = client.post("/api/v1/sync/runs", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail[0]["loc"] == ["body", field]
    assert words in detail[0]["msg"]
    assert rows(client) == []


def test_cancel_a_queued_a_running_an_unknown_and_a_finished_run(client: TestClient) -> None:
    ids = client.post("/api/v1/sync/runs", json={"crm": "salesforce", "kind": "backfill"}).json()[
        "run_ids"
    ]
    queued, running, finished = ids
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        s.execute(update(SyncRun).where(SyncRun.id == running).values(status="running"))
        s.execute(update(SyncRun).where(SyncRun.id == finished).values(status="succeeded"))
        s.commit()

    first = client.post(f"/api/v1/sync/runs/{queued}/cancel")
    assert (first.status_code, first.json()) == (202, {"run_id": queued, "status": "cancelled"})
    assert client.post(f"/api/v1/sync/runs/{queued}/cancel").status_code == 202  # idempotent
    second = client.post(f"/api/v1/sync/runs/{running}/cancel")
    assert (second.status_code, second.json()["status"]) == (202, "cancelling")
    gone = client.post("/api/v1/sync/runs/9999/cancel")
    assert (gone.status_code, gone.json()) == (404, {"detail": "run 9999 not found"})
    done = client.post(f"/api/v1/sync/runs/{finished}/cancel")
    assert done.status_code == 409
    assert "already finished (succeeded)" in done.json()["detail"]
    assert [r.status for r in rows(client)] == ["cancelled", "cancelling", "succeeded"]
    assert audit(client) == [
        *[("sync_run.trigger", f"sync_run:{i}") for i in ids],
        ("sync_run.cancel", f"sync_run:{queued}"),
        ("sync_run.cancel", f"sync_run:{queued}"),
        ("sync_run.cancel", f"sync_run:{running}"),
    ]


def audit(client: TestClient) -> list[tuple[str, str | None]]:
    """The audit rows as (action, target), oldest first; refused cancels leave none."""
    with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        found = s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.action, e.target) for e in found]
