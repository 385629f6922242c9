"""Parsing webhook bodies: HubSpot arrays, Salesforce SOAP Outbound Messages, Flow JSON."""

from __future__ import annotations

import json

import pytest

from app.webhooks.parsing import (
    MalformedBody,
    parse_hubspot,
    parse_outbound_message,
    parse_salesforce_json,
)

SOAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D7F00000107XsUAI</OrganizationId>
   <ActionId>04k7F0000008V3hQAE</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D7F00000107Xs</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D7F00000107Xs</PartnerUrl>
   <Notification>
    <Id>04l7F000008aeAyQAI</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0067F000003pmdWQAQ</sf:Id>
     <sf:StageName>Closed Won</sf:StageName>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>
"""


def test_hubspot_events() -> None:
    body = json.dumps(
        [
            {
                "eventId": 1001,
                "subscriptionId": 2001,
                "portalId": 62515,
                "occurredAt": 1704067200000,
                "subscriptionType": "deal.propertyChange",
                "objectId": 512,
                "propertyName": "dealstage",
                "propertyValue": "closedwon",
            },
            {"eventId": 7, "eventType": "company.creation", "objectId": "9", "portalId": 1},
        ]
    ).encode()
    first, second = parse_hubspot(body)
    assert first.external_id == "62515:2001:1001"
    assert (first.event_type, first.object_id) == ("deal.propertyChange", "512")
    assert first.occurred_at is not None
    assert first.occurred_at.year == 2024
    assert second.event_type == "company.creation"  # the older field name


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[{", "not valid JSON"),
        (b"{}", "must be a JSON array"),
        (b"[1]", r"body\[0\]: must be an object"),
        (b'[{"eventId":1,"objectId":2}]', "subscriptionType: required"),
        (b'[{"subscriptionType":"deal.creation","objectId":2}]', "eventId: required"),
        (json.dumps([{"eventId": i} for i in range(101)]).encode(), "at most 100"),
    ],
)
def test_hubspot_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedBody, match=reason):
        parse_hubspot(body)


def test_outbound_message() -> None:
    message = parse_outbound_message(SOAP)
    assert message.organization_id == "00D7F00000107XsUAI"
    (event,) = message.events
    assert event.external_id == "04l7F000008aeAyQAI"
    assert (event.event_type, event.object_id) == ("Opportunity", "0067F000003pmdWQAQ")
    assert event.payload["fields"]["StageName"] == "Closed Won"


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>&xxe;</OrganizationId></notifications></soapenv:Body></soapenv:Envelope>"""

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<a>&lol2;</a>"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (XXE, "DOCTYPE"),
        (BOMB, "DOCTYPE"),
        (b"<a><b></a>", "not well-formed"),
        (b"not xml", "not well-formed"),
        (b"<a/>", "not a SOAP 1.1 Envelope"),
        (SOAP.replace(b"00D7F00000107XsUAI", b""), "OrganizationId: required"),
        (SOAP.replace(b"<Id>04l7F000008aeAyQAI</Id>", b""), r"Notification\[0\].Id: required"),
        (SOAP.replace(b"<sf:Id>0067F000003pmdWQAQ</sf:Id>", b""), "sObject.Id: required"),
    ],
)
def test_outbound_message_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedBody, match=reason):
        parse_outbound_message(body)


def test_salesforce_json() -> None:
    body = json.dumps(
        {
            "organizationId": "00D7F00000107XsUAI",
            "events": [{"id": "e-1", "object": "Opportunity", "recordId": "006A"}],
        }
    ).encode()
    message = parse_salesforce_json(body)
    assert message.organization_id == "00D7F00000107XsUAI"
    (event,) = message.events
    assert (event.external_id, event.object_id) == ("json:e-1", "006A")
    with pytest.raises(MalformedBody, match=r"events\[0\].recordId: required"):
        parse_salesforce_json(b'{"events":[{"id":"x"}]}')
    with pytest.raises(MalformedBody, match="events: required"):
        parse_salesforce_json(b'{"organizationId":"x"}')
