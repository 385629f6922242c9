"""Webhook test helpers: the API served by a real uvicorn on 127.0.0.1 (in a thread), and
signed deliveries the way HubSpot and Salesforce send them."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from app.webhooks.signatures import hubspot_v3_signature, salesforce_json_signature

SF_ORG = "00D000000000001AAA"
SF_PATH_SECRET = "path-secret-1"
SF_SIGNING = "signing-secret-1"
HS_SECRET = "sandbox-app-secret"


class LiveApp:
    """``create_app(settings)`` served on a free port until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self.app: FastAPI = create_app(settings)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    @property
    def worker(self) -> Any:
        return getattr(self.app.state, "webhook_runner", None)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@contextmanager
def live_app(settings: Settings) -> Iterator[LiveApp]:
    app = LiveApp(settings)
    try:
        yield app
    finally:
        app.stop()


def hubspot_event(
    event_id: int, deal_id: int | str, *, stage: str = "closedwon", portal: int = 62515
) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 2001,
        "portalId": portal,
        "appId": 3001,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": int(deal_id),
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
    }


def hubspot_request(
    url: str,
    events: Sequence[dict[str, Any]],
    *,
    secret: str = HS_SECRET,
    signed_url: str | None = None,
    timestamp_ms: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a HubSpot delivery to ``url`` (signed over ``signed_url``)."""
    body = json.dumps(list(events), separators=(",", ":")).encode()
    ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": hubspot_v3_signature(secret, "POST", signed_url or url, body, ts),
    }
    return body, headers


def soap_message(
    notifications: Sequence[tuple[str, str]], *, org: str = SF_ORG, obj: str = "Opportunity"
) -> bytes:
    items = "".join(
        f"<Notification><Id>{nid}</Id>"
        f'<sObject xsi:type="sf:{obj}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{rid}</sf:Id><sf:StageName>Closed Won</sf:StageName></sObject></Notification>"
        for nid, rid in notifications
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        f"{items}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def salesforce_json_request(
    events: Sequence[dict[str, Any]], *, secret: str = SF_SIGNING, org: str = SF_ORG
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"organizationId": org, "events": list(events)}).encode()
    ts = str(int(time.time() * 1000))
    return body, {
        "Content-Type": "application/json",
        "X-Crmsync-Timestamp": ts,
        "X-Crmsync-Signature": salesforce_json_signature(secret, body, ts),
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def sandbox_settings(sb: Any, database_url: str, **webhooks: Any) -> Settings:
    """Settings for both CRMs of a running sandbox, its webhook secrets, and the worker."""
    from pydantic import SecretStr

    from app.settings import SyncSettings, WebhookSettings

    sf, hs = sb.info.salesforce, sb.info.hubspot
    options: dict[str, Any] = {"sweep_seconds": 0.5, "backoff_seconds": 0.2, **webhooks}
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_client_id=sf.client_id,
        salesforce_client_secret=SecretStr(sf.client_secret),
        salesforce_organization_id=sf.organization_id,
        salesforce_webhook_secret=SecretStr(SF_PATH_SECRET),
        hubspot_base_url=hs.base_url,
        hubspot_access_token=SecretStr(hs.access_token),
        hubspot_app_secret=SecretStr(hs.app_secret),
        ca_bundle=sb.info.ca_file,
        sync=SyncSettings(lookback_seconds=0),
        webhooks=WebhookSettings(**options),
    )


def point_sandbox_at(sb: Any, app: LiveApp, **options: Any) -> None:
    """Have the sandbox deliver its webhooks to ``app``."""
    sb.control(
        "PUT",
        "/webhooks",
        {
            "hubspot_url": app.url + "/webhooks/hubspot",
            "salesforce_url": f"{app.url}/webhooks/salesforce/{SF_PATH_SECRET}",
            "backoff_base_s": 0.2,
            **options,
        },
    )


def hubspot_api(sb: Any, method: str, path: str, **kw: Any) -> Any:
    """A call to the sandbox's HubSpot API with its access token, as a test sets a deal up or
    looks at what crmsync wrote: the answer's JSON (None when empty); raises on an error."""
    session = sb.session()
    try:
        response = session.request(
            method,
            sb.info.hubspot.base_url + path,
            headers={"Authorization": f"Bearer {sb.info.hubspot.access_token}"},
            timeout=30,
            **kw,
        )
        response.raise_for_status()
        return response.json() if response.content else None
    finally:
        session.close()


def hubspot_company_ids(sb: Any) -> list[str]:
    """The ids of the sandbox's first 100 HubSpot companies, in its order."""
    found = hubspot_api(sb, "GET", "/crm/v3/objects/companies", params={"limit": 100})
    return [str(r["id"]) for r in found["results"]]


def wait_for(predicate: Any, timeout: float = 60.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(every)


def seed_csms(engine: Any, sb: Any | None = None, *, capacity: int = 100) -> list[str]:
    """CSMs serving every tier (the sandbox's CSM users when given, else three made up), a
    tech pool user, and a fallback CS manager; returns the CSMs' e-mails."""
    from sqlalchemy.orm import Session

    from app.db.models import Csm

    emails: list[str] = []
    if sb is not None:
        from datetime import UTC, datetime

        from crmsync_sandbox.seed import SeedPlan

        plan = SeedPlan(sb.config.seed, sb.config.accounts, datetime.now(UTC))
        emails = [u.email for u in plan.users() if u.role == "csm"]
    if not emails:
        emails = ["ada@cs.example", "bo@cs.example", "cy@cs.example"]
    with Session(engine) as s:
        for email in emails:
            s.add(
                Csm(
                    name=email.split("@")[0].title(),
                    email=email,
                    tiers=["key", "high", "low"],
                    capacity_units=capacity,
                    region=None,
                    is_pool=False,
                    active=True,
                )
            )
        s.add(Csm(name="Tech pool", email="pool@cs.example", tiers=["tech"], is_pool=True))
        s.commit()
    return emails


_event_keys = itertools.count(1)


def store_closed_won(engine: Any, deals: Sequence[str], *, now: datetime) -> list[int]:
    """One stored HubSpot closed-won inbox event per entry of ``deals`` (a deal twice: two
    deliveries of its close), received at ``now``; their ids."""
    from sqlalchemy.orm import Session

    from app.db.inbox_store import InboxRow, insert_events

    rows = [
        InboxRow(
            "hubspot",
            f"62515:2001:{next(_event_keys)}",
            "deal.propertyChange",
            deal,
            None,
            {"propertyName": "dealstage", "propertyValue": "closedwon", "objectId": int(deal)},
        )
        for deal in deals
    ]
    with Session(engine) as s:
        stored = insert_events(s, rows, now=now)
        s.commit()
    return stored.new_ids
