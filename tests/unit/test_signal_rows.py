"""The signal row models (issue #18 item 1, docs/signals.md): each bad row is refused on its own,
naming its field; the natural key makes a resend of the same fact the same row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.domain.signal_rows import (
    KINDS,
    NATURAL_KEYS,
    ROW_MODELS,
    derived_external_id,
    validate_rows,
)

GOOD: dict[str, dict[str, Any]] = {
    "usage": {"observed_on": "2026-03-01", "active_users_30d": 12, "logins_30d": 90},
    "tickets": {"opened_at": "2026-03-01T10:00:00Z", "priority": "P1", "escalated": True},
    "nps": {"score": 4, "responded_on": "2026-03-01", "respondent_role": "Decision_Maker"},
    "surveys": {
        "kind": "csat",
        "score": "4.5",
        "scale_min": 1,
        "scale_max": 5,
        "responded_on": "2026-03-01",
    },
    "touchpoints": {"kind": "meeting", "occurred_at": "2026-03-01T10:00:00", "two_way": "true"},
    "invoices": {"amount": "1200.50", "currency": "eur", "due_on": "2026-03-01"},
    "success_criteria": {"text": "Reports in 2 weeks", "status": "met"},
}


def one(signal: str, /, **changes: Any) -> dict[str, Any]:
    row = {"account_id": 1, **GOOD[signal], **changes}
    return {k: v for k, v in row.items() if v is not None}


def test_every_kind_has_a_good_example_and_a_natural_key() -> None:
    assert set(GOOD) == set(KINDS) == set(ROW_MODELS) == set(NATURAL_KEYS)
    for kind in KINDS:
        good, errors = validate_rows(kind, [one(kind)])
        assert errors == [], kind
        assert [i for i, _ in good] == [0]


@pytest.mark.parametrize(
    ("kind", "changes", "field", "words"),
    [
        ("usage", {"active_users_30d": -1}, "active_users_30d", "greater than or equal"),
        ("usage", {"observed_on": "yesterday"}, "observed_on", "valid date"),
        (
            "usage",
            {"key_features_used_30d": 6, "key_features_defined": 5},
            "key_features_used_30d",
            "more than",
        ),
        ("usage", {"external_id": "x"}, "external_id", "Extra inputs"),
        ("tickets", {"priority": "P9"}, "priority", "'P1'"),
        ("tickets", {"closed_at": "2026-02-01T00:00:00Z"}, "closed_at", "before opened_at"),
        ("tickets", {"external_id": "nk:abc"}, "external_id", "crmsync's own"),
        ("nps", {"score": 11}, "score", "less than or equal to 10"),
        ("nps", {"contact_email": "not-an-email"}, "contact_email", "e-mail"),
        ("surveys", {"score": "6"}, "score", "outside the scale 1-5"),
        ("surveys", {"scale_max": 1}, "scale_max", "not above scale_min"),
        ("surveys", {"kind": "nps"}, "kind", "'csat' or 'ces'"),
        ("touchpoints", {"direction": "sideways"}, "direction", "'in' or 'out'"),
        ("invoices", {"currency": "EURO"}, "currency", "pattern"),
        ("invoices", {"amount": "-1"}, "amount", "greater than or equal"),
        ("success_criteria", {"status": "done"}, "status", "'met'"),
        ("success_criteria", {"text": ""}, "text", "at least 1"),
    ],
)
def test_a_bad_row_names_its_field(
    kind: str, changes: dict[str, Any], field: str, words: str
) -> None:
    rows = [one(kind), one(kind, **changes), one(kind)]
    good, errors = validate_rows(kind, rows)
    assert [i for i, _ in good] == [0, 2]
    assert {e.index for e in errors} == {1}
    assert errors[0].field == field
    assert words in errors[0].message
    assert errors[0].as_dict()["loc"] == ["body", "rows", 1, field]


@pytest.mark.parametrize(
    ("refs", "field", "words"),
    [
        ({}, "account_id", "exactly one of account_id, sf_id, hs_id, domain"),
        ({"account_id": 1, "domain": "acme.com"}, "domain", "gives account_id, domain"),
        ({"sf_id": "001short"}, "sf_id", "pattern"),
        ({"hs_id": "abc"}, "hs_id", "pattern"),
        ({"domain": "no domain"}, "domain", "not a domain"),
    ],
)
def test_the_account_is_named_exactly_once(refs: dict[str, Any], field: str, words: str) -> None:
    row = {**GOOD["usage"], **refs}
    good, errors = validate_rows("usage", [row])
    assert good == []
    assert errors[0].field == field
    assert words in errors[0].message


def test_each_way_of_naming_an_account_and_domains_are_normalised() -> None:
    rows = [
        {**GOOD["usage"], "account_id": 7},
        {**GOOD["usage"], "sf_id": "001000000000001AAA"},
        {**GOOD["usage"], "hs_id": "4242"},
        {**GOOD["usage"], "domain": "https://www.Acme-Corp.com/about"},
    ]
    good, errors = validate_rows("usage", rows)
    assert errors == []
    assert [r.account_ref() for _, r in good] == [
        ("account_id", 7),
        ("sf_id", "001000000000001AAA"),
        ("hs_id", "4242"),
        ("domain", "acme-corp.com"),
    ]


def test_values_are_normalised() -> None:
    ((_, ticket),) = validate_rows(
        "tickets", [one("tickets", opened_at="2026-03-01T12:00:00+02:00")]
    )[0]
    assert ticket.columns()["opened_at"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    ((_, touch),) = validate_rows("touchpoints", [one("touchpoints")])[0]
    assert touch.columns()["occurred_at"].tzinfo is UTC  # naive is UTC
    assert touch.columns()["two_way"] is True
    ((_, invoice),) = validate_rows("invoices", [one("invoices")])[0]
    assert invoice.columns()["currency"] == "EUR"
    ((_, nps),) = validate_rows("nps", [one("nps")])[0]
    assert nps.columns()["respondent_role"] == "decision_maker"


def key(signal: str, /, account_id: int = 1, **changes: Any) -> str:
    ((_, row),) = validate_rows(signal, [one(signal, **changes)])[0]
    return derived_external_id(row, account_id)


@pytest.mark.parametrize(
    ("kind", "same", "different"),
    [
        # a ticket is the same ticket when it closes or escalates; another opening is another
        (
            "tickets",
            {"closed_at": "2026-03-02T00:00:00Z", "escalated": False},
            {"opened_at": "2026-03-01T10:00:01Z"},
        ),
        # an identified answer: one per respondent and day, a corrected score replaces it
        ("nps", {"score": 9, "contact_email": "a@x.com"}, {"contact_email": "b@x.com"}),
        ("touchpoints", {"two_way": False}, {"occurred_at": "2026-03-01T11:00:00"}),
        # an invoice is paid later: same row
        ("invoices", {"paid_on": "2026-03-05"}, {"amount": "99"}),
        (
            "success_criteria",
            {"status": "not_met", "text": "  reports IN 2 weeks "},
            {"text": "Other"},
        ),
        ("surveys", {"topic": None}, {"kind": "ces", "scale_max": 7}),
    ],
)
def test_the_natural_key(kind: str, same: dict[str, Any], different: dict[str, Any]) -> None:
    base_changes: dict[str, Any] = {"contact_email": "a@x.com"} if kind == "nps" else {}
    base = key(kind, **base_changes)
    assert base.startswith("nk:")
    assert len(base) <= 64
    assert key(kind, **{**base_changes, **same}) == base
    assert key(kind, **{**base_changes, **different}) != base
    assert key(kind, account_id=2, **base_changes) != base  # another account, another row


def test_anonymous_answers_differ_by_score() -> None:
    assert key("nps", score=4) == key("nps", score=4)
    assert key("nps", score=4) != key("nps", score=5)
