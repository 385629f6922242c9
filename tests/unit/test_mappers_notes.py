"""app.mappers.notes: CS-side note bodies, create extras, the Salesforce pending-create match."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.mappers.handover import parse_handover
from app.mappers.notes import (
    LOOKUP_MARGIN,
    PENDING_KEY,
    CrmNote,
    PendingNote,
    compose_note,
    create_extras,
    lookup_since,
    match_pending,
    pending_since,
    with_pending,
    without_pending,
)

T0 = datetime(2026, 12, 1, 10, 0, 0, 500_000, tzinfo=UTC)
T0_MS = "2026-12-01T10:00:00.500Z"
HANDOVER = "Handover: Acme renewal\nWhat was sold: Enterprise, 250 seats\nGoals: a; b"


@pytest.mark.parametrize(
    ("title", "text", "structured", "opp", "expected_body"),
    [
        ("Kickoff", None, {}, None, "Handover: Kickoff"),
        ("Kickoff", "They want SSO.", {}, None, "Handover: Kickoff\n\nThey want SSO."),
        (
            "Kickoff",
            "free text",
            {"goals": ["go live"], "fit": "good"},
            None,
            "Handover: Kickoff\nGoals: go live\nFit: good\n\nfree text",
        ),
        (
            "Deal note",
            None,
            {"risks": ["budget"]},
            "006000000000001AAA",
            "Handover: Deal note\nOpportunity: 006000000000001AAA\nRisks: budget",
        ),
        # a body that is a handover already is kept as sent, structured columns unused
        ("Other title", HANDOVER, {"goals": ["x"]}, None, HANDOVER),
        # free text that looks like a field after the blank line is still free text
        ("T", "Note: call back", {}, None, "Handover: T\n\nNote: call back"),
    ],
)
def test_compose_note_bodies(
    title: str, text: str | None, structured: dict[str, Any], opp: str | None, expected_body: str
) -> None:
    composed = compose_note(title, text, structured, opportunity_crm_id=opp)
    assert composed.body == expected_body
    parsed = parse_handover(composed.body)
    assert parsed.is_handover, "the body passes the note mappings' handover record filter"
    assert composed.columns == parsed.columns(), "the columns a pull would store"


def test_compose_note_keeps_structured_columns_round_trip() -> None:
    structured = {
        "sold": {"plan": "Enterprise", "seats": 250, "currency": "EUR", "arr": 120000},
        "contacts": [{"role": "primary", "name": "Ada Lovelace", "email": "ada@acme.test"}],
        "goals": ["go live by March"],
        "success_criteria": ["80% weekly active"],
        "special_terms": "none",
        "risks": ["no admin"],
        "fit": "stretch",
        "timeline": "Kickoff in January",
    }
    composed = compose_note("Acme", "notes", structured)
    columns = composed.columns
    assert columns["sold"]["seats"] == 250
    assert columns["sold"]["arr"] == 120000
    assert columns["contacts"][0]["email"] == "ada@acme.test"
    assert columns["goals"] == ["go live by March"]
    assert columns["fit"] == "stretch"
    assert columns["timeline"] == "Kickoff in January"
    assert composed.body.endswith("\n\nnotes")


@pytest.mark.parametrize(
    ("crm", "row", "fields", "links"),
    [
        ("salesforce", {"sf_parent_id": "001A"}, {"ParentId": "001A"}, []),
        ("salesforce", {"sf_parent_id": None}, {}, []),
        ("hubspot", {"created_at": T0, "hs_company_id": None}, {"hs_timestamp": T0_MS}, []),
        (
            "hubspot",
            {"created_at": T0, "hs_company_id": "11", "hs_deal_id": None},
            {"hs_timestamp": "2026-12-01T10:00:00.500Z"},
            [("companies", "11", 190)],
        ),
        (
            "hubspot",
            {"created_at": T0.replace(tzinfo=None), "hs_company_id": "11", "hs_deal_id": "22"},
            {"hs_timestamp": "2026-12-01T10:00:00.500Z"},
            [("companies", "11", 190), ("deals", "22", 214)],
        ),
    ],
)
def test_create_extras(
    crm: str, row: dict[str, Any], fields: dict[str, Any], links: list[tuple[str, str, int]]
) -> None:
    assert create_extras(crm, row) == (fields, links)


def test_pending_mark_round_trip_and_first_mark_kept() -> None:
    assert pending_since(None) is None
    assert pending_since({"title": T0.isoformat()}) is None
    assert pending_since({PENDING_KEY: "garbage"}) is None
    stamps = with_pending({"title": "x"}, T0)
    assert pending_since(stamps) == T0
    assert with_pending(stamps, T0 + timedelta(hours=1))[PENDING_KEY] == stamps[PENDING_KEY]
    assert without_pending(stamps) == {"title": "x"}
    assert pending_since({PENDING_KEY: "2026-12-01T10:00:00"}) == T0.replace(microsecond=0)


def test_lookup_since_is_the_oldest_mark_less_the_margin_in_whole_seconds() -> None:
    assert lookup_since([]) is None
    since = lookup_since([T0 + timedelta(minutes=1), T0])
    assert since == (T0 - LOOKUP_MARGIN).replace(microsecond=0)


def pending(key: int, parent: str = "001A", title: str = "T", body: str = "B") -> PendingNote:
    return PendingNote(key, parent, title, body, T0)


def found(
    crm_id: str, parent: str = "001A", title: str = "T", body: str = "B", at: datetime = T0
) -> CrmNote:
    return CrmNote(crm_id, parent, title, body, at)


@pytest.mark.parametrize(
    ("rows", "notes", "taken", "expected"),
    [
        ([pending(1)], [], (), {}),
        ([pending(1)], [found("002X")], (), {1: "002X"}),
        # line ends and surrounding blanks do not matter, the text does
        ([pending(1, body="a\nb")], [found("002X", body="a\r\nb\n")], (), {1: "002X"}),
        ([pending(1)], [found("002X", body="other")], (), {}),
        ([pending(1)], [found("002X", title="other")], (), {}),
        ([pending(1)], [found("002X", parent="001B")], (), {}),
        # created before the mark (less the clock margin): another note
        ([pending(1)], [found("002X", at=T0 - LOOKUP_MARGIN - timedelta(seconds=1))], (), {}),
        ([pending(1)], [found("002X", at=T0 - timedelta(seconds=3))], (), {1: "002X"}),
        # a note another row holds is not taken again
        ([pending(1)], [found("002X")], ("002X",), {}),
        # two identical pending rows, two notes: one each, oldest to oldest
        (
            [pending(2), pending(1)],
            [found("002Y", at=T0 + timedelta(seconds=2)), found("002X", at=T0 + timedelta(1))],
            (),
            {1: "002Y", 2: "002X"},
        ),
        # two identical pending rows, one note: the second is still to create
        ([pending(1), pending(2)], [found("002X")], (), {1: "002X"}),
    ],
)
def test_match_pending(
    rows: list[PendingNote],
    notes: list[CrmNote],
    taken: tuple[str, ...],
    expected: dict[int, str],
) -> None:
    assert match_pending(rows, notes, taken) == expected
