"""Handover completeness (domain.md 6.2-6.3): each table row's id names the section it checks."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from app.domain.config import HANDOVER_REQUIRED, HandoverConfig, ScoringConfig
from app.domain.handover import (
    DealFacts,
    HandoverFacts,
    check_handover,
    handover_note_body,
    handover_task_text,
    required_fields,
)
from app.mappers.handover import parse_handover

# The sandbox seed's template (crmsync_sandbox/seed.py, docs/sandbox-schema.md).
SEED_BODY = """Handover: Acme new business
Opportunity: 006000000000001AAA
What was sold: Pro, 40 seats, EUR 30000 ARR
Term: 2026-12-01 to 2027-11-30, billed yearly, auto-renew yes
Primary contact: Ada Lovelace, VP Operations, ada@acme.test
Secondary contacts: Bob Stone, IT lead, bob@acme.test; Cy Young, Finance, cy@acme.test
Champion: Ada Lovelace
Decision maker: Dee Dee
Technical contact: Bob Stone, IT lead, bob@acme.test
Why they bought: replace shared drives
Goals: all brand assets in one place; agencies self-serve
Success criteria: 80 % of staff active; search under 10 s
Special terms: none
Fit: good
Risks: legacy DAM contract; IT capacity
Timeline: kickoff within 14 days of signature"""


def facts_of(body: str, **deal: Any) -> HandoverFacts:
    return HandoverFacts.from_columns(parse_handover(body).columns(), deal=DealFacts(**deal))


def without(body: str, *labels: str) -> str:
    return "\n".join(
        line for line in body.split("\n") if not any(line.startswith(f"{x}:") for x in labels)
    )


def replace(body: str, label: str, value: str) -> str:
    return "\n".join(
        f"{label}: {value}" if line.startswith(f"{label}:") else line for line in body.split("\n")
    )


@pytest.mark.parametrize(
    ("tier", "count"),
    [
        pytest.param("key", 16, id="6.2-key-requires-16"),
        pytest.param("high", 15, id="6.2-high-requires-15-exec-sponsor-optional"),
        pytest.param("low", 6, id="6.2-low-requires-6"),
        pytest.param("tech", 4, id="6.2-tech-requires-4-technical-contact-optional"),
    ],
)
def test_required_fields_per_tier(tier: Any, count: int) -> None:
    assert len(required_fields(tier)) == count
    assert "value_expected" not in required_fields(tier)  # 6.2: O / O / - / -
    assert "preassigned_csm" not in required_fields(tier)


@pytest.mark.parametrize(
    ("body", "tier", "deal", "status", "percent", "missing"),
    [
        pytest.param(SEED_BODY, "low", {}, "complete", 100, [], id="6.3-seed-note-complete-low"),
        pytest.param(SEED_BODY, "tech", {}, "complete", 100, [], id="6.3-seed-note-complete-tech"),
        pytest.param(
            SEED_BODY,
            "key",
            {},
            "partial",
            87,
            ["Services sold", "Executive sponsor"],
            id="6.3-seed-note-key-lacks-services-and-exec-sponsor-14-of-16",
        ),
        pytest.param(
            SEED_BODY + "\nServices sold: none",
            "high",
            {},
            "complete",
            100,
            [],
            id="6.2-services-none-is-an-answer",
        ),
        pytest.param(
            SEED_BODY + "\nServices sold: data migration; SSO integration\n"
            "Executive sponsor: Eve Exec, CEO",
            "key",
            {},
            "complete",
            100,
            [],
            id="6.2-key-complete-with-services-and-sponsor",
        ),
        pytest.param("", "high", {}, "empty", 0, None, id="6.3-no-note-empty-0"),
        pytest.param(
            "Handover: x\nSpecial terms: none",
            "tech",
            {},
            "partial",
            25,
            ["What was sold", "Term", "Primary contact"],
            id="6.2-special-terms-none-counts-1-of-4",
        ),
        pytest.param(
            without(SEED_BODY, "Special terms"),
            "low",
            {},
            "partial",
            83,
            ["Special terms"],
            id="6.2-special-terms-absent-is-missing",
        ),
        pytest.param(
            replace(SEED_BODY, "What was sold", "Pro, EUR 30000 ARR"),
            "low",
            {},
            "partial",
            83,
            ["What was sold (seats)"],
            id="6.2-sold-without-seats-names-the-part",
        ),
        pytest.param(
            replace(SEED_BODY, "What was sold", "Pro, 40 seats"),
            "low",
            {"amount": Decimal("30000")},
            "complete",
            100,
            [],
            id="6.2-sold-amount-from-the-opportunity",
        ),
        pytest.param(
            without(SEED_BODY, "Term"),
            "low",
            {"term_start_on": date(2026, 12, 1), "term_months": 12, "auto_renew": True},
            "partial",
            83,
            ["Term (billing frequency)"],
            id="6.2-term-dates-from-the-opportunity-billing-still-missing",
        ),
        pytest.param(
            replace(SEED_BODY, "Primary contact", "Ada Lovelace, VP Operations"),
            "tech",
            {},
            "partial",
            75,
            ["Primary contact (e-mail)"],
            id="6.2-primary-contact-needs-e-mail",
        ),
        pytest.param(
            replace(SEED_BODY, "Fit", "medium"),
            "high",
            {},
            "partial",
            86,
            ["Services sold", "Fit"],
            id="6.2-fit-must-be-good-stretch-or-bad",
        ),
        pytest.param(
            without(SEED_BODY, "Champion", "Goals", "Risks"),
            "low",
            {},
            "complete",
            100,
            [],
            id="6.2-low-champion-goals-risks-optional",
        ),
    ],
)
def test_check_handover(
    body: str,
    tier: Any,
    deal: dict[str, Any],
    status: str,
    percent: int,
    missing: list[str] | None,
) -> None:
    check = check_handover(facts_of(body, **deal), tier)
    assert check.status == status
    assert check.completeness == percent
    if missing is not None:
        assert [m.text() for m in check.missing] == missing
    assert len(check.present) + len(check.missing) == len(check.required)


def test_ratio_is_present_over_required() -> None:
    """6.3: completeness = required fields present / required fields for the tier."""
    check = check_handover(facts_of(SEED_BODY), "key")
    assert check.ratio == pytest.approx(14 / 16)
    assert check.missing_codes == ("services", "executive_sponsor")


def test_required_fields_are_a_setting() -> None:
    """6.2 / 10 `handover.required_fields`: a deployment may require the champion on key only."""
    required = dict(HANDOVER_REQUIRED)
    required["champion"] = ("key",)
    cfg = ScoringConfig(handover=HandoverConfig(required=required))
    assert "champion" not in required_fields("high", cfg)
    assert "champion" in required_fields("key", cfg)


def test_task_text_lists_the_missing_fields() -> None:
    """6.3: the `handover_complete` task for the rep lists the missing fields."""
    check = check_handover(facts_of(replace(SEED_BODY, "Fit", "?")), "key")
    text = handover_task_text(check, "Acme new business")
    assert text == (
        "Complete the handover of Acme new business (key tier, 81 % complete). "
        "Missing: Services sold; Executive sponsor; Fit."
    )
    assert handover_task_text(check_handover(facts_of(SEED_BODY), "low")) is None


@pytest.mark.parametrize("html_output", [False, True], ids=["6.3-note-text", "6.3-note-html"])
def test_note_body_parses_back_to_the_same_columns(html_output: bool) -> None:
    """6.3: the handover is written as a note on the CRM account; the next pull parses it to the
    same structured columns (so it is not a change), and the completeness is in it."""
    facts = facts_of(replace(SEED_BODY, "What was sold", "Pro, 40 seats"), amount=Decimal(30000))
    check = check_handover(facts, "key")
    body = handover_note_body(
        facts,
        check,
        deal_name="Acme new business",
        opportunity_crm_id="006X",
        html_output=html_output,
    )
    parsed = parse_handover(body)
    assert parsed.opportunity_id == "006X"
    assert parsed.deal_name == "Acme new business"
    expected = facts.columns()
    expected["sold"] = {**expected["sold"], "arr": 30000, "currency": "EUR"}
    expected["sold"]["text"] = parsed.sold["text"]
    assert parsed.columns() == expected
    assert "Handover completeness: 87 % (partial)" in body
    assert "Missing: Services sold; Executive sponsor" in body
