"""SOQL building: tz-aware UTC literals, no microseconds, ordering, keyset predicate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.crm.salesforce import soql

T = datetime(2024, 3, 2, 8, 15, 30, 123456, tzinfo=UTC)


def test_changes_query_orders_by_stamp_then_id_and_adds_required_fields() -> None:
    q = soql.changes_query("Account", ["Name", "Id"], T)
    assert q == (
        "SELECT Id, SystemModstamp, IsDeleted, Name FROM Account "
        "WHERE SystemModstamp >= 2024-03-02T08:15:30+00:00 ORDER BY SystemModstamp, Id"
    )


def test_datetime_converted_to_utc_without_microseconds() -> None:
    cet = timezone(timedelta(hours=1))
    q = soql.changes_query("Account", [], datetime(2024, 3, 2, 9, 15, 30, 999, tzinfo=cet))
    assert "SystemModstamp >= 2024-03-02T08:15:30+00:00" in q


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        soql.changes_query("Account", [], datetime(2024, 1, 1))


def test_keyset_predicate() -> None:
    q = soql.changes_query("Account", [], None, after=(T, "001000000000001AAA"))
    assert (
        " WHERE (SystemModstamp > 2024-03-02T08:15:30+00:00 OR (SystemModstamp = "
        "2024-03-02T08:15:30+00:00 AND Id > '001000000000001AAA')) ORDER BY" in q
    )


def test_keyset_quotes_ids() -> None:
    q = soql.changes_query("Account", [], None, after=(T, "x' OR Name != '"))
    assert "Id > 'x\\' OR Name != \\''" in q


def test_unbounded_and_unordered() -> None:
    assert soql.changes_query("Note", ["Title"], None, order=False) == (
        "SELECT Id, SystemModstamp, IsDeleted, Title FROM Note"
    )


def test_count_query() -> None:
    assert soql.count_query("Opportunity", T) == (
        "SELECT COUNT() FROM Opportunity WHERE SystemModstamp >= 2024-03-02T08:15:30+00:00"
    )


def test_identifiers_checked() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        soql.changes_query("Account; DROP", [], None)
    assert "Account.Name" in soql.changes_query("Opportunity", ["Account.Name"], None)


@pytest.mark.parametrize(
    "text",
    ["2024-03-02T08:15:30.000+0000", "2024-03-02T08:15:30.000Z", "2024-03-02T09:15:30.000+0100"],
)
def test_parse_datetime(text: str) -> None:
    assert soql.parse_datetime(text) == datetime(2024, 3, 2, 8, 15, 30, tzinfo=UTC)
