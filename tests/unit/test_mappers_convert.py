"""Every converter, both directions, table-driven (app/mappers/convert.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.mappers.convert import (
    CONVERTERS,
    ELLIPSIS,
    WriteContext,
    format_datetime,
    get_converter,
    truncate,
)
from app.mappers.errors import ConversionError

SF = WriteContext("salesforce")
HS = WriteContext("hubspot")
DT = datetime(2021, 11, 6, 17, 38, 40, tzinfo=UTC)


def to_cs(name: str, value: Any) -> Any:
    fn = get_converter(name).to_cs
    assert fn is not None
    return fn(value)


def to_crm(name: str, value: Any, ctx: WriteContext) -> Any:
    fn = get_converter(name).to_crm
    assert fn is not None
    return fn(value, ctx)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        # empty string (Bulk CSV null) and None are None for every inbound converter
        *[
            (name, raw, None)
            for name in sorted(CONVERTERS)
            if CONVERTERS[name].to_cs and not name.startswith("handover_")
            for raw in (None, "", "  ")
        ],
        ("string", " Acme GmbH ", "Acme GmbH"),
        ("string", 123, "123"),
        ("string", True, "true"),
        ("text", "  keep\r\nas is ", "  keep\r\nas is "),
        ("decimal", "120000", Decimal("120000")),
        ("decimal", "120000.50", Decimal("120000.50")),
        ("decimal", 0.1, Decimal("0.1")),
        ("decimal", 125000, Decimal("125000")),
        ("decimal", "1.2E5", Decimal("1.2E5")),
        ("decimal", Decimal("3.14"), Decimal("3.14")),
        ("integer", "250", 250),
        ("integer", "250.0", 250),
        ("integer", 250.0, 250),
        ("integer", "2.5E2", 250),
        ("integer", 12, 12),
        ("boolean", True, True),
        ("boolean", False, False),
        ("boolean", "true", True),
        ("boolean", "FALSE", False),
        ("boolean", "1", True),
        ("boolean", "0", False),
        ("boolean", 1, True),
        ("boolean", "yes", True),
        ("date", "2025-01-31", date(2025, 1, 31)),
        ("date", "2024-03-02T23:30:00.000Z", date(2024, 3, 2)),
        ("date", "2024-03-02T23:30:00.000-0200", date(2024, 3, 3)),
        ("date", "1430438400000", date(2015, 5, 1)),
        ("date", date(2025, 1, 1), date(2025, 1, 1)),
        ("date", datetime(2025, 1, 1, 23, tzinfo=UTC), date(2025, 1, 1)),
        ("datetime", "2021-11-06T17:38:40.000+0000", DT),
        ("datetime", "2021-11-06T17:38:40.000Z", DT),
        ("datetime", "2021-11-06T19:38:40+02:00", DT),
        ("datetime", "1636220320000", DT),
        ("datetime", 1636220320000, DT),
        ("datetime", "2021-11-06T17:38:40", DT),
        ("datetime", DT, DT),
        # Surrounding blanks miss the fast paths and still parse on the full one.
        ("datetime", " 2021-11-06T17:38:40Z ", DT),
        ("datetime", "2021-11-06T17:38:40.000+0000 ", DT),
        ("date", " 2025-01-31 ", date(2025, 1, 31)),
        ("date", "2025-01-31 ", date(2025, 1, 31)),
        ("sf_stage", "Prospecting", "prospecting"),
        ("sf_stage", "Qualification", "qualification"),
        ("sf_stage", "Proposal/Price Quote", "proposal"),
        ("sf_stage", "Negotiation/Review", "negotiation"),
        ("sf_stage", "Closed Won", "closed_won"),
        ("sf_stage", "closed lost", "closed_lost"),
        ("sf_stage", "Id. Decision Makers", "id_decision_makers"),
        ("hs_stage", "appointmentscheduled", "prospecting"),
        ("hs_stage", "qualifiedtobuy", "qualification"),
        ("hs_stage", "presentationscheduled", "proposal"),
        ("hs_stage", "contractsent", "negotiation"),
        ("hs_stage", "closedwon", "closed_won"),
        ("hs_stage", "closedlost", "closed_lost"),
        ("hs_stage", "1234567", "1234567"),
        ("opportunity_type", "New Business", "new_business"),
        ("opportunity_type", "newbusiness", "new_business"),
        ("opportunity_type", "Renewal", "renewal"),
        ("opportunity_type", "renewal", "renewal"),
        ("opportunity_type", "Expansion", "expansion"),
        ("opportunity_type", "existingbusiness", "expansion"),
        ("opportunity_type", "Existing Customer - Upgrade", "expansion"),
        ("opportunity_type", "Partner Deal", "partner_deal"),
        ("first_id", ["512", "513"], "512"),
        ("first_id", [], None),
        ("first_id", [512], "512"),
        ("first_id", [{"id": "77"}], "77"),
        ("first_id", "512", "512"),
        ("domain", "https://www.Acme.test/about?x=1", "acme.test"),
        ("domain", "http://acme.test:8080", "acme.test"),
        ("domain", "www.acme.co.uk", "acme.co.uk"),
        ("domain", "acme.test", "acme.test"),
        ("domain", "shop.acme.test/", "shop.acme.test"),
        ("currency", "eur", "EUR"),
        ("email", " Ada@Acme.TEST ", "ada@acme.test"),
        ("string", "Acme\x00 Oy", "Acme Oy"),
        ("string", "\x00", None),
        ("text", "line 1\x00\nline 2", "line 1\nline 2"),
        ("text", "\x00 ", None),
    ],
)
def test_to_cs(name: str, raw: Any, expected: Any) -> None:
    assert to_cs(name, raw) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("string", {"a": 1}),
        ("decimal", "12k"),
        ("decimal", "NaN"),
        ("decimal", "Infinity"),
        ("decimal", Decimal("NaN")),
        ("decimal", Decimal("-Infinity")),
        ("decimal", True),
        ("decimal", [1]),
        ("integer", "250.5"),
        ("integer", "many"),
        ("boolean", "maybe"),
        ("boolean", 2),
        ("date", "31/01/2025"),
        ("date", "2025-02-30"),
        ("datetime", "yesterday"),
        ("datetime", 1.5),
        ("datetime", "99999999999999999999"),
        ("domain", "not a domain"),
        ("domain", "localhost"),
        ("currency", "EURO"),
        ("email", "ada at acme"),
    ],
)
def test_to_cs_rejects(name: str, raw: Any) -> None:
    with pytest.raises(ConversionError):
        to_cs(name, raw)


@pytest.mark.parametrize(
    ("name", "value", "salesforce", "hubspot"),
    [
        ("string", "Acme", "Acme", "Acme"),
        ("string", None, None, ""),
        ("text", "x" * 10, "x" * 10, "x" * 10),
        ("text:5", "abcdefgh", "abcd" + ELLIPSIS, "abcd" + ELLIPSIS),
        ("text:255", None, None, ""),
        ("decimal", Decimal("120000.00"), 120000, "120000"),
        ("decimal", Decimal("99.50"), 99.5, "99.5"),
        ("decimal", None, None, ""),
        ("integer", 72, 72, "72"),
        ("integer", None, None, ""),
        ("boolean", True, True, "true"),
        ("boolean", False, False, "false"),
        ("date", date(2025, 12, 31), "2025-12-31", "2025-12-31"),
        ("date", None, None, ""),
        ("datetime", DT, "2021-11-06T17:38:40.000Z", "2021-11-06T17:38:40.000Z"),
        ("sf_stage", "closed_won", "Closed Won", "Closed Won"),
        ("hs_stage", "closed_won", "closedwon", "closedwon"),
        ("hs_stage", "negotiation", "contractsent", "contractsent"),
        ("opportunity_type", "new_business", "New Business", "newbusiness"),
        ("opportunity_type", "expansion", "Expansion", "existingbusiness"),
        ("opportunity_type", "renewal", "Renewal", "renewal"),
        ("opportunity_type", "custom", "custom", "custom"),
        ("domain", "acme.test", "acme.test", "acme.test"),
        ("currency", "EUR", "EUR", "EUR"),
        ("email", "ada@acme.test", "ada@acme.test", "ada@acme.test"),
    ],
)
def test_to_crm(name: str, value: Any, salesforce: Any, hubspot: Any) -> None:
    assert to_crm(name, value, SF) == salesforce
    assert to_crm(name, value, HS) == hubspot


@pytest.mark.parametrize(
    ("renewal_on", "today", "salesforce", "hubspot"),
    [
        (date(2025, 3, 31), date(2025, 1, 1), 89, "89"),
        (date(2025, 1, 1), date(2025, 1, 1), 0, "0"),
        (date(2024, 12, 31), date(2025, 1, 1), -1, "-1"),
        (None, date(2025, 1, 1), None, ""),
    ],
)
def test_days_until(renewal_on: date | None, today: date, salesforce: Any, hubspot: Any) -> None:
    assert to_crm("days_until", renewal_on, WriteContext("salesforce", today)) == salesforce
    assert to_crm("days_until", renewal_on, WriteContext("hubspot", today)) == hubspot


def test_days_until_needs_today() -> None:
    with pytest.raises(ConversionError, match="today"):
        to_crm("days_until", date(2025, 1, 1), SF)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven char", 10, "eleven ch" + ELLIPSIS),
        ("ab", 1, "a"),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    assert truncate(text, limit) == expected
    assert len(truncate(text, limit)) <= limit


@pytest.mark.parametrize(
    ("spec", "error"),
    [("nope", KeyError), ("decimal:2", ValueError), ("text:0", ValueError), ("text:x", ValueError)],
)
def test_get_converter_rejects(spec: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        get_converter(spec)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DT, "2021-11-06T17:38:40.000Z"),
        (datetime(2024, 3, 2, 8, 15, 30, 123456, tzinfo=UTC), "2024-03-02T08:15:30.123Z"),
        (datetime(2024, 3, 2, 8, 15, 30), "2024-03-02T08:15:30.000Z"),
    ],
)
def test_format_datetime(value: datetime, expected: str) -> None:
    assert format_datetime(value) == expected


def test_handover_converters_read_the_body() -> None:
    body = "Opportunity: 006AAA\nGoals: a; b\nFit: Stretch, new market"
    assert to_cs("handover_opportunity_id", body) == "006AAA"
    assert to_cs("handover_goals", body) == ["a", "b"]
    assert to_cs("handover_fit", body) == "stretch"
    assert to_cs("handover_contacts", None) == []
