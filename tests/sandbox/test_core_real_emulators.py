"""The real emulators behind the core: both clients over verified HTTPS, counted in stats."""

from __future__ import annotations

from typing import Any

from crmsync_sandbox import Sandbox


def test_both_clients_reach_their_emulator_on_one_port(
    sandbox: Sandbox, salesforce_client: Any, hubspot_client: Any
) -> None:
    assert set(sandbox.ctx.emulators) == {"salesforce", "hubspot"}
    sandbox.control("POST", "/reset")
    accounts = salesforce_client.query("SELECT Id, Name FROM Account LIMIT 5")
    assert accounts["records"]
    assert all(r["Name"] for r in accounts["records"])
    page = hubspot_client.crm.companies.basic_api.get_page(
        limit=5, properties=["name"], _request_timeout=(5, 30)
    )
    assert page.results
    assert all(c.properties["name"] for c in page.results)
    stats = sandbox.control("GET", "/stats")
    assert stats["calls_total"]["salesforce"] >= 1
    assert stats["calls_total"]["hubspot"] >= 1
    sf_routes = stats["calls"]["salesforce"]
    assert any(route.startswith("GET /services/") and "{" in route for route in sf_routes)


def test_seed_closed_won_deals_emit_webhooks_when_asked(webhook_receiver: Any) -> None:
    """'On a deal moving to closed-won (by seed, ...)': both CRMs announce the seed's won deals."""
    import json
    import xml.etree.ElementTree as ET

    from crmsync_sandbox import SandboxConfig

    webhook_receiver.body = (
        b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
        b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
    )
    config = SandboxConfig(
        accounts=15,
        emit_seed_webhooks=True,
        webhook_url_hubspot=webhook_receiver.url,
        webhook_url_salesforce=webhook_receiver.url,
    )
    with Sandbox(config) as sb:
        received = webhook_receiver.wait_for(2, timeout=10)
        soql = "SELECT COUNT() FROM Opportunity WHERE StageName = 'Closed Won'"
        session = sb.session()
        sf = sb.info.salesforce
        count = session.get(
            f"{sf.instance_url}/services/data/v{sf.api_version}/query/",
            params={"q": soql},
            headers={"Authorization": f"Bearer {sf.access_token}"},
            timeout=30,
        ).json()["totalSize"]
        session.close()
    hubspot = [
        r for r in received if r.headers.get("Content-Type", "").startswith("application/json")
    ]
    salesforce = [r for r in received if b"notifications" in r.body]
    assert hubspot, "no HubSpot webhook for the seed"
    assert salesforce, "no Outbound Message for the seed"
    events = [e for r in hubspot for e in json.loads(r.body)]
    assert all(e["propertyValue"] == "closedwon" for e in events)
    ns = {"o": "http://soap.sforce.com/2005/09/outbound"}
    notified = [
        n for r in salesforce for n in ET.fromstring(r.body).iterfind(".//o:Notification", ns)
    ]
    assert len(notified) == count > 0
    assert len(events) == count  # the same seed: as many won deals in each CRM
