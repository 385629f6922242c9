"""Bad CRM values: checked against the CS column's type and range in the mapping, stored empty
(or cut, or as a placeholder) with a field issue, never keeping the record out (issue #14).

The limits come from the column types (``NUMERIC_SIZES``, ``INTEGER_BITS``, ``STRING_LENGTHS``,
checked against app.db.models in test_mappers_columns.py); the cases sit on both sides of them.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from app.mappers.columns import value_bounds
from app.mappers.defaults import hubspot_mappings, salesforce_mappings
from app.mappers.errors import MappingError
from app.mappers.record import map_record
from app.mappers.spec import FieldMapping

SF = salesforce_mappings()
HS = hubspot_mappings()
SF_ACCOUNT = SF.object("Account")
SF_OPPORTUNITY = SF.object("Opportunity")
HS_COMPANY = HS.object("companies")
HS_DEAL = HS.object("deals")

INT_MAX = 2**31 - 1


def _inside(table: str, column: str, value: Any) -> bool:
    bounds = value_bounds(table, column)
    assert bounds is not None
    low, high = bounds
    return bool(low < value < high)


@pytest.mark.parametrize(
    ("table", "column", "value", "fits"),
    [
        # Integer: 32-bit two's complement
        ("accounts", "licensed_seats", INT_MAX, True),
        ("accounts", "licensed_seats", INT_MAX + 1, False),
        ("accounts", "licensed_seats", -(2**31), True),
        ("accounts", "licensed_seats", -(2**31) - 1, False),
        ("accounts", "licensed_seats", 3_000_000_000, False),
        ("opportunities", "contract_term_months", 0, True),
        # Numeric(18, 2): |v| rounded to 2 decimals must stay below 10^16
        ("opportunities", "amount", Decimal("9999999999999999.99"), True),
        ("opportunities", "amount", Decimal("9999999999999999.994"), True),
        ("opportunities", "amount", Decimal("9999999999999999.995"), False),
        ("opportunities", "amount", Decimal("1E+16"), False),
        ("opportunities", "amount", Decimal("1E+17"), False),
        ("opportunities", "amount", Decimal("-9999999999999999.99"), True),
        ("opportunities", "amount", Decimal("-1E+16"), False),
        ("accounts", "arr", Decimal("0.001"), True),
        ("accounts", "arr", 10**16, False),
    ],
)
def test_value_bounds_follow_the_column_type(
    table: str, column: str, value: Any, fits: bool
) -> None:
    assert _inside(table, column, value) is fits


@pytest.mark.parametrize(("table", "column"), [("accounts", "name"), ("accounts", "flags")])
def test_non_numeric_columns_have_no_bounds(table: str, column: str) -> None:
    assert value_bounds(table, column) is None


# (mapping, wire, column, stored value, CRM field of the issue, issue category, "stored" text)
CASES: list[tuple[Any, dict[str, Any], str, Any, str, str, str]] = [
    (HS_DEAL, {"amount": "1e17"}, "amount", None, "amount", "invalid_field", "empty"),
    (
        SF_OPPORTUNITY,
        {"Amount": Decimal("1E+16")},
        "amount",
        None,
        "Amount",
        "invalid_field",
        "empty",
    ),
    (
        SF_ACCOUNT,
        {"Licensed_Seats__c": 3e9},
        "licensed_seats",
        None,
        "Licensed_Seats__c",
        "invalid_field",
        "empty",
    ),
    (
        SF_ACCOUNT,
        {"Licensed_Seats__c": "3000000000"},
        "licensed_seats",
        None,
        "Licensed_Seats__c",
        "invalid_field",
        "empty",
    ),
    (
        SF_ACCOUNT,
        {"Licensed_Seats__c": 2.7},
        "licensed_seats",
        None,
        "Licensed_Seats__c",
        "invalid_field",
        "empty",
    ),
    (SF_ACCOUNT, {"ARR__c": "lots"}, "arr", None, "ARR__c", "invalid_field", "empty"),
    (SF_ACCOUNT, {"Website": "not a website"}, "domain", None, "Website", "invalid_field", "empty"),
    (
        SF_ACCOUNT,
        {"Contract_End__c": "31.12.2025"},
        "contract_end_on",
        None,
        "Contract_End__c",
        "invalid_field",
        "empty",
    ),
    (
        SF_ACCOUNT,
        {"Strategic_Account__c": "maybe"},
        "strategic_account",
        False,
        "Strategic_Account__c",
        "invalid_field",
        "the default False",
    ),
    # a formatted value too long for its column is not cut (a cut domain is a wrong domain)
    (
        SF_ACCOUNT,
        {"Website": "https://" + "a" * 260 + ".test"},
        "domain",
        None,
        "Website",
        "invalid_field",
        "empty",
    ),
    # free text too long for its column is cut, ending in an ellipsis
    (
        SF_ACCOUNT,
        {"Name": "x" * 300},
        "name",
        "x" * 254 + "\u2026",
        "Name",
        "invalid_field",
        "cut to 255 characters",
    ),
    (
        SF_ACCOUNT,
        {"Industry": "y" * 129},
        "industry",
        "y" * 127 + "\u2026",
        "Industry",
        "invalid_field",
        "cut to 128 characters",
    ),
    # a NOT NULL column left empty: a placeholder, the domain when the record has one
    (
        HS_COMPANY,
        {"name": None},
        "name",
        "(no name) 42",
        "name",
        "missing_field",
        "the placeholder '(no name) 42'",
    ),
    (
        HS_COMPANY,
        {"name": "  ", "domain": "https://www.acme.test/"},
        "name",
        "acme.test",
        "name",
        "missing_field",
        "the placeholder 'acme.test'",
    ),
    (
        SF_OPPORTUNITY,
        {"Name": ""},
        "name",
        "(no name) 42",
        "Name",
        "missing_field",
        "the placeholder '(no name) 42'",
    ),
]


@pytest.mark.parametrize(
    ("mapping", "wire", "column", "stored", "field", "category", "how"),
    CASES,
    ids=[f"{c[0].crm_object}-{c[4]}-{i}" for i, c in enumerate(CASES)],
)
def test_a_bad_value_is_stored_empty_with_a_field_issue(
    mapping: Any,
    wire: dict[str, Any],
    column: str,
    stored: Any,
    field: str,
    category: str,
    how: str,
) -> None:
    mapped = map_record(mapping, {mapping.id_field: "42", **wire})
    assert mapped.crm_id == "42"
    assert mapped.values[column] == stored
    assert [(i.field, i.column, i.category, i.stored) for i in mapped.issues] == [
        (field, column, category, how)
    ]
    issue = mapped.issues[0]
    assert issue.value == wire[field]  # the raw value, as received
    assert field in issue.message
    assert how in issue.message
    assert issue.attrs()["value"] == wire[field]


def test_the_other_fields_of_the_record_are_kept() -> None:
    wire = {
        "Id": "001A",
        "Name": "Acme",
        "Website": "not a website",
        "Licensed_Seats__c": 2.7,
        "ARR__c": Decimal("1E+17"),
        "Industry": "Retail",
    }
    mapped = map_record(SF_ACCOUNT, wire)
    assert mapped.values["name"] == "Acme"
    assert mapped.values["industry"] == "Retail"
    assert {i.field for i in mapped.issues} == {"Website", "Licensed_Seats__c", "ARR__c"}


@pytest.mark.parametrize(
    "wire",
    [
        {"Licensed_Seats__c": INT_MAX, "ARR__c": Decimal("9999999999999999.99")},
        {"Name": "x" * 255, "Industry": "y" * 128},
        {"Licensed_Seats__c": None, "ARR__c": "", "Website": None},
    ],
)
def test_values_that_fit_have_no_issue(wire: dict[str, Any]) -> None:
    assert map_record(SF_ACCOUNT, {"Id": "001A", **wire}).issues == ()


def test_a_text_converter_cuts_without_an_issue() -> None:
    as_text = replace(SF_ACCOUNT, fields=(FieldMapping("Industry", "industry", "text"),))
    mapped = map_record(as_text, {"Id": "001A", "Industry": "y" * 200})
    assert mapped.values["industry"] == "y" * 127 + "\u2026"
    assert mapped.issues == ()


@pytest.mark.parametrize(
    "value", [None, "", "lots", "3000000000", "2.7"], ids=["null", "blank", "nan", "big", "frac"]
)
def test_a_required_field_keeps_the_record_out(value: Any) -> None:
    strict = replace(
        SF_ACCOUNT,
        fields=(
            FieldMapping("Name", "name"),
            FieldMapping("Licensed_Seats__c", "licensed_seats", "integer", required=True),
        ),
    )
    with pytest.raises(MappingError) as caught:
        map_record(strict, {"Id": "001A", "Name": "Acme", "Licensed_Seats__c": value})
    assert caught.value.field == "Licensed_Seats__c"
    assert caught.value.column == "licensed_seats"


def test_a_bad_parent_reference_drops_only_the_link() -> None:
    bad = [{"id": {"nested": 1}}]
    mapped = map_record(HS_DEAL, {"id": "7", "dealname": "D", "associations.companies": bad})
    assert mapped.values["name"] == "D"
    assert mapped.values["hs_company_id"] is None
    assert mapped.parent_refs == {}
    assert [(i.field, i.column) for i in mapped.issues] == [
        ("associations.companies", "hs_company_id")
    ]
