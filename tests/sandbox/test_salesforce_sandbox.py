"""The Salesforce emulator inside the real sandbox (core server, middleware, seed plan)."""

from __future__ import annotations

from simple_salesforce import Salesforce

from crmsync_sandbox.salesforce.store import Store
from crmsync_sandbox.seed import SeedPlan


def test_seeded_sandbox_serves_simple_salesforce(salesforce_client: Salesforce) -> None:
    plan = SeedPlan(42, 30)  # what the ``sandbox`` fixture seeds; names and links ignore ``now``
    sf = salesforce_client
    accounts = sf.query_all(
        "SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp, Id"
    )
    expected = {Store.seed_id("001", c.key): c.name for c in plan.companies()}
    assert {r["Id"]: r["Name"] for r in accounts["records"]} == expected
    opps = sf.query("SELECT COUNT() FROM Opportunity")["totalSize"]
    assert opps == len(list(plan.deals()))

    first = next(plan.notes())
    note_id = Store.seed_id("002", first.key)
    note = sf.query(f"SELECT Body, ParentId FROM Note WHERE Id = '{note_id}'")["records"]
    assert len(note) == 1
    assert note[0]["ParentId"] == Store.seed_id("001", first.company_key)
    opp_id = note[0]["Body"].split("Opportunity: ", 1)[1].split("\n", 1)[0]
    assert opp_id == Store.seed_id("006", first.deal_key)
    assert sf.Opportunity.get(opp_id)["AccountId"] == note[0]["ParentId"]
    # The three calls made through ``sf`` (``sf.Opportunity`` keeps its own usage).
    assert sf.api_usage["api-usage"].used == 3
