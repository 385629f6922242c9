"""The webhook routes (#20 items 1-2): authenticate, parse, store in the inbox, answer.

Served by a real uvicorn (the worker off, so what is stored stays visible), on SQLite and
PostgreSQL (the suite's database). 401s and 400s store nothing; a duplicate is acknowledged and
stored once, also when 50 deliveries of one event arrive at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db.engine import make_session_factory
from app.db.enums import InboxStatus
from app.db.models import WebhookEvent
from app.jobs.tasks import JobQueue
from app.settings import Settings, WebhookSettings
from app.wiring import webhook_processing
from app.wiring.closed_won import finish_event
from app.wiring.webhook_processing import EventView, HandlerResult, ProcessingContext
from tests.support.webhooks import (
    HS_SECRET,
    SF_ORG,
    SF_PATH_SECRET,
    SF_SIGNING,
    LiveApp,
    hubspot_event,
    hubspot_request,
    post,
    salesforce_json_request,
    soap_message,
)


def settings_for(
    database_url: str, webhooks: WebhookSettings | None = None, **extra: object
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        hubspot_app_secret=SecretStr(HS_SECRET),
        salesforce_organization_id=SF_ORG,
        salesforce_webhook_secret=SecretStr(SF_PATH_SECRET),
        salesforce_webhook_signing_secret=SecretStr(SF_SIGNING),
        # Nothing processes or queues what is stored: the tests look at the inbox as stored.
        webhooks=webhooks or WebhookSettings(embedded_worker=False, enqueue_jobs=False),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def server(database_url: str) -> Iterator[LiveApp]:
    app = LiveApp(settings_for(database_url))
    yield app
    app.stop()


def inbox(engine: Engine) -> list[WebhookEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def test_hubspot_batch_is_stored_then_acknowledged(server: LiveApp, engine: Engine) -> None:
    url = server.url + "/webhooks/hubspot"
    events = [hubspot_event(100 + n, 5000 + n) for n in range(100)]
    response = post(url, *hubspot_request(url, events))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 100, "new": 100, "duplicates": 0}
    rows = inbox(engine)
    assert len(rows) == 100
    assert rows[0].status == "received"
    assert rows[0].next_attempt_at is not None
    assert rows[0].external_id == "62515:2001:100"
    assert json.loads(rows[0].raw_body)["objectId"] == 5000
    # the same delivery again (a retry): acknowledged, nothing new
    again = post(url, *hubspot_request(url, events))
    assert again.json() == {"received": 100, "new": 0, "duplicates": 100}
    assert len(inbox(engine)) == 100


def test_hubspot_refusals_store_nothing(server: LiveApp, engine: Engine) -> None:
    url = server.url + "/webhooks/hubspot"
    events = [hubspot_event(1, 2)]
    stale = post(url, *hubspot_request(url, events, timestamp_ms=1704067260000))
    assert stale.status_code == 401
    assert "more than 5 minutes old" in stale.json()["reason"]
    wrong = post(url, *hubspot_request(url, events, secret="not-the-secret"))
    assert wrong.status_code == 401
    assert "does not match" in wrong.json()["reason"]
    other_url = post(url, *hubspot_request(url, events, signed_url="https://evil.example/x"))
    assert other_url.status_code == 401
    body, headers = hubspot_request(url, events)
    tampered = post(url, body.replace(b'"objectId":2', b'"objectId":3'), headers)
    assert tampered.status_code == 401
    bad_body = b"[{not json"
    _, headers = hubspot_request(url, [])
    from app.webhooks.signatures import hubspot_v3_signature

    headers["X-HubSpot-Signature-v3"] = hubspot_v3_signature(
        HS_SECRET, "POST", url, bad_body, headers["X-HubSpot-Request-Timestamp"]
    )
    malformed = post(url, bad_body, headers)
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.json()["reason"]
    too_many = post(url, *hubspot_request(url, [hubspot_event(n, n) for n in range(101)]))
    assert too_many.status_code == 400
    assert "at most 100" in too_many.json()["reason"]
    assert inbox(engine) == []


def test_behind_a_proxy_the_public_url_is_signed(database_url: str, engine: Engine) -> None:
    public = "https://crm-hooks.example.com/prefix"
    app = LiveApp(settings_for(database_url, public_base_url=public))
    try:
        url = app.url + "/webhooks/hubspot?portal=62515&ts=2024-01-01T00%3A00%3A00Z"
        signed = public + "/webhooks/hubspot?portal=62515&ts=2024-01-01T00:00:00Z"
        ok = post(url, *hubspot_request(url, [hubspot_event(1, 2)], signed_url=signed))
        assert ok.status_code == 200, ok.text
        own = post(url, *hubspot_request(url, [hubspot_event(2, 2)]))
        assert own.status_code == 401  # signed over the internal URL: not what HubSpot saw
    finally:
        app.stop()
    assert len(inbox(engine)) == 1


def test_fifty_concurrent_deliveries_of_one_event_store_one_row(
    server: LiveApp, engine: Engine
) -> None:
    url = server.url + "/webhooks/hubspot"
    body, headers = hubspot_request(url, [hubspot_event(4242, 77)])
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: post(url, body, headers), range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert sum(r.json()["new"] for r in responses) == 1
    assert sum(r.json()["duplicates"] for r in responses) == 49
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 1


def test_salesforce_outbound_message_is_acked_as_soap(server: LiveApp, engine: Engine) -> None:
    url = f"{server.url}/webhooks/salesforce/{SF_PATH_SECRET}"
    body = soap_message([("04l000000000001AAA", "006000000000001AAA")])
    response = post(url, body, {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert b"<Ack>true</Ack>" in response.content
    again = post(url, body, {"Content-Type": "text/xml"})
    assert again.status_code == 200
    assert b"<Ack>true</Ack>" in again.content
    (row,) = inbox(engine)
    assert (row.source, row.external_id, row.object_id) == (
        "salesforce",
        "04l000000000001AAA",
        "006000000000001AAA",
    )


def test_salesforce_refusals_store_nothing(server: LiveApp, engine: Engine) -> None:
    base = f"{server.url}/webhooks/salesforce/"
    body = soap_message([("04l000000000001AAA", "006000000000001AAA")])
    xml = {"Content-Type": "text/xml"}
    assert post(base + "wrong-secret", body, xml).status_code == 401
    other_org = post(
        base + SF_PATH_SECRET, soap_message([("a", "b")], org="00DXXXXXXXXXXXXXXX"), xml
    )
    assert other_org.status_code == 401
    assert "OrganizationId" in other_org.json()["reason"]
    malformed = post(base + SF_PATH_SECRET, b"<soapenv:Envelope", xml)
    assert malformed.status_code == 400
    assert "XML" in malformed.json()["reason"]
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + body[body.index(b"<soapenv:Envelope") :]
    )
    refused = post(base + SF_PATH_SECRET, xxe, xml)
    assert refused.status_code == 400
    assert "DOCTYPE" in refused.json()["reason"]
    events = [{"id": "flow-1", "object": "Opportunity", "recordId": "006000000000002AAA"}]
    json_body, headers = salesforce_json_request(events, secret="wrong")
    assert post(base + SF_PATH_SECRET, json_body, headers).status_code == 401
    assert inbox(engine) == []


def test_salesforce_signed_json(server: LiveApp, engine: Engine) -> None:
    url = f"{server.url}/webhooks/salesforce/{SF_PATH_SECRET}"
    events = [{"id": "flow-1", "object": "Opportunity", "recordId": "006000000000002AAA"}]
    response = post(url, *salesforce_json_request(events))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "new": 1, "duplicates": 0}
    (row,) = inbox(engine)
    assert (row.external_id, row.object_id) == ("json:flow-1", "006000000000002AAA")


def test_without_the_embedded_worker_a_delivery_becomes_batch_jobs_at_once(
    database_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` with separate workers: the route queues the new events (ids only, in batches)
    right after storing them, so a worker starts on them without waiting for the sweep."""
    settings = settings_for(
        database_url,
        webhooks=WebhookSettings(embedded_worker=False, batch_size=2),
        data_dir=tmp_path,
    )
    server = LiveApp(settings)
    try:
        url = server.url + "/webhooks/hubspot"
        events = [hubspot_event(300 + n, 7000 + n) for n in range(3)]
        answer = post(url, *hubspot_request(url, events))
        assert answer.json() == {"received": 3, "new": 3, "duplicates": 0}
        jobs = JobQueue(settings, session_factory=make_session_factory(engine))
        try:
            deadline = time.monotonic() + 10
            while len(jobs.huey.pending()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            pending = jobs.huey.pending()
            ids = [row.id for row in inbox(engine)]
            assert [(t.name, t.args) for t in pending] == [
                ("crmsync.webhooks", ([ids[0], ids[1]],)),
                ("crmsync.webhooks", ([ids[2]],)),
            ]
            # A duplicate delivery stores nothing new and queues nothing.
            post(url, *hubspot_request(url, events))
            time.sleep(0.3)
            assert len(jobs.huey.pending()) == 2

            seen: list[int] = []

            def handled(event: EventView, ctx: ProcessingContext) -> HandlerResult:
                seen.append(event.id)
                return finish_event(ctx, event.id, InboxStatus.DONE, "handled by the job")

            context = ProcessingContext(settings, make_session_factory(engine), handler=handled)
            monkeypatch.setattr(webhook_processing, "_default", context)
            for task in pending:
                jobs.huey.execute(task)
            assert seen == ids
            assert [(r.status, r.attempts) for r in inbox(engine)] == [("done", 1)] * 3
        finally:
            jobs.close()
    finally:
        server.stop()
