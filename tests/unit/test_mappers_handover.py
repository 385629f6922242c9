"""The handover body parser and renderer (app/mappers/handover.py, docs/sandbox-schema.md)."""

from __future__ import annotations

from typing import Any

import pytest

from app.mappers.handover import parse_handover, render_handover

TEMPLATE = """Handover: Acme - New Business
Opportunity: 006000000000001AAA
What was sold: Enterprise, 250 seats, EUR 120000 ARR
Term: 2025-01-01 to 2025-12-31, billed yearly, auto-renew yes
Primary contact: Ada Lovelace, VP Operations, ada@acme.test
Secondary contacts: Bob Stone, IT lead, bob@acme.test; Cy Young, Finance, cy@acme.test
Champion: Ada Lovelace, VP Operations, ada@acme.test
Decision maker: Dee Boss, CFO, dee@acme.test
Technical contact: Ed Admin, Admin, ed@acme.test
Why they bought: replace spreadsheets
Goals: cut onboarding time by 50%; roll out to 3 teams
Success criteria: 200 active users by Q2; NPS > 30
Special terms: none
Fit: good
Risks: incumbent tool; integration with SAP
Timeline: go-live 2025-02-01"""

EXPECTED: dict[str, Any] = {
    "sold": {
        "text": "Enterprise, 250 seats, EUR 120000 ARR",
        "plan": "Enterprise",
        "seats": 250,
        "currency": "EUR",
        "arr": 120000,
        "term_text": "2025-01-01 to 2025-12-31, billed yearly, auto-renew yes",
        "term_start_on": "2025-01-01",
        "term_end_on": "2025-12-31",
        "billing": "yearly",
        "auto_renew": True,
        "why_they_bought": "replace spreadsheets",
    },
    "contacts": [
        {
            "role": "primary",
            "name": "Ada Lovelace",
            "title": "VP Operations",
            "email": "ada@acme.test",
        },
        {"role": "secondary", "name": "Bob Stone", "title": "IT lead", "email": "bob@acme.test"},
        {"role": "secondary", "name": "Cy Young", "title": "Finance", "email": "cy@acme.test"},
        {
            "role": "champion",
            "name": "Ada Lovelace",
            "title": "VP Operations",
            "email": "ada@acme.test",
        },
        {"role": "decision_maker", "name": "Dee Boss", "title": "CFO", "email": "dee@acme.test"},
        {"role": "technical", "name": "Ed Admin", "title": "Admin", "email": "ed@acme.test"},
    ],
    "goals": ["cut onboarding time by 50%", "roll out to 3 teams"],
    "success_criteria": ["200 active users by Q2", "NPS > 30"],
    "special_terms": "none",
    "risks": ["incumbent tool", "integration with SAP"],
    "fit": "good",
    "timeline": "go-live 2025-02-01",
}


def test_template_parses_to_every_column() -> None:
    parsed = parse_handover(TEMPLATE)
    assert parsed.columns() == EXPECTED
    assert parsed.opportunity_id == "006000000000001AAA"
    assert parsed.deal_name == "Acme - New Business"
    assert parsed.is_handover
    assert parsed.unknown_labels == ()


def _html(text: str) -> str:
    return "".join(
        f"<p>{line.replace('&', '&amp;').replace('>', '&gt;')}</p>" for line in text.split("\n")
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(TEMPLATE.replace("\n", "\r\n"), id="crlf"),
        pytest.param(TEMPLATE.replace("\n", "\r"), id="cr"),
        pytest.param(_html(TEMPLATE), id="hubspot-html-paragraphs"),
        pytest.param(TEMPLATE.replace("\n", "<br>"), id="html-br"),
        pytest.param(TEMPLATE.replace("\n", "<br />\n"), id="html-br-self-closing"),
        pytest.param("<div>" + TEMPLATE.replace("\n", "</div><div>") + "</div>", id="html-div"),
        pytest.param(TEMPLATE.replace(": ", " : "), id="space-before-colon"),
        pytest.param(TEMPLATE.upper().replace(TEMPLATE.upper(), TEMPLATE), id="unchanged"),
        pytest.param("\n\n" + TEMPLATE + "\n\n", id="blank-lines-around"),
        pytest.param(
            TEMPLATE.replace("Goals:", "Value expected: technical\nGoals:"), id="unknown-line"
        ),
    ],
)
def test_messy_input_parses_the_same(body: str) -> None:
    assert parse_handover(body).columns() == EXPECTED
    assert parse_handover(body).opportunity_id == "006000000000001AAA"


