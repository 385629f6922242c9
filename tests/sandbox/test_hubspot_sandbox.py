"""HubSpot emulator inside the real sandbox (core server, middleware, seed) via the conftest."""

from __future__ import annotations

from typing import Any

from crmsync_sandbox import Sandbox
from crmsync_sandbox.seed import SeedPlan

TIMEOUT = (5, 30)


def test_seeded_hubspot_through_the_core(sandbox: Sandbox, hubspot_client: Any) -> None:
    plan = SeedPlan(42, 30)  # what the ``sandbox`` fixture seeds
    api = hubspot_client
    companies: list[Any] = []
    after = None
    while True:
        page = api.crm.companies.basic_api.get_page(
            limit=100,
            after=after,
            properties=["name", "arr", "crmsync_id"],
            _request_timeout=TIMEOUT,
        )
        companies.extend(page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    arr_by_name = {c.properties["name"]: c.properties["arr"] for c in companies}
    assert arr_by_name == {c.name: str(c.arr) for c in plan.companies()}
    deals = api.crm.deals.search_api.do_search(
        {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}
                    ]
                }
            ],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 200,
        },
        _request_timeout=TIMEOUT,
    )
    assert deals.total == len(deals.results) == len(list(plan.deals()))
    open_deal = next(
        d for d in deals.results if d.properties["dealstage"] not in ("closedwon", "closedlost")
    )
    emulator = sandbox.ctx.emulators["hubspot"]
    emulator.close_won(open_deal.id)
    again = api.crm.deals.basic_api.get_by_id(
        open_deal.id, properties=["dealstage", "hs_is_closed_won"], _request_timeout=TIMEOUT
    )
    assert again.properties["dealstage"] == "closedwon"
    assert again.properties["hs_is_closed_won"] == "true"
    notes = api.crm.associations.v4.batch_api.get_page(
        "companies",
        "notes",
        {"inputs": [{"id": c.id} for c in companies]},
        _request_timeout=TIMEOUT,
    )
    companies_with_notes = {n.company_key for n in plan.notes()}
    assert len(notes.results) == len(companies_with_notes)
    note_id = notes.results[0].to[0].to_object_id
    note = api.crm.objects.notes.basic_api.get_by_id(
        note_id, properties=["hs_note_body"], _request_timeout=TIMEOUT
    )
    deal_ids = api.crm.associations.v4.basic_api.get_page(
        "notes", note_id, "deals", _request_timeout=TIMEOUT
    )
    assert f"Opportunity: {deal_ids.results[0].to_object_id}" in note.properties["hs_note_body"]
