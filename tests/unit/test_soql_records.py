"""The by-id query of a retry: the required fields, ids quoted, bad ids told apart."""

from __future__ import annotations

import pytest

from app.crm.salesforce import soql


def test_records_query_selects_the_stream_fields_by_id() -> None:
    query = soql.records_query("Account", ["Name", "Website"], ["001A", "001B"])
    assert query == (
        "SELECT Id, SystemModstamp, IsDeleted, Name, Website FROM Account "
        "WHERE Id IN ('001A','001B')"
    )


def test_records_query_quotes_ids_and_needs_one() -> None:
    assert "'a\\'b'" in soql.records_query("Account", [], ["a'b"])
    with pytest.raises(ValueError, match="at least one id"):
        soql.records_query("Account", [], [])


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("001000000000001", True),
        ("001000000000001AAA", True),
        ("001", False),
        ("001000000000001AA", False),
        ("00100000000000'AA", False),
        ("00100000000000éAAA", False),
    ],
)
def test_is_record_id(value: str, ok: bool) -> None:
    assert soql.is_record_id(value) is ok
