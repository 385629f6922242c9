"""The CRMs' webhook endpoints: verify, store in the inbox, answer. Nothing else.

* ``POST /webhooks/hubspot``: ``X-HubSpot-Signature-v3`` over method + the URL as HubSpot called
  it (``CRMSYNC_PUBLIC_BASE_URL`` + path + query behind a proxy; else the request's own URL) +
  body + ``X-HubSpot-Request-Timestamp``; arrays of up to 100 events.
* ``POST /webhooks/salesforce/{secret}``: Outbound Messages (SOAP 1.1; the path secret and the
  ``OrganizationId`` are checked, the answer is the SOAP ``Ack`` as ``text/xml``), or a JSON body
  from a Flow / Apex signed with ``X-Crmsync-Signature`` (HMAC-SHA256).

The order is fixed: authenticate (401 ``{"reason"}``, nothing stored), parse (400 ``{"reason"}``,
nothing stored), insert every event in one transaction (``INSERT .. ON CONFLICT DO NOTHING``:
a duplicate is acknowledged and ignored), commit, answer. No CRM call happens here: processing
is the worker's (:mod:`app.wiring.webhook_processing`), which is woken with the new ids.
These routes are outside ``/api/v1``: no API key, their own signature checks.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.api.deps import app_jobs
from app.db.inbox_store import InboxRow, StoredDelivery, insert_events
from app.logging import get_logger
from app.settings import Settings
from app.webhooks.parsing import (
    InboundEvent,
    MalformedBody,
    parse_hubspot,
    parse_outbound_message,
    parse_salesforce_json,
)
from app.webhooks.signatures import SignatureError, verify_hubspot_v3, verify_salesforce_json

log = get_logger("crmsync.webhooks")
router = APIRouter(prefix="/webhooks", tags=["webhooks"])

SOAP_ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
    b' <soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body>\n"
    b"</soapenv:Envelope>\n"
)
#: Request headers kept with each event (for the inbox view; never a signature).
KEPT_HEADERS = ("user-agent", "x-hubspot-request-timestamp", "content-type", "soapaction")


def _reason(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"reason": reason}, status_code=status)


def signed_uri(request: Request, public_base_url: str | None) -> str:
    """The URL as the CRM called it: the public base (behind a proxy) or the request's own
    scheme and host, then the raw path and the raw query, as sent (order and escapes kept)."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    root = request.scope.get("root_path") or ""
    if root and not path.startswith(root):
        path = root + path
    query = request.scope.get("query_string") or b""
    if public_base_url:
        base = public_base_url.rstrip("/")
    else:
        base = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
    return base + path + (("?" + query.decode("latin-1")) if query else "")


def _store(
    factory: sessionmaker[Session], events: list[InboundEvent], headers: dict[str, str]
) -> StoredDelivery:
    rows = [
        InboxRow(e.source, e.external_id, e.event_type, e.object_id, e.occurred_at, e.payload)
        for e in events
    ]
    with factory() as session:
        stored = insert_events(session, rows, now=datetime.now(UTC), headers=headers)
        session.commit()
    return stored


async def _accept(request: Request, events: list[InboundEvent]) -> StoredDelivery:
    headers = {k: v for k, v in request.headers.items() if k.lower() in KEPT_HEADERS}
    stored = await run_in_threadpool(_store, request.app.state.session_factory, events, headers)
    runner: Any = getattr(request.app.state, "webhook_runner", None)
    if runner is not None and stored.new_ids:
        runner.notify(stored.new_ids)
    elif stored.new_ids and request.app.state.settings.webhooks.enqueue_jobs:
        # Not awaited: the answer never waits on the broker. The events are stored; if the
        # broker is down they wait for the sweeper instead.
        asyncio.get_running_loop().run_in_executor(
            None, _enqueue, request.app, list(stored.new_ids)
        )
    return stored


def _enqueue(app: FastAPI, event_ids: list[int]) -> None:
    """Hand stored events to the job queue in batches of ``CRMSYNC_WEBHOOKS__BATCH_SIZE``."""
    size = app.state.settings.webhooks.batch_size
    try:
        jobs = app_jobs(app)
        for start in range(0, len(event_ids), size):
            jobs.enqueue_webhooks(event_ids[start : start + size])
    except Exception:
        log.warning("webhooks.enqueue.failed", events=len(event_ids), exc_info=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


@router.post("/hubspot", summary="HubSpot app webhooks (signature v3)")
async def hubspot_webhook(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.hubspot_app_secret is None:
        return _reason(503, "CRMSYNC_HUBSPOT_APP_SECRET is not set: cannot verify signatures")
    body = await request.body()
    try:
        verify_hubspot_v3(
            secret=settings.hubspot_app_secret.get_secret_value(),
            method=request.method,
            uri=signed_uri(request, settings.public_base_url),
            body=body,
            timestamp=request.headers.get("x-hubspot-request-timestamp"),
            signature=request.headers.get("x-hubspot-signature-v3"),
            now_ms=_now_ms(),
        )
        events = parse_hubspot(body)
    except SignatureError as exc:
        return _reason(401, exc.reason)
    except MalformedBody as exc:
        return _reason(400, str(exc))
    stored = await _accept(request, events)
    return JSONResponse(
        {"received": len(events), "new": len(stored.new_ids), "duplicates": stored.duplicates}
    )


@router.post(
    "/salesforce/{secret}",
    summary="Salesforce Outbound Messages (SOAP) or signed Flow / Apex JSON",
)
async def salesforce_webhook(secret: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    expected = settings.salesforce_webhook_secret
    if expected is None:
        return _reason(503, "CRMSYNC_SALESFORCE_WEBHOOK_SECRET is not set: route disabled")
    if not hmac.compare_digest(expected.get_secret_value().encode(), secret.encode()):
        return _reason(401, "wrong secret in the URL path")
    body = await request.body()
    content_type = request.headers.get("content-type", "").lower()
    is_json = "json" in content_type or body.lstrip()[:1] in (b"{", b"[")
    org = settings.salesforce_organization_id
    try:
        if is_json:
            signing = settings.salesforce_webhook_signing_secret
            if signing is None:
                return _reason(
                    503, "CRMSYNC_SALESFORCE_WEBHOOK_SIGNING_SECRET is not set: JSON refused"
                )
            verify_salesforce_json(
                secret=signing.get_secret_value(),
                body=body,
                timestamp=request.headers.get("x-crmsync-timestamp"),
                signature=request.headers.get("x-crmsync-signature"),
                now_ms=_now_ms(),
            )
        message = parse_salesforce_json(body) if is_json else parse_outbound_message(body)
    except SignatureError as exc:
        return _reason(401, exc.reason)
    except MalformedBody as exc:
        return _reason(400, str(exc))
    if not org:
        return _reason(503, "CRMSYNC_SALESFORCE_ORGANIZATION_ID is not set: cannot check the org")
    if (message.organization_id or not is_json) and not _same_org(message.organization_id, org):
        return _reason(401, "OrganizationId is not this org's (CRMSYNC_SALESFORCE_ORGANIZATION_ID)")
    stored = await _accept(request, message.events)
    if is_json:
        return JSONResponse(
            {
                "received": len(message.events),
                "new": len(stored.new_ids),
                "duplicates": stored.duplicates,
            }
        )
    return Response(SOAP_ACK, media_type="text/xml")


def _same_org(given: str, configured: str) -> bool:
    """Org ids compare on their 15-character case-sensitive form (18 = 15 + a checksum)."""
    return hmac.compare_digest(given.strip()[:15].encode(), configured.strip()[:15].encode())
