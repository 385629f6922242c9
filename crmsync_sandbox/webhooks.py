"""Outgoing webhooks: HubSpot app webhooks (signed v3 + v1) and Salesforce Outbound Messages.

Emulators call :meth:`WebhookOutbox.emit_hubspot` / :meth:`WebhookOutbox.emit_salesforce` when a
deal/opportunity changes (for example to closed-won); a background thread delivers to the
configured URLs and redelivers with exponential backoff until acknowledged, the way the real CRMs
do (crm-api.md A§10, B§10):

* HubSpot: a JSON array of < 100 events per POST; 2xx acknowledges; otherwise retried with
  ``attemptNumber`` + 1, at most ``hubspot_max_attempts`` (10) attempts.
* Salesforce: a SOAP ``notifications`` message of <= 100 ``Notification`` for one object type,
  field values read at *send* time through the emulator's ``read_record`` (a deleted record goes
  out with only its Id); acknowledged by 2xx with ``<Ack>true</Ack>``; retried until
  ``salesforce_max_age_s`` (24 h) old.

Delivery quirks on demand (:class:`WebhookSettings`): ``duplicate`` sends every batch twice,
``reorder`` reverses the queued events before batching, ``batch_size`` groups events, ``hold``
queues without sending until :meth:`WebhookOutbox.flush`. Every attempt is logged
(:meth:`WebhookOutbox.deliveries`). Receivers may be plain ``http://`` on 127.0.0.1.

Signature timestamps use real wall time (receivers check a 5-minute window against their own
clock); ``occurredAt`` uses the sandbox clock, like the record stamps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape

import httpx

from crmsync_sandbox.clock import Clock
from crmsync_sandbox.context import CrmName, SandboxConfig

__all__ = [
    "Delivery",
    "WebhookOutbox",
    "WebhookSettings",
    "build_outbound_message",
    "hubspot_signature_v1",
    "hubspot_signature_v3",
]

log = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
_ACK = re.compile(rb"<(?:[\w-]+:)?Ack>\s*true\s*</(?:[\w-]+:)?Ack>")
_SUBSCRIPTION_IDS = {
    "deal.propertyChange": 2001,
    "deal.creation": 2002,
    "deal.deletion": 2003,
    "company.propertyChange": 2011,
    "company.creation": 2012,
    "company.deletion": 2013,
}
_LOG_LIMIT = 5000


def hubspot_signature_v3(
    secret: str, method: str, uri: str, body: bytes, timestamp_ms: int | str
) -> str:
    """``base64(HMAC-SHA256(secret, method + uri + body + timestamp))`` (crm-api.md B§10)."""
    message = method.encode() + uri.encode() + body + str(timestamp_ms).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def hubspot_signature_v1(secret: str, body: bytes) -> str:
    """``hex(sha256(secret + body))``, sent with ``X-HubSpot-Signature-Version: v1``."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return escape(str(value))


