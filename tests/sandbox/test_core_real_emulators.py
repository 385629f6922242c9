"""The real emulators behind the core: both clients over verified HTTPS, counted in stats."""

from __future__ import annotations

from typing import Any

from app.sandbox import Sandbox


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
