"""No echoes: a value crmsync writes and reads back hashes equal to what it wrote (ADR 0006).

The push stores ``field_hash`` of the CS value it wrote; the next pull hashes the value it reads
back (``map_record`` of the CRM's answer). They must be equal for every converter and both CRMs,
whatever form the CRM gives the value back in: HubSpot strings for everything, Salesforce REST
JSON numbers (decoded as ``Decimal``, as the client does) or Bulk CSV strings, dates and
datetimes in the CRMs' own spellings, text with trailing zeros or blanks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.types import CrmName
from app.mappers.convert import CS_STAGES
from app.mappers.defaults import default_mappings
from app.mappers.handover import parse_handover, render_handover
from app.mappers.ledger import field_hash, outbound_value, value_hash
from app.mappers.record import map_record, map_to_crm
from app.mappers.spec import Direction, FieldMapping, ObjectMapping

CRMS: tuple[CrmName, ...] = ("salesforce", "hubspot")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STAMP = {"salesforce": "2026-11-01T12:00:00.000+0000", "hubspot": "2026-11-01T12:00:00.000Z"}


def two_way(crm: CrmName, crm_object: str, fm: FieldMapping) -> ObjectMapping:
    """``crm_object``'s default mapping reduced to ``fm``, synced both ways."""
    mapping = default_mappings(crm).object(crm_object)
    return replace(mapping, fields=(replace(fm, direction=Direction.BOTH),), parents=())


def sf_rest(value: Any) -> Any:
    """A Salesforce REST answer: JSON, numbers decoded as Decimal (app.crm.salesforce.client)."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def sf_bulk(value: Any) -> Any:
    """A Salesforce Bulk 2.0 CSV cell: text, null as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hubspot(value: Any) -> Any:
    """HubSpot returns every property as a string ("" when cleared)."""
    return "" if value is None else str(value)


ECHOES: dict[CrmName, tuple[Callable[[Any], Any], ...]] = {
    "salesforce": (sf_rest, sf_bulk),
    "hubspot": (hubspot,),
}


def written_and_read_back(
    crm: CrmName, crm_object: str, fm: FieldMapping, cs_value: Any
) -> list[tuple[str, str]]:
    """(hash of what was written, hash of what each echo reads back)."""
    mapping = two_way(crm, crm_object, fm)
    row = {fm.column: cs_value}
    wire = map_to_crm(mapping, row)
    written = field_hash(mapping.fields[0], outbound_value(mapping.fields[0], row, crm), crm)
    pairs = []
    for echo in ECHOES[crm]:
        record = {
            mapping.id_field: "001000000000001AAA" if crm == "salesforce" else "101",
            mapping.modified_field: STAMP[crm],
            **{k: echo(v) for k, v in wire.items()},
        }
        read = map_record(mapping, record).values[fm.column]
        pairs.append((written, field_hash(mapping.fields[0], read, crm)))
    return pairs