def build_outbound_message(
    *,
    organization_id: str,
    action_id: str,
    enterprise_url: str,
    partner_url: str,
    object_name: str,
    notifications: Sequence[tuple[str, str, Mapping[str, Any] | None]],
) -> bytes:
    """The SOAP envelope of one Outbound Message: ``(notification id, record id, fields)`` each.

    ``sf:Id`` comes first, then the record's fields in their order; null fields are left out."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n',
        " <soapenv:Body>\n",
        f'  <notifications xmlns="{OUTBOUND_NS}">\n',
        f"   <OrganizationId>{escape(organization_id)}</OrganizationId>\n",
        f"   <ActionId>{escape(action_id)}</ActionId>\n",
        '   <SessionId xsi:nil="true"/>\n',
        f"   <EnterpriseUrl>{escape(enterprise_url)}</EnterpriseUrl>\n",
        f"   <PartnerUrl>{escape(partner_url)}</PartnerUrl>\n",
    ]
    for notification_id, record_id, record in notifications:
        parts.append("   <Notification>\n")
        parts.append(f"    <Id>{escape(notification_id)}</Id>\n")
        parts.append(f'    <sObject xsi:type="sf:{object_name}" xmlns:sf="{SOBJECT_NS}">\n')
        parts.append(f"     <sf:Id>{escape(record_id)}</sf:Id>\n")
        for name, value in (record or {}).items():
            if name in ("Id", "attributes") or value is None or isinstance(value, dict | list):
                continue
            parts.append(f"     <sf:{name}>{_xml_value(value)}</sf:{name}>\n")
        parts.append("    </sObject>\n")
        parts.append("   </Notification>\n")
    parts += ["  </notifications>\n", " </soapenv:Body>\n", "</soapenv:Envelope>\n"]
    return "".join(parts).encode()


@dataclass
class WebhookSettings:
    """Where and how webhooks are delivered; every field settable through the control API."""

    hubspot_url: str | None = None
    salesforce_url: str | None = None
    duplicate: bool = False
    reorder: bool = False
    batch_size: int = 50  # HubSpot uses at most 99 (< 100), Salesforce at most 100
    hold: bool = False
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 7200.0  # Salesforce: "at most 2 h"
    hubspot_max_attempts: int = 10
    salesforce_max_age_s: float = 86_400.0
    timeout_s: float = 5.0  # HubSpot counts a response over 5 s as failed

    def update(self, data: Mapping[str, Any]) -> None:
        """Apply a partial update; a bad value raises ``ValueError('field: why')``."""
        known = {f.name: f for f in fields(self)}
        for name in data:
            if name not in known:
                raise ValueError(f"{name}: unknown webhook setting (known: {', '.join(known)})")
        merged = {**asdict(self), **data}
        for name in ("hubspot_url", "salesforce_url"):
            url = merged[name]
            if url is not None and (
                not isinstance(url, str) or not url.startswith(("http://", "https://"))
            ):
                raise ValueError(f"{name}: must be an http(s) URL or null")
        for name in ("duplicate", "reorder", "hold"):
            if not isinstance(merged[name], bool):
                raise ValueError(f"{name}: must be true or false")
        size = merged["batch_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
            raise ValueError("batch_size: must be an integer from 1 to 100")
        attempts = merged["hubspot_max_attempts"]
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError("hubspot_max_attempts: must be a positive integer")
        for name in ("backoff_base_s", "backoff_cap_s", "salesforce_max_age_s", "timeout_s"):
            value = merged[name]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}: must be a positive number")
            merged[name] = float(value)
        for name, value in merged.items():
            setattr(self, name, value)

    def backoff(self, attempts_made: int) -> float:
        """Seconds to wait after ``attempts_made`` failed attempts (exponential, capped)."""
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempts_made - 1)))


@dataclass
class Delivery:
    """One POST (a batch) and its attempts."""

    id: int
    crm: CrmName
    url: str
    items: list[Any]  # HubSpot: event dicts; Salesforce: (notification id, record id)
    object_name: str | None = None
    duplicate_of: int | None = None
    created_mono: float = field(default_factory=time.monotonic)
    next_due: float = field(default_factory=time.monotonic)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    acked: bool = False
    gave_up: bool = False

    @property
    def done(self) -> bool:
        return self.acked or self.gave_up

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "crm": self.crm,
            "url": self.url,
            "acked": self.acked,
            "gave_up": self.gave_up,
            "duplicate_of": self.duplicate_of,
            "attempts": list(self.attempts),
        }
        if self.crm == "hubspot":
            out["event_ids"] = [e["eventId"] for e in self.items]
            out["object_ids"] = [e["objectId"] for e in self.items]
        else:
            out["object"] = self.object_name
            out["notification_ids"] = [n for n, _ in self.items]
            out["object_ids"] = [r for _, r in self.items]
        return out


class WebhookOutbox:
    """Queue + delivery thread for both CRMs. Start with :meth:`start`, stop with :meth:`close`."""

    def __init__(
        self,
        config: SandboxConfig,
        clock: Clock,
        settings: WebhookSettings | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.settings = settings or WebhookSettings(
            hubspot_url=config.webhook_url_hubspot, salesforce_url=config.webhook_url_salesforce
        )
        self.instance_url = "https://127.0.0.1"
        self.read_record: Callable[[str, str], Mapping[str, Any] | None] = lambda _o, _i: None
        self._cond = threading.Condition()
        self._pending_hs: list[dict[str, Any]] = []
        self._pending_sf: list[tuple[str, str, str]] = []  # (object, notification id, record id)
        self._active: list[Delivery] = []
        self._log: deque[Delivery] = deque(maxlen=_LOG_LIMIT)
        self._flush_requested = False
        self._in_flight = 0
        self._stopped = False
        self._dropped = 0
        self._event_ids = itertools.count(int(time.time()) * 1000)
        self._notification_no = itertools.count(1)
        self._delivery_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # -- emitting (called by emulators, any thread) -------------------------------------------

    def emit_hubspot(self, events: list[dict[str, Any]]) -> list[int]:
        """Queue HubSpot events; each needs ``objectId`` and ``subscriptionType`` (and
        ``propertyName``/``propertyValue`` for property changes). Returns the ``eventId`` s."""
        occurred = int(self.clock.now().timestamp() * 1000)
        built = []
        for raw in events:
            if "objectId" not in raw or "subscriptionType" not in raw:
                raise ValueError("emit_hubspot: each event needs objectId and subscriptionType")
            kind = str(raw["subscriptionType"])
            event: dict[str, Any] = {
                "eventId": raw.get("eventId", next(self._event_ids)),
                "subscriptionId": raw.get("subscriptionId", _SUBSCRIPTION_IDS.get(kind, 2999)),
                "portalId": self.config.hs_portal_id,
                "appId": raw.get("appId", self.config.hs_app_id),
                "occurredAt": raw.get("occurredAt", occurred),
                "subscriptionType": kind,
                "attemptNumber": 0,
                "objectId": int(raw["objectId"]),
            }
            if "propertyName" in raw:
                event["propertyName"] = raw["propertyName"]
                event["propertyValue"] = raw.get("propertyValue")
            event["changeSource"] = raw.get("changeSource", "CRM")
            built.append(event)
        with self._cond:
            self._pending_hs.extend(built)
            self._cond.notify_all()
        return [e["eventId"] for e in built]

    def emit_salesforce(self, object_name: str, record_ids: Sequence[str]) -> list[str]:
        """Queue one Outbound Message notification per record; returns the notification ids."""
        queued = []
        for record_id in record_ids:
            number = next(self._notification_no)
            queued.append((object_name, f"04l{number:012d}AAA", str(record_id)))
        with self._cond:
            self._pending_sf.extend(queued)
            self._cond.notify_all()
        return [n for _, n, _ in queued]

    # -- control ------------------------------------------------------------------------------

    def configure(self, data: Mapping[str, Any]) -> dict[str, Any]:
        with self._cond:
            self.settings.update(data)
            self._cond.notify_all()
            return asdict(self.settings)

    def settings_dict(self) -> dict[str, Any]:
        with self._cond:
            return asdict(self.settings)

    def flush(self) -> int:
        """Send everything queued now (even when held) and make pending retries due now.
        Returns the number of queued events/notifications released."""
        with self._cond:
            released = len(self._pending_hs) + len(self._pending_sf)
            self._flush_requested = True
            now = time.monotonic()
            for delivery in self._active:
                delivery.next_due = min(delivery.next_due, now)
            self._cond.notify_all()
            return released

    def clear(self) -> int:
        """Drop everything queued and every unfinished delivery (the log keeps them, marked
        given up). Returns how many were dropped."""
        with self._cond:
            dropped = len(self._pending_hs) + len(self._pending_sf)
            self._pending_hs, self._pending_sf = [], []
            for delivery in self._active:
                if not delivery.done:
                    delivery.gave_up = True
                    dropped += 1
            self._active = []
            self._cond.notify_all()
            return dropped

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [d.public() for d in self._log]

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "queued": len(self._pending_hs) + len(self._pending_sf),
                "active": sum(1 for d in self._active if not d.done),
                "delivered": sum(1 for d in self._log if d.acked),
                "gave_up": sum(1 for d in self._log if d.gave_up),
                "dropped_without_url": self._dropped,
            }

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued (unless held) or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                queued = (self._pending_hs or self._pending_sf) and not self.settings.hold
                busy = queued or self._in_flight or any(not d.done for d in self._active)
                if not busy:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._client = httpx.Client(trust_env=False, follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- delivery thread ----------------------------------------------------------------------

    def _package(self) -> None:
        """Turn queued items into deliveries (under the lock)."""
        settings = self.settings
        hs, self._pending_hs = self._pending_hs, []
        sf, self._pending_sf = self._pending_sf, []
        if settings.reorder:
            hs.reverse()
            sf.reverse()
        batches: list[tuple[CrmName, str | None, list[Any], str | None]] = []
        hs_size = min(settings.batch_size, 99)
        for start in range(0, len(hs), hs_size):
            batches.append(("hubspot", settings.hubspot_url, hs[start : start + hs_size], None))
        by_object: dict[str, list[tuple[str, str]]] = {}
        for sf_name, notification_id, record_id in sf:
            by_object.setdefault(sf_name, []).append((notification_id, record_id))
        for sf_object, sf_items in by_object.items():
            for start in range(0, len(sf_items), settings.batch_size):
                chunk = sf_items[start : start + settings.batch_size]
                batches.append(("salesforce", settings.salesforce_url, chunk, sf_object))
        for crm, url, items, object_name in batches:
            if url is None:
                self._dropped += len(items)
                log.info("sandbox webhooks: no %s URL configured, dropped %d", crm, len(items))
                continue
            first = Delivery(next(self._delivery_ids), crm, url, items, object_name)
            self._add(first)
            if settings.duplicate:
                copy = Delivery(next(self._delivery_ids), crm, url, list(items), object_name)
                copy.duplicate_of = first.id
                self._add(copy)

    def _add(self, delivery: Delivery) -> None:
        self._active.append(delivery)
        self._log.append(delivery)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                if (self._pending_hs or self._pending_sf) and (
                    not self.settings.hold or self._flush_requested
                ):
                    self._package()
                self._flush_requested = False
                self._active = [d for d in self._active if not d.done]
                now = time.monotonic()
                due = [d for d in self._active if d.next_due <= now]
                if not due:
                    waits = [d.next_due - now for d in self._active]
                    self._cond.wait(min(waits) if waits else None)
                    continue
                self._in_flight += len(due)
            for delivery in due:
                try:
                    self._attempt(delivery)
                except Exception:  # a bug here must not kill the thread
                    log.exception("sandbox webhooks: delivery %d failed", delivery.id)
                    delivery.gave_up = True
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _attempt(self, delivery: Delivery) -> None:
        settings = self.settings
        attempt_no = len(delivery.attempts)
        if delivery.crm == "hubspot":
            body, headers = self._hubspot_request(delivery, attempt_no)
        else:
            body, headers = self._salesforce_request(delivery)
        record: dict[str, Any] = {"attempt": attempt_no, "at": self.clock.now().isoformat()}
        started = time.monotonic()
        ok = False
        assert self._client is not None
        try:
            response = self._client.post(
                delivery.url, content=body, headers=headers, timeout=settings.timeout_s
            )
            record["status"] = response.status_code
            ok = 200 <= response.status_code < 300
            if ok and delivery.crm == "salesforce" and not _ACK.search(response.content):
                ok = False
                record["error"] = "no <Ack>true</Ack> in the response"
        except httpx.HTTPError as exc:
            record["status"] = None
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        record["acked"] = ok
        with self._cond:
            delivery.attempts.append(record)
            if ok:
                delivery.acked = True
                return
            made = len(delivery.attempts)
            age = time.monotonic() - delivery.created_mono
            if delivery.crm == "hubspot":
                exhausted = made >= settings.hubspot_max_attempts
            else:
                exhausted = age >= settings.salesforce_max_age_s
            if exhausted:
                delivery.gave_up = True
            else:
                delivery.next_due = time.monotonic() + settings.backoff(made)

    def _hubspot_request(self, delivery: Delivery, attempt_no: int) -> tuple[bytes, dict[str, str]]:
        events = [{**event, "attemptNumber": attempt_no} for event in delivery.items]
        body = json.dumps(events, separators=(",", ":")).encode()
        timestamp = str(int(time.time() * 1000))
        secret = self.config.hs_app_secret
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (crmsync sandbox)",
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": hubspot_signature_v3(
                secret, "POST", delivery.url, body, timestamp
            ),
            "X-HubSpot-Signature": hubspot_signature_v1(secret, body),
            "X-HubSpot-Signature-Version": "v1",
        }
        return body, headers

    def _salesforce_request(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        object_name = delivery.object_name or "Opportunity"
        org = self.config.sf_organization_id
        version = self.config.sf_api_version
        notifications = [
            (notification_id, record_id, self.read_record(object_name, record_id))
            for notification_id, record_id in delivery.items
        ]
        body = build_outbound_message(
            organization_id=org,
            action_id=f"04k{org[3:15]}AAA",
            enterprise_url=f"{self.instance_url}/services/Soap/c/{version}/{org[:15]}",
            partner_url=f"{self.instance_url}/services/Soap/u/{version}/{org[:15]}",
            object_name=object_name,
            notifications=notifications,
        )
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": '""',
            "User-Agent": "Jakarta Commons-HttpClient/3.1 (crmsync sandbox)",
        }
        return body, headers
