"""The Salesforce emulator inside the real sandbox (core server, middleware, seed plan)."""

from __future__ import annotations

from simple_salesforce import Salesforce


def test_seeded_sandbox_serves_simple_salesforce(salesforce_client: Salesforce) -> None:
    sf = salesforce_client
    accounts = sf.query_all(
        "SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp, Id"
    )
    assert accounts["totalSize"] == 30
    assert all(len(r["Id"]) == 18 and r["Id"].startswith("001") for r in accounts["records"])
    opps = sf.query("SELECT COUNT() FROM Opportunity")["totalSize"]
    assert opps > 0
    note = sf.query("SELECT Body, ParentId FROM Note LIMIT 1")["records"]
    if note:
        opp_id = note[0]["Body"].split("Opportunity: ", 1)[1].split("\n", 1)[0]
        assert opp_id.startswith("006")
        assert sf.Opportunity.get(opp_id)["AccountId"] == note[0]["ParentId"]
    assert sf.api_usage["api-usage"].used >= 1