@pytest.mark.parametrize(
    ("body", "column", "expected"),
    [
        ("", "goals", []),
        ("just a plain note from a call", "goals", []),
        ("Goals: a;b; ;c", "goals", ["a", "b", "c"]),
        ("Goals: first\nsecond continues", "goals", ["first", "second continues"]),
        ("Goals:\n- one\n- two\n\nFit: bad", "goals", ["one", "two"]),
        ("goals: lower case label", "goals", ["lower case label"]),
        ("Risks: none", "risks", []),
        ("Risks: n/a", "risks", []),
        ("Special terms: none", "special_terms", "none"),
        ("Special terms: 10% discount; SLA 99.9%", "special_terms", "10% discount; SLA 99.9%"),
        ("Special terms:", "special_terms", None),
        # "nothing sold" is an answer (domain.md 6.2), kept so completeness counts it
        ("Services sold: none", "sold", {"services": ["none"]}),
        ("Services sold:", "sold", {}),
        ("Fit: Stretch - new segment", "fit", "stretch"),
        ("Fit: BAD", "fit", "bad"),
        ("Fit: excellent", "fit", None),
        ("Timeline: Q3\nwith a hard deadline", "timeline", "Q3 with a hard deadline"),
        ("Timeline: https://plan.example/x", "timeline", "https://plan.example/x"),
        ("Timeline: go live\nFoo: bar\nmore", "timeline", "go live"),
        (
            "Primary contact: Ada Lovelace",
            "contacts",
            [{"role": "primary", "name": "Ada Lovelace", "email": None}],
        ),
        (
            "Primary contact: Ada <ADA@acme.test>",
            "contacts",
            [{"role": "primary", "name": "Ada", "email": "ada@acme.test"}],
        ),
        ("Champion: tbd", "contacts", []),
        (
            "Executive sponsor: Zed, CEO, zed@acme.test",
            "contacts",
            [
                {
                    "role": "executive_sponsor",
                    "name": "Zed",
                    "title": "CEO",
                    "email": "zed@acme.test",
                }
            ],
        ),
        (
            "What was sold: Pro, 1,200 seats, USD 1,500,000.50 ARR",
            "sold",
            {
                "text": "Pro, 1,200 seats, USD 1,500,000.50 ARR",
                "plan": "Pro",
                "seats": 1200,
                "currency": "USD",
                "arr": 1500000.5,
            },
        ),
        (
            "What was sold: Starter, EUR 900 MRR, Data migration",
            "sold",
            {
                "text": "Starter, EUR 900 MRR, Data migration",
                "plan": "Starter",
                "products": ["Data migration"],
                "currency": "EUR",
                "mrr": 900,
            },
        ),
        (
            "What was sold: something vague",
            "sold",
            {"text": "something vague", "plan": "something vague"},
        ),
        (
            "Term: 12 months, auto-renew no",
            "sold",
            {"term_text": "12 months, auto-renew no", "auto_renew": False},
        ),
        (
            "Services sold: onboarding package; on-site training",
            "sold",
            {"services": ["onboarding package", "on-site training"]},
        ),
    ],
)
def test_fields(body: str, column: str, expected: Any) -> None:
    assert parse_handover(body).columns()[column] == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Opportunity: 006000000000001AAA", "006000000000001AAA"),
        ("Opportunity:   006000000000001AAA (Acme renewal)", "006000000000001AAA"),
        ("Deal: 987654", "987654"),
        ("<p>Opportunity: 987654</p>", "987654"),
        ("Goals: x", None),
        (None, None),
    ],
)
def test_opportunity_id(body: str | None, expected: str | None) -> None:
    assert parse_handover(body).opportunity_id == expected


def test_plain_note_is_not_a_handover() -> None:
    assert not parse_handover("Called the customer, all good.").is_handover


@pytest.mark.parametrize("html_output", [False, True])
def test_render_round_trips(html_output: bool) -> None:
    parsed = parse_handover(TEMPLATE)
    body = render_handover(
        parsed.columns(),
        deal_name="Acme - New Business",
        opportunity_crm_id="006000000000001AAA",
        html_output=html_output,
    )
    again = parse_handover(body)
    assert again.columns() == EXPECTED
    assert again.opportunity_id == "006000000000001AAA"
    assert again.deal_name == "Acme - New Business"
    if html_output:
        assert body.startswith("<p>Handover: ")
    else:
        assert body.splitlines()[0] == "Handover: Acme - New Business"


def test_render_cs_written_handover() -> None:
    note = {
        "title": "Acme expansion",
        "sold": {"plan": "Pro", "seats": 10, "currency": "EUR", "arr": 5000},
        "contacts": [{"role": "primary", "name": "Ada", "email": "ada@acme.test"}],
        "goals": ["one"],
        "success_criteria": [],
        "special_terms": None,
        "risks": [],
        "fit": "good",
        "timeline": None,
    }
    assert render_handover(note) == (
        "Handover: Acme expansion\n"
        "What was sold: Pro, 10 seats, EUR 5000 ARR\n"
        "Primary contact: Ada, ada@acme.test\n"
        "Goals: one\n"
        "Fit: good"
    )
    assert render_handover({}) == ""
