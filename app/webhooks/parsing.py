"""Parse webhook bodies into :class:`InboundEvent` s; a malformed body raises
:class:`MalformedBody` (the 400 reason) and nothing of it is used.

* HubSpot: a JSON array of at most 100 event objects (crm-api.md B.10). Each needs ``eventId``,
  ``subscriptionType`` (older apps: ``eventType``) and ``objectId``. The inbox key is
  ``portalId:subscriptionId:eventId`` (HubSpot says ``eventId`` alone is "not guaranteed to be
  unique"); a retry keeps it (only ``attemptNumber`` changes).
* Salesforce Outbound Messages: SOAP 1.1 ``notifications`` (A.10): the ``OrganizationId`` and
  up to 100 ``Notification`` (``Id``, ``sObject`` with ``sf:Id`` and the chosen fields). The inbox
  key is the notification ``Id`` (Salesforce: "dedupe on notification Id"). XML with a DOCTYPE
  is refused before it is parsed: SOAP forbids DTDs, and that shuts out entity expansion and
  external entities (XXE) whatever the parser would do with them.
* Salesforce Flow / Apex JSON: ``{"organizationId": ..., "events": [{"id", "object",
  "recordId", "occurredAt"?}]}`` (or just the list); ``id`` is the caller's unique event id.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.parsers import expat

__all__ = [
    "MAX_EVENTS",
    "InboundEvent",
    "MalformedBody",
    "OutboundMessage",
    "parse_hubspot",
    "parse_outbound_message",
    "parse_salesforce_json",
]

MAX_EVENTS = 100
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


class MalformedBody(ValueError):
    """The body cannot be used: the reason names what is wrong (the 400 answer)."""


@dataclass(frozen=True)
class InboundEvent:
    """One event as stored in ``webhook_inbox`` (``payload`` becomes its ``raw_body``)."""

    source: str
    external_id: str
    event_type: str
    object_id: str | None
    occurred_at: datetime | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    events: list[InboundEvent]


def _ms(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"body: not valid JSON ({exc})") from None


def _scalar_id(event: dict[str, Any], name: str, where: str) -> str:
    value = event.get(name)
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise MalformedBody(f"{where}.{name}: required (a number or a string)")
    return str(value)


def parse_hubspot(body: bytes) -> list[InboundEvent]:
    """The events of a HubSpot webhook POST."""
    data = _json(body)
    if not isinstance(data, list):
        raise MalformedBody("body: must be a JSON array of events")
    if len(data) > MAX_EVENTS:
        raise MalformedBody(f"body: {len(data)} events; at most {MAX_EVENTS} per request")
    events: list[InboundEvent] = []
    for n, raw in enumerate(data):
        where = f"body[{n}]"
        if not isinstance(raw, dict):
            raise MalformedBody(f"{where}: must be an object")
        kind = raw.get("subscriptionType") or raw.get("eventType")
        if not isinstance(kind, str) or not kind:
            raise MalformedBody(f"{where}.subscriptionType: required")
        event_id = _scalar_id(raw, "eventId", where)
        object_id = _scalar_id(raw, "objectId", where)
        key = f"{raw.get('portalId', '')}:{raw.get('subscriptionId', '')}:{event_id}"
        events.append(
            InboundEvent("hubspot", key, kind, object_id, _ms(raw.get("occurredAt")), raw)
        )
    return events


def _refuse_dtd(body: bytes) -> None:
    """Scan with expat and refuse any DOCTYPE or entity declaration (no DTD in SOAP)."""
    parser = expat.ParserCreate()

    def refuse(*_args: Any) -> None:
        raise MalformedBody("body: XML with a DOCTYPE or entity declaration is refused")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise MalformedBody(f"body: not well-formed XML ({exc})") from None


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    return parent.find(f"{{{OUTBOUND_NS}}}{name}")


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """The ``notifications`` of a Salesforce Outbound Message (SOAP 1.1)."""
    _refuse_dtd(body)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise MalformedBody(f"body: not well-formed XML ({exc})") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise MalformedBody("body: not a SOAP 1.1 Envelope")
    notifications = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise MalformedBody("Body: no notifications element (namespace " + OUTBOUND_NS + ")")
    org = _child(notifications, "OrganizationId")
    if org is None or not (org.text or "").strip():
        raise MalformedBody("OrganizationId: required")
    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if len(items) > MAX_EVENTS:
        raise MalformedBody(f"Notification: {len(items)}; at most {MAX_EVENTS} per message")
    events: list[InboundEvent] = []
    for n, item in enumerate(items):
        where = f"Notification[{n}]"
        nid = _child(item, "Id")
        sobject = _child(item, "sObject")
        if nid is None or not (nid.text or "").strip():
            raise MalformedBody(f"{where}.Id: required")
        if sobject is None:
            raise MalformedBody(f"{where}.sObject: required")
        object_type = sobject.get(f"{{{XSI_NS}}}type", "")
        object_name = object_type.rpartition(":")[2] or "Opportunity"
        fields: dict[str, str | None] = {}
        for child in sobject:
            local = child.tag.rpartition("}")[2]
            fields[local] = child.text
        record_id = (fields.get("Id") or "").strip()
        if not record_id:
            raise MalformedBody(f"{where}.sObject.Id: required")
        payload: dict[str, Any] = {
            "notificationId": nid.text.strip() if nid.text else "",
            "object": object_name,
            "fields": fields,
        }
        events.append(
            InboundEvent(
                "salesforce",
                str(payload["notificationId"]),
                object_name,
                record_id,
                _iso(fields.get("SystemModstamp") or fields.get("LastModifiedDate")),
                payload,
            )
        )
    return OutboundMessage((org.text or "").strip(), events)


def parse_salesforce_json(body: bytes) -> OutboundMessage:
    """Events sent as JSON by a Flow or Apex (signed; see :mod:`app.webhooks.signatures`)."""
    data = _json(body)
    organization = ""
    if isinstance(data, dict):
        org = data.get("organizationId")
        if org is not None and not isinstance(org, str):
            raise MalformedBody("organizationId: must be a string")
        organization = org or ""
        data = data.get("events")
        if data is None:
            raise MalformedBody("events: required (a list)")
    if not isinstance(data, list):
        raise MalformedBody("events: must be a list")
    if len(data) > MAX_EVENTS:
        raise MalformedBody(f"events: {len(data)}; at most {MAX_EVENTS} per request")
    events: list[InboundEvent] = []
    for n, raw in enumerate(data):
        where = f"events[{n}]"
        if not isinstance(raw, dict):
            raise MalformedBody(f"{where}: must be an object")
        event_id = _scalar_id(raw, "id", where)
        record_id = _scalar_id(raw, "recordId", where)
        object_name = raw.get("object", "Opportunity")
        if not isinstance(object_name, str) or not object_name:
            raise MalformedBody(f"{where}.object: must be a string")
        occurred = raw.get("occurredAt")
        events.append(
            InboundEvent(
                "salesforce",
                f"json:{event_id}",
                object_name,
                record_id,
                _iso(occurred) if isinstance(occurred, str) else _ms(occurred),
                {"object": object_name, "fields": {"Id": record_id}, "event": raw},
            )
        )
    return OutboundMessage(organization, events)
