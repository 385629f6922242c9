"""The seed plan: deterministic, realistic, spread over tiers and stages."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

from crmsync_sandbox.seed import DEAL_STAGES, DEAL_TYPES, OPPORTUNITY_PLACEHOLDER, SeedPlan, tier_of

NOW = datetime(2026, 1, 15, tzinfo=UTC)


def test_same_seed_same_records_different_seed_different() -> None:
    first = list(itertools.islice(SeedPlan(42, 500, NOW).companies(), 20))
    again = list(itertools.islice(SeedPlan(42, 500, NOW).companies(), 20))
    other = list(itertools.islice(SeedPlan(43, 500, NOW).companies(), 20))
    assert first == again
    assert [c.name for c in first] != [c.name for c in other]
    plan = SeedPlan(42, 200, NOW)
    assert list(plan.deals()) == list(plan.deals())  # iterators regenerate
    assert list(plan.notes()) == list(SeedPlan(42, 200, NOW).notes())


def test_companies_are_realistic_and_unique() -> None:
    companies = list(SeedPlan(42, 2000, NOW).companies())
    assert [c.key for c in companies[:2]] == ["C0000001", "C0000002"]
    assert len({c.domain for c in companies}) == len(companies)
    assert len({c.name for c in companies}) == len(companies)
    for c in companies[:50]:
        assert " " in c.name
        assert c.name[0].isupper()
        assert "." in c.domain
        assert c.domain == c.domain.lower()
        assert c.currency == "EUR"
        assert c.contract_end_on is None or c.contract_end_on > c.contract_start_on
        assert c.created_at <= NOW
        assert c.created_at.tzinfo is not None
        assert c.owner_key.startswith("U")


def test_arr_spreads_over_all_tiers_with_few_key_accounts() -> None:
    companies = list(SeedPlan(7, 3000, NOW).companies())
    tiers = Counter(tier_of(c.arr) for c in companies)
    assert set(tiers) == {"key", "high", "low", "tech"}
    assert tiers["key"] < tiers["high"] < tiers["low"]
    assert tiers["key"] / len(companies) < 0.1
    assert tiers["low"] + tiers["tech"] > len(companies) / 2
    strategic = [c for c in companies if c.strategic]
    assert 0 < len(strategic) < len(companies) * 0.05
    assert tier_of(100_000) == "key"
    assert tier_of(99_999) == "high"
    assert tier_of(25_000) == "high"
    assert tier_of(24_999) == "low"
    assert tier_of(5_000) == "low"
    assert tier_of(4_999) == "tech"


def test_deals_cover_every_stage_and_type_about_two_per_company() -> None:
    plan = SeedPlan(42, 1000, NOW)
    deals = list(plan.deals())
    assert 1.7 < len(deals) / 1000 < 2.3
    assert set(Counter(d.stage for d in deals)) == set(DEAL_STAGES)
    assert set(Counter(d.type for d in deals)) == set(DEAL_TYPES)
    assert {d.company_key for d in deals} == {c.key for c in plan.companies()}
    assert len({d.key for d in deals}) == len(deals)
    users = {u.key: u for u in plan.users()}
    assert {u.role for u in users.values()} == {"sales", "csm", "admin"}
    csm_emails = {u.email for u in users.values() if u.role == "csm"}
    assert any(d.preassigned_csm_email is not None for d in deals)  # the check below runs
    for deal in deals:
        assert deal.owner_key in users
        assert deal.amount > 0
        if deal.preassigned_csm_email is not None:
            assert deal.stage == "closed_won"
            assert deal.preassigned_csm_email in csm_emails


def test_notes_only_on_closed_won_new_business_or_expansion() -> None:
    plan = SeedPlan(42, 500, NOW)
    deals = {d.key: d for d in plan.deals()}
    notes = list(plan.notes())
    expected = [d.key for d in deals.values() if d.stage == "closed_won" and d.type != "renewal"]
    assert [n.deal_key for n in notes] == expected
    for note in notes:
        deal = deals[note.deal_key]
        assert note.company_key == deal.company_key
        lines = note.body.splitlines()
        assert lines[0] == f"Handover: {deal.name}"
        assert lines[1] == f"Opportunity: {OPPORTUNITY_PLACEHOLDER}"
        assert lines[2].startswith("What was sold: ")
        labels = [line.split(":", 1)[0] for line in lines]
        assert labels == [
            "Handover", "Opportunity", "What was sold", "Term", "Primary contact",
            "Secondary contacts", "Champion", "Decision maker", "Technical contact",
            "Why they bought", "Goals", "Success criteria", "Special terms", "Fit", "Risks",
            "Timeline",
        ]  # fmt: skip
        assert (
            note.body_for("0065g00000AbCdEAAZ").splitlines()[1] == "Opportunity: 0065g00000AbCdEAAZ"
        )


def test_small_and_empty_plans() -> None:
    assert list(SeedPlan(1, 0, NOW).companies()) == []
    assert len(list(SeedPlan(1, 3, NOW).companies())) == 3
    assert len(list(SeedPlan(1, 3, NOW).users())) >= 6
