"""Webhook delivery to a local receiver: signatures checked independently, retries, options."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from typing import Any

from crmsync_sandbox import Sandbox
from crmsync_sandbox.webhooks import hubspot_signature_v1, hubspot_signature_v3

SF_ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
    b"</notificationsResponse></soapenv:Body></soapenv:Envelope>"
)
NS = {
    "soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
    "om": "http://soap.sforce.com/2005/09/outbound",
    "sf": "urn:sobject.enterprise.soap.sforce.com",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}


def test_signature_helpers_match_the_documented_vectors() -> None:
    body = (
        b'[{"eventId":1001,"subscriptionId":2001,"portalId":62515,"appId":3001,'
        b'"occurredAt":1704067200000,"subscriptionType":"deal.propertyChange","attemptNumber":0,'
        b'"objectId":512,"propertyName":"dealstage","propertyValue":"closedwon",'
        b'"changeSource":"CRM_UI"}]'
    )
    secret = "6f2c1a8e-0b6d-4a57-9c3e-2d8f5b1e7a90"
    url = "https://crmsync.example.test/hooks/hubspot?source=hs"
    assert len(body) == 250
    assert (
        hubspot_signature_v3(secret, "POST", url, body, 1704067260000)
        == "sNmCzn2++ITegJ9jgxuD9pCcAecsp32OYLqrtik/sTY="
    )
    assert (
        hubspot_signature_v1(secret, body)
        == "3179647a34a41b893cb12de7f39deb31ab49c1e39739cad8ba47d4626cc2a74e"
    )


def _hook(core: Sandbox, **settings: Any) -> None:
    core.control("PUT", "/webhooks", json=settings)


def test_hubspot_webhook_is_signed_v3_and_v1(core: Sandbox, webhook_receiver: Any) -> None:
    _hook(core, hubspot_url=webhook_receiver.url)
    core.control("POST", "/hubspot/close-won", json={"id": "512"})
    (got,) = webhook_receiver.wait_for(1)
    secret = core.info.hubspot.app_secret.encode()
    headers = {k.lower(): v for k, v in got.headers.items()}

    timestamp = headers["x-hubspot-request-timestamp"]
    assert abs(int(timestamp) - time.time() * 1000) < 60_000
    message = b"POST" + webhook_receiver.url.encode() + got.body + timestamp.encode()
    expected_v3 = base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()
    assert headers["x-hubspot-signature-v3"] == expected_v3
    assert headers["x-hubspot-signature-version"] == "v1"
    assert headers["x-hubspot-signature"] == hashlib.sha256(secret + got.body).hexdigest()

    (event,) = json.loads(got.body)
    assert got.path == "/hooks/in?source=sandbox"
    assert set(event) == {
        "eventId", "subscriptionId", "portalId", "appId", "occurredAt", "subscriptionType",
        "attemptNumber", "objectId", "propertyName", "propertyValue", "changeSource",
    }  # fmt: skip
    assert event["objectId"] == 512
    assert event["portalId"] == core.info.hubspot.portal_id
    assert (event["propertyName"], event["propertyValue"]) == ("dealstage", "closedwon")
    assert event["subscriptionType"] == "deal.propertyChange"
    assert event["attemptNumber"] == 0
    assert isinstance(event["occurredAt"], int)
    assert core.ctx.outbox.wait_idle(5)
    (delivery,) = core.control("GET", "/webhooks/deliveries")["deliveries"][-1:]
    assert delivery["acked"]
    assert delivery["event_ids"] == [event["eventId"]]


def test_failed_deliveries_are_retried_until_acknowledged(
    core: Sandbox, webhook_receiver: Any
) -> None:
    webhook_receiver.script = [500, 503, 400]
    _hook(core, hubspot_url=webhook_receiver.url)
    core.control("POST", "/hubspot/close-won", json={"id": "77"})
    received = webhook_receiver.wait_for(4)
    attempts = [json.loads(r.body)[0]["attemptNumber"] for r in received]
    assert attempts == [0, 1, 2, 3]
    assert len({json.loads(r.body)[0]["eventId"] for r in received}) == 1
    assert core.ctx.outbox.wait_idle(5)
    delivery = core.control("GET", "/webhooks/deliveries")["deliveries"][-1]
    assert [a["status"] for a in delivery["attempts"]] == [500, 503, 400, 200]
    assert delivery["acked"] is True


def test_clear_drops_queued_and_retrying_deliveries(core: Sandbox, webhook_receiver: Any) -> None:
    webhook_receiver.default = 500
    _hook(core, hubspot_url=webhook_receiver.url, backoff_base_s=30.0)
    try:
        core.control("POST", "/hubspot/close-won", json={"id": "9"})
        webhook_receiver.wait_for(1)
        assert core.control("GET", "/webhooks")["status"]["active"] == 1
        assert core.control("POST", "/webhooks/clear")["dropped"] == 1
        assert core.ctx.outbox.wait_idle(1)
        assert core.control("GET", "/webhooks/deliveries")["deliveries"][-1]["gave_up"]
    finally:
        _hook(core, backoff_base_s=0.02)


def test_hubspot_gives_up_after_max_attempts(core: Sandbox, webhook_receiver: Any) -> None:
    webhook_receiver.default = 500
    _hook(core, hubspot_url=webhook_receiver.url, hubspot_max_attempts=3)
    try:
        core.control("POST", "/hubspot/close-won", json={"id": "5"})
        assert core.ctx.outbox.wait_idle(5)
        delivery = core.control("GET", "/webhooks/deliveries")["deliveries"][-1]
        assert len(delivery["attempts"]) == 3
        assert delivery["gave_up"]
        assert not delivery["acked"]
    finally:
        _hook(core, hubspot_max_attempts=10)


def test_hold_flush_batches_reorders_and_duplicates(core: Sandbox, webhook_receiver: Any) -> None:
    _hook(core, hubspot_url=webhook_receiver.url, hold=True, batch_size=2)
    for object_id in ("1", "2", "3", "4", "5"):
        core.control("POST", "/hubspot/close-won", json={"id": object_id})
    time.sleep(0.2)
    assert webhook_receiver.received == []  # held
    assert core.control("GET", "/webhooks")["status"]["queued"] == 5
    flushed = core.control("POST", "/webhooks/flush", json={"wait": 5})
    assert flushed["released"] == 5
    assert flushed["idle"]
    batches = [[e["objectId"] for e in json.loads(r.body)] for r in webhook_receiver.received]
    assert batches == [[1, 2], [3, 4], [5]]

    webhook_receiver.received.clear()
    _hook(core, reorder=True, duplicate=True, batch_size=10)
    for object_id in ("6", "7", "8"):
        core.control("POST", "/hubspot/close-won", json={"id": object_id})
    core.control("POST", "/webhooks/flush", json={"wait": 5})
    batches = [[e["objectId"] for e in json.loads(r.body)] for r in webhook_receiver.received]
    assert batches == [[8, 7, 6], [8, 7, 6]]
    ids = [[e["eventId"] for e in json.loads(r.body)] for r in webhook_receiver.received]
    assert ids[0] == ids[1]  # a duplicate is the same events again


def test_salesforce_outbound_message_envelope_and_ack(core: Sandbox, webhook_receiver: Any) -> None:
    webhook_receiver.bodies = [b"<ok/>"]  # 200 without <Ack>true</Ack> is not an acknowledgement
    webhook_receiver.body = SF_ACK
    _hook(core, salesforce_url=webhook_receiver.url, hold=True, batch_size=100)
    core.ctx.emulators["salesforce"].deleted.add("006GONE")  # type: ignore[attr-defined]
    core.control("POST", "/salesforce/close-won", json={"id": "0065g00000AbCdEAAZ"})
    core.control("POST", "/salesforce/close-won", json={"id": "006GONE"})
    core.control("POST", "/webhooks/flush", json={"wait": 5})
    received = webhook_receiver.wait_for(2)
    assert core.ctx.outbox.wait_idle(5)

    got = received[0]
    assert got.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(got.body)
    notifications = root.find("soapenv:Body/om:notifications", NS)
    assert notifications is not None
    assert (
        notifications.findtext("om:OrganizationId", namespaces=NS)
        == core.info.salesforce.organization_id
    )
    assert notifications.findtext("om:ActionId", namespaces=NS)
    session = notifications.find("om:SessionId", NS)
    assert session is not None
    assert session.get(f"{{{NS['xsi']}}}nil") == "true"
    assert notifications.findtext("om:EnterpriseUrl", namespaces=NS).startswith(core.base_url)  # type: ignore[union-attr]
    items = notifications.findall("om:Notification", NS)
    assert len(items) == 2
    first, gone = items
    assert first.findtext("om:Id", namespaces=NS).startswith("04l")  # type: ignore[union-attr]
    sobject = first.find("om:sObject", NS)
    assert sobject is not None
    assert sobject.get(f"{{{NS['xsi']}}}type") == "sf:Opportunity"
    assert next(iter(sobject)).tag == f"{{{NS['sf']}}}Id"
    assert sobject.findtext("sf:Id", namespaces=NS) == "0065g00000AbCdEAAZ"
    assert sobject.findtext("sf:StageName", namespaces=NS) == "Closed Won"
    assert sobject.findtext("sf:Name", namespaces=NS) == "Müller & Söhne <Renewal>"
    assert sobject.findtext("sf:IsWon", namespaces=NS) == "true"
    assert sobject.find("sf:Description", NS) is None  # null fields are left out
    gone_object = gone.find("om:sObject", NS)
    assert gone_object is not None
    assert [c.tag for c in gone_object] == [f"{{{NS['sf']}}}Id"]

    delivery = core.control("GET", "/webhooks/deliveries")["deliveries"][-1]
    assert delivery["object_ids"] == ["0065g00000AbCdEAAZ", "006GONE"]
    assert [a["acked"] for a in delivery["attempts"]] == [False, True]
    assert "Ack" in delivery["attempts"][0]["error"]
    assert len(webhook_receiver.received) == 2
    assert webhook_receiver.received[0].body == webhook_receiver.received[1].body