money = st.decimals(
    min_value=Decimal("-99999999999999.99"),
    max_value=Decimal("99999999999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(value=money, crm=st.sampled_from(CRMS))
def test_decimals_read_back_hash_equal(value: Decimal, crm: CrmName) -> None:
    obj = "Account" if crm == "salesforce" else "companies"
    fm = FieldMapping("ARR__c" if crm == "salesforce" else "arr", "arr", "decimal")
    for written, read in written_and_read_back(crm, obj, fm, value):
        assert written == read


@pytest.mark.parametrize("crm", CRMS)
@pytest.mark.parametrize(
    "value", [Decimal("120000.00"), Decimal("0.10"), Decimal("1E+2"), Decimal("-0.00"), 1.5, 7]
)
def test_trailing_zeros_and_number_types_read_back_hash_equal(crm: CrmName, value: Any) -> None:
    obj = "Account" if crm == "salesforce" else "companies"
    fm = FieldMapping("ARR__c" if crm == "salesforce" else "arr", "arr", "decimal")
    for written, read in written_and_read_back(crm, obj, fm, value):
        assert written == read
        assert written == value_hash(Decimal(str(value)))


@settings(max_examples=60, deadline=None)
@given(value=st.integers(min_value=-(2**31) + 1, max_value=2**31 - 1), crm=st.sampled_from(CRMS))
def test_integers_read_back_hash_equal(value: int, crm: CrmName) -> None:
    obj = "Account" if crm == "salesforce" else "companies"
    fm = FieldMapping("Seats", "licensed_seats", "integer")
    for written, read in written_and_read_back(crm, obj, fm, value):
        assert written == read == value_hash(value)


@settings(max_examples=40, deadline=None)
@given(value=st.booleans() | st.none(), crm=st.sampled_from(CRMS))
def test_booleans_read_back_hash_equal(value: bool | None, crm: CrmName) -> None:
    obj = "Account" if crm == "salesforce" else "companies"
    fm = FieldMapping("Strategic", "strategic_account", "boolean")
    for written, read in written_and_read_back(crm, obj, fm, value):
        # A cleared boolean reads back as the NOT NULL column's default (False).
        assert written == read or (value is None and read == value_hash(False))


@settings(max_examples=60, deadline=None)
@given(value=st.dates(min_value=date(1900, 1, 1)), crm=st.sampled_from(CRMS))
def test_dates_read_back_hash_equal(value: date, crm: CrmName) -> None:
    obj = "Account" if crm == "salesforce" else "companies"
    fm = FieldMapping("Renewal", "renewal_on", "date")
    for written, read in written_and_read_back(crm, obj, fm, value):
        assert written == read == value_hash(value)
    # HubSpot may answer a date property as midnight UTC, in epoch milliseconds or ISO.
    midnight = datetime.combine(value, time(), tzinfo=UTC)
    for answer in (str((midnight - EPOCH) // timedelta(milliseconds=1)), midnight.isoformat()):
        mapping = two_way("hubspot", "companies", fm)
        record = {"id": "1", "hs_lastmodifieddate": STAMP["hubspot"], "Renewal": answer}
        assert value_hash(map_record(mapping, record).values["renewal_on"]) == value_hash(value)


@settings(max_examples=60, deadline=None)
@given(
    value=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2999, 1, 1), timezones=st.just(UTC)
    ),
    crm=st.sampled_from(CRMS),
)
def test_datetimes_read_back_hash_equal(value: datetime, crm: CrmName) -> None:
    """Written with milliseconds, read back in the CRM's spelling (Salesforce ``+0000``)."""
    obj = "Account" if crm == "salesforce" else "companies"
    fm = FieldMapping("Checked_At", "contract_start_on", "datetime")
    mapping = two_way(crm, obj, fm)
    wire = map_to_crm(mapping, {"contract_start_on": value})["Checked_At"]
    spellings = [wire]
    if crm == "salesforce":
        spellings.append(wire.replace("Z", "+0000"))
    else:
        spellings.append(str((value - EPOCH) // timedelta(milliseconds=1)))
    written = field_hash(mapping.fields[0], value, crm)
    for answer in spellings:
        record = {
            mapping.id_field: "001000000000001AAA" if crm == "salesforce" else "101",
            mapping.modified_field: STAMP[crm],
            "Checked_At": answer,
        }
        read = map_record(mapping, record).values["contract_start_on"]
        assert field_hash(mapping.fields[0], read, crm) == written
    # Both CRMs keep milliseconds: the hash itself ignores what they drop.
    assert value_hash(value) == value_hash(
        value.replace(microsecond=value.microsecond // 1000 * 1000)
    )


@settings(max_examples=80, deadline=None)
@given(value=texts, crm=st.sampled_from(CRMS))
def test_strings_read_back_hash_equal(value: str, crm: CrmName) -> None:
    """Blanks around a CS value are stripped on the way back: the hash of what is written
    already is the stripped value's, so the echo matches."""
    obj = "Account" if crm == "salesforce" else "companies"
    fm = FieldMapping("Plan", "plan", "string")
    for written, read in written_and_read_back(crm, obj, fm, value):
        assert written == read


@settings(max_examples=60, deadline=None)
@given(value=texts, crm=st.sampled_from(CRMS))
def test_text_reads_back_hash_equal(value: str, crm: CrmName) -> None:
    obj = "Note" if crm == "salesforce" else "notes"
    fm = FieldMapping("Body", "body", "text")
    for written, read in written_and_read_back(crm, obj, fm, value + "0.500  "):
        assert written == read


@pytest.mark.parametrize("crm", CRMS)
def test_a_text_cut_by_the_crm_limit_hashes_as_cut(crm: CrmName) -> None:
    obj = "Note" if crm == "salesforce" else "notes"
    for written, read in written_and_read_back(
        crm, obj, FieldMapping("Body", "body", "text"), "x" * 70_000
    ):
        assert written == read


@pytest.mark.parametrize("crm", CRMS)
@pytest.mark.parametrize(
    ("convert", "column", "value"),
    [
        ("sf_stage", "stage", "closed_won"),
        ("hs_stage", "stage", "negotiation"),
        ("opportunity_type", "type", "new_business"),
        ("opportunity_type", "type", "custom_kind"),
        ("currency", "currency", "EUR"),
        ("email", "preassigned_csm_email", "ada@acme.test"),
    ],
)
def test_vocabularies_read_back_hash_equal(
    crm: CrmName, convert: str, column: str, value: str
) -> None:
    obj = "Opportunity" if crm == "salesforce" else "deals"
    for written, read in written_and_read_back(crm, obj, FieldMapping("F", column, convert), value):
        assert written == read


@pytest.mark.parametrize("stage", CS_STAGES)
def test_every_stage_reads_back(stage: str) -> None:
    for crm, convert in (("salesforce", "sf_stage"), ("hubspot", "hs_stage")):
        obj = "Opportunity" if crm == "salesforce" else "deals"
        for written, read in written_and_read_back(
            crm, obj, FieldMapping("F", "stage", convert), stage
        ):
            assert written == read == value_hash(stage)


@pytest.mark.parametrize("crm", CRMS)
def test_a_domain_reads_back_hash_equal(crm: CrmName) -> None:
    obj = "Account" if crm == "salesforce" else "companies"
    for value in ("acme.test", "WWW.Acme.test"):
        for written, read in written_and_read_back(
            crm, obj, FieldMapping("W", "domain", "domain"), value
        ):
            assert written == read == value_hash("acme.test")


handover_rows = st.fixed_dictionaries(
    {
        "title": st.sampled_from(["Acme", "Globex renewal"]),
        "goals": st.lists(st.sampled_from(["Go live", "SSO", "Cut churn 5%"]), max_size=3),
        "fit": st.sampled_from([None, "good", "stretch", "bad"]),
        "risks": st.lists(st.sampled_from(["Budget", "Champion leaving"]), max_size=2),
        "timeline": st.sampled_from([None, "Kick-off in May"]),
        "sold": st.sampled_from([{}, {"plan": "Enterprise", "seats": 250}]),
        "contacts": st.sampled_from(
            [[], [{"role": "primary", "name": "Ada Lovelace", "email": "ada@acme.test"}]]
        ),
    }
)


@settings(max_examples=40, deadline=None)
@given(row=handover_rows, crm=st.sampled_from(CRMS))
def test_the_handover_body_composite_reads_back_hash_equal(
    row: dict[str, Any], crm: CrmName
) -> None:
    """A note whose columns were edited on the CS side is pushed as a rendered body; the pull
    reads that body and its parse: the body hashes as written, and the columns come back."""
    mapping = default_mappings(crm).for_table("handover_notes")
    fm = next(f for f in mapping.fields if f.column == "body")
    cs_row = {**row, "body": "Handover: old text"}
    wire = map_to_crm(mapping, cs_row, only={fm.crm_field})
    written = field_hash(fm, outbound_value(fm, cs_row, crm), crm)
    record = {
        mapping.id_field: "002000000000001AAA" if crm == "salesforce" else "101",
        mapping.modified_field: STAMP[crm],
        fm.crm_field: wire[fm.crm_field],
    }
    read = map_record(mapping, record).values
    assert field_hash(fm, read["body"], crm) == written
    # the pulled row is consistent: its composite is the body as the CRM holds it
    assert field_hash(fm, outbound_value(fm, read, crm), crm) == written
    expected = parse_handover(render_handover(row)).columns()
    assert {c: read[c] for c in expected} == expected
