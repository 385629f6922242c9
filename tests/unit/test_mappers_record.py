"""The default mapping sets against realistic wire records (app/mappers/record.py, defaults.py).

Salesforce records come as REST JSON (typed values) and as Bulk CSV (all strings, "" = null);
HubSpot records are flattened by the adapter: ``id``, ``archived``, string properties and
``associations.<type>`` id lists.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.mappers.defaults import default_mappings, hubspot_mappings, salesforce_mappings
from app.mappers.errors import MappingError
from app.mappers.handover import parse_handover
from app.mappers.record import map_record, map_to_crm
from app.mappers.spec import FieldMapping, validate_mapping_set

SF = salesforce_mappings()
HS = hubspot_mappings()
STAMP = datetime(2021, 11, 6, 17, 38, 40, tzinfo=UTC)
HS_STAMP = datetime(2024, 3, 2, 8, 15, 30, 123000, tzinfo=UTC)

SF_ACCOUNT_REST: dict[str, Any] = {
    "Id": "001000000000001AAA",
    "Name": "Acme GmbH",
    "Website": "https://www.acme.test/",
    "Industry": "Manufacturing",
    "OwnerId": "005000000000001AAA",
    "ARR__c": 120000.0,
    "Licensed_Seats__c": 250.0,
    "Plan__c": "Enterprise",
    "Strategic_Account__c": True,
    "Contract_Start__c": "2025-01-01",
    "Contract_End__c": "2025-12-31",
    "SystemModstamp": "2021-11-06T17:38:40.000+0000",
    "IsDeleted": False,
}
SF_ACCOUNT_BULK = {
    k: ("true" if v is True else "false" if v is False else str(v))
    for k, v in SF_ACCOUNT_REST.items()
}
SF_ACCOUNT_VALUES = {
    "name": "Acme GmbH",
    "domain": "acme.test",
    "industry": "Manufacturing",
    "sales_owner": "005000000000001AAA",
    "arr": Decimal("120000"),
    "licensed_seats": 250,
    "plan": "Enterprise",
    "strategic_account": True,
    "contract_start_on": date(2025, 1, 1),
    "contract_end_on": date(2025, 12, 31),
    "currency": "EUR",
}

SF_OPP_REST: dict[str, Any] = {
    "Id": "006000000000001AAA",
    "Name": "Acme - New Business",
    "AccountId": "001000000000001AAA",
    "StageName": "Closed Won",
    "Amount": 120000,
    "CloseDate": "2024-12-15",
    "IsClosed": True,
    "IsWon": True,
    "Type": "New Business",
    "OwnerId": "005000000000001AAA",
    "Term_Months__c": 12.0,
    "Preassigned_CSM__c": "Csm@Example.test",
    "SystemModstamp": "2021-11-06T17:38:40.000+0000",
    "IsDeleted": False,
}
SF_OPP_BULK = {
    k: ("true" if v is True else "false" if v is False else str(v)) for k, v in SF_OPP_REST.items()
} | {"Preassigned_CSM__c": ""}
SF_OPP_VALUES = {
    "name": "Acme - New Business",
    "sf_account_id": "001000000000001AAA",
    "stage": "closed_won",
    "amount": Decimal("120000"),
    "close_on": date(2024, 12, 15),
    "is_closed": True,
    "is_won": True,
    "type": "new_business",
    "sales_owner": "005000000000001AAA",
    "contract_term_months": 12,
    "preassigned_csm_email": "csm@example.test",
    "currency": "EUR",
}

HS_COMPANY: dict[str, Any] = {
    "id": "512",
    "archived": False,
    "name": "Acme GmbH",
    "domain": "acme.test",
    "industry": "MACHINERY",
    "hubspot_owner_id": "73",
    "arr": "120000",
    "licensed_seats": "250",
    "plan": "Enterprise",
    "strategic_account": "true",
    "contract_start_date": "2025-01-01",
    "contract_end_date": "",
    "hs_lastmodifieddate": "2024-03-02T08:15:30.123Z",
    "hs_object_id": "512",
    "crmsync_health_score": "80",
}
HS_DEAL: dict[str, Any] = {
    "id": "901",
    "archived": False,
    "dealname": "Acme - Expansion",
    "amount": "5000.50",
    "closedate": "2024-12-15T00:00:00.000Z",
    "dealstage": "closedwon",
    "dealtype": "existingbusiness",
    "hubspot_owner_id": "73",
    "hs_is_closed": "true",
    "hs_is_closed_won": "true",
    "contract_term_months": "24",
    "preassigned_csm_email": None,
    "hs_lastmodifieddate": "1709367330123",
    "associations.companies": ["512", "777"],
}


@pytest.mark.parametrize(
    ("crm", "obj", "wire", "crm_id", "modified_at", "values", "parents"),
    [
        (
            "salesforce",
            "Account",
            SF_ACCOUNT_REST,
            "001000000000001AAA",
            STAMP,
            SF_ACCOUNT_VALUES,
            {},
        ),
        (
            "salesforce",
            "Account",
            SF_ACCOUNT_BULK,
            "001000000000001AAA",
            STAMP,
            SF_ACCOUNT_VALUES,
            {},
        ),
        (
            "salesforce",
            "Opportunity",
            SF_OPP_REST,
            "006000000000001AAA",
            STAMP,
            SF_OPP_VALUES,
            {"account_id": "001000000000001AAA"},
        ),
        (
            "salesforce",
            "Opportunity",
            SF_OPP_BULK,
            "006000000000001AAA",
            STAMP,
            SF_OPP_VALUES | {"preassigned_csm_email": None},
            {"account_id": "001000000000001AAA"},
        ),
        (
            "hubspot",
            "companies",
            HS_COMPANY,
            "512",
            HS_STAMP,
            {
                "name": "Acme GmbH",
                "domain": "acme.test",
                "industry": "MACHINERY",
                "sales_owner": "73",
                "arr": Decimal("120000"),
                "licensed_seats": 250,
                "plan": "Enterprise",
                "strategic_account": True,
                "contract_start_on": date(2025, 1, 1),
                "contract_end_on": None,
                "currency": "EUR",
            },
            {},
        ),
        (
            "hubspot",
            "deals",
            HS_DEAL,
            "901",
            HS_STAMP,
            {
                "name": "Acme - Expansion",
                "hs_company_id": "512",
                "stage": "closed_won",
                "amount": Decimal("5000.50"),
                "close_on": date(2024, 12, 15),
                "is_closed": True,
                "is_won": True,
                "type": "expansion",
                "sales_owner": "73",
                "contract_term_months": 24,
                "preassigned_csm_email": None,
                "currency": "EUR",
            },
            {"account_id": "512"},
        ),
    ],
)
def test_default_mappings(
    crm: str,
    obj: str,
    wire: dict[str, Any],
    crm_id: str,
    modified_at: datetime,
    values: dict[str, Any],
    parents: dict[str, str],
) -> None:
    mapped = map_record(default_mappings(crm).object(obj), wire)
    assert mapped.crm_id == crm_id
    assert mapped.modified_at == modified_at
    assert mapped.deleted is False
    assert mapped.values == values
    assert mapped.parent_refs == parents


NOTE_BODY = "Handover: Acme\nOpportunity: 006000000000009AAA\nGoals: a; b\nFit: good"


@pytest.mark.parametrize(
    ("wire", "parents"),
    [
        (
            {"ParentId": "001000000000001AAA", "Body": NOTE_BODY},
            {"account_id": "001000000000001AAA", "opportunity_id": "006000000000009AAA"},
        ),
        (
            {"ParentId": "006000000000001AAA", "Body": NOTE_BODY},
            {"opportunity_id": "006000000000001AAA"},
        ),
        (
            {"ParentId": "001000000000001AAA", "Body": "just a note"},
            {"account_id": "001000000000001AAA"},
        ),
    ],
)
def test_salesforce_note(wire: dict[str, Any], parents: dict[str, str]) -> None:
    base = {
        "Id": "002000000000001AAA",
        "Title": "Handover",
        "OwnerId": "005X",
        "SystemModstamp": "2021-11-06T17:38:40.000+0000",
        "IsDeleted": "false",
    }
    mapped = map_record(SF.object("Note"), base | wire)
    assert mapped.parent_refs == parents
    assert mapped.values["sf_parent_id"] == wire["ParentId"]
    assert mapped.values["author"] == "005X"
    assert mapped.values["body"] == wire["Body"]


def test_hubspot_note_html_body_and_associations() -> None:
    body = "<p>Handover: Acme</p><p>Opportunity: 901</p><p>Goals: a; b</p><p>Fit: good</p>"
    wire = {
        "id": "3001",
        "archived": False,
        "hs_note_body": body,
        "hubspot_owner_id": "73",
        "hs_lastmodifieddate": "2024-03-02T08:15:30.123Z",
        "associations.companies": ["512"],
        "associations.deals": [],
    }
    mapped = map_record(HS.object("notes"), wire)
    assert mapped.values["goals"] == ["a", "b"]
    assert mapped.values["fit"] == "good"
    assert mapped.values["hs_company_id"] == "512"
    assert mapped.values["hs_deal_id"] is None
    assert mapped.values["contacts"] == []
    # no deal association: the Opportunity line links the deal
    assert mapped.parent_refs == {"account_id": "512", "opportunity_id": "901"}


@pytest.mark.parametrize(
    ("crm", "obj", "wire", "deleted"),
    [
        ("salesforce", "Account", {"Id": "001A", "IsDeleted": True}, True),
        ("salesforce", "Account", {"Id": "001A", "IsDeleted": "true"}, True),
        ("salesforce", "Account", {"Id": "001A", "IsDeleted": ""}, False),
        ("hubspot", "companies", {"id": "1", "archived": True}, True),
        ("hubspot", "companies", {"id": "1"}, False),
    ],
)
def test_deleted(crm: str, obj: str, wire: dict[str, Any], deleted: bool) -> None:
    assert map_record(default_mappings(crm).object(obj), wire).deleted is deleted


def test_absent_fields_are_left_out_present_nulls_clear() -> None:
    mapped = map_record(SF.object("Account"), {"Id": "001A", "Industry": None})
    assert mapped.values == {"industry": None, "currency": "EUR"}


def test_optional_currency_is_read_when_present() -> None:
    account = SF.object("Account")
    assert "CurrencyIsoCode" not in account.read_fields()
    assert "CurrencyIsoCode" in account.read_fields({"CurrencyIsoCode", "Name"})
    mapped = map_record(account, {"Id": "001A", "CurrencyIsoCode": "usd"})
    assert mapped.values["currency"] == "USD"
    assert map_record(salesforce_mappings("CHF").object("Account"), {"Id": "001A"}).values == {
        "currency": "CHF"
    }


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"Id": "001A", "SystemModstamp": "soon"}, "SystemModstamp"),
        ({"Id": "001A", "IsDeleted": "perhaps"}, "IsDeleted"),
        ({"Id": ""}, "Id"),
        ({"Name": "no id"}, "Id"),
        ({"Id": "001A" * 5}, "Id"),  # longer than sf_id's String(18)
    ],
)
def test_only_a_bad_id_or_stamp_raises_mapping_error(wire: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as caught:
        map_record(SF.object("Account"), wire)
    assert caught.value.field == field
    assert caught.value.column is None
    assert caught.value.category == "validation"
    assert caught.value.attrs()["field"] == field


def test_not_null_booleans_default_to_false() -> None:
    mapped = map_record(SF.object("Opportunity"), SF_OPP_BULK | {"IsClosed": "", "IsWon": ""})
    assert mapped.values["is_closed"] is False
    assert mapped.values["is_won"] is False


def test_text_is_cut_to_the_column() -> None:
    mapped = map_record(SF.object("Note"), {"Id": "002A", "Body": "x" * 100_000})
    assert len(mapped.values["body"]) == 100_000  # Text column: unbounded
    account = SF.object("Account")
    as_text = replace(account, fields=(FieldMapping("Industry", "industry", "text"),))
    mapped = map_record(as_text, {"Id": "001A", "Industry": "y" * 200})
    assert mapped.values["industry"] == "y" * 127 + "\u2026"  # String(128)


ACCOUNT_ROW: dict[str, Any] = {
    "name": "Acme GmbH",
    "health_score": 72,
    "health_band": "yellow",
    "health_trend": "down",
    "health_reasons": "usage down 30%; " * 30,
    "tier": "high",
    "renewal_on": date(2025, 3, 31),
    "renewal_risk": "medium",
}


@pytest.mark.parametrize(
    ("crm", "today", "expected"),
    [
        (
            "salesforce",
            date(2025, 1, 1),
            {
                "Health_Score__c": 72,
                "Health_Band__c": "yellow",
                "Health_Trend__c": "down",
                "Health_Reasons__c": ("usage down 30%; " * 30)[:254] + "\u2026",
                "Tier__c": "high",
                "Renewal_Date__c": "2025-03-31",
                "Days_To_Renewal__c": 89,
                "Renewal_Risk__c": "medium",
            },
        ),
        (
            "salesforce",
            None,
            {
                "Health_Score__c": 72,
                "Health_Band__c": "yellow",
                "Health_Trend__c": "down",
                "Health_Reasons__c": ("usage down 30%; " * 30)[:254] + "\u2026",
                "Tier__c": "high",
                "Renewal_Date__c": "2025-03-31",
                "Renewal_Risk__c": "medium",
            },
        ),
        (
            "hubspot",
            date(2025, 1, 1),
            {
                "crmsync_health_score": "72",
                "crmsync_health_band": "yellow",
                "crmsync_health_trend": "down",
                "crmsync_health_reasons": ("usage down 30%; " * 30)[:254] + "\u2026",
                "crmsync_tier": "high",
                "crmsync_renewal_date": "2025-03-31",
                "crmsync_days_to_renewal": "89",
                "crmsync_renewal_risk": "medium",
            },
        ),
    ],
)
def test_map_to_crm_write_backs(crm: str, today: date | None, expected: dict[str, Any]) -> None:
    mapping = default_mappings(crm).for_table("accounts")
    assert map_to_crm(mapping, ACCOUNT_ROW, today=today) == expected


def test_map_to_crm_clears_and_limits() -> None:
    account = SF.object("Account")
    assert map_to_crm(account, {"health_score": None}) == {"Health_Score__c": None}
    assert map_to_crm(HS.object("companies"), {"health_score": None}) == {
        "crmsync_health_score": ""
    }
    assert map_to_crm(account, ACCOUNT_ROW, only={"Tier__c"}) == {"Tier__c": "high"}
    with pytest.raises(MappingError) as caught:
        map_to_crm(account, {"health_score": "high"})
    assert caught.value.field == "Health_Score__c"


@pytest.mark.parametrize(
    ("crm", "obj", "field"), [("salesforce", "Note", "Body"), ("hubspot", "notes", "hs_note_body")]
)
def test_map_to_crm_renders_the_handover_body_composite(crm: str, obj: str, field: str) -> None:
    """The body pushed is an outbound composite of the structured columns (no special case)."""
    mapping = default_mappings(crm).object(obj)
    row: dict[str, Any] = {"title": "Acme", "body": None, "goals": ["a"], "fit": "good"}
    out = map_to_crm(mapping, row)
    assert "Goals: a" in out[field]
    assert out[field].startswith("<p>") is (crm == "hubspot")
    assert parse_handover(out[field]).columns()["goals"] == ["a"]
    # A body whose parse gives the columns (a pulled note) is sent back as the CRM holds it.
    pulled = "Handover: Acme\nGoals: a\nFit: good\nNotes from the call: keep"
    row["body"] = pulled
    assert map_to_crm(mapping, row)[field] == pulled
    # The columns changed on the CS side since: the columns are rendered.
    row["fit"] = "bad"
    rendered = map_to_crm(mapping, row)[field]
    assert parse_handover(rendered).columns()["fit"] == "bad"
    # ... unless the body itself was changed (stamped) after every column.
    row["field_stamps"] = {"fit": "2026-01-01T00:00:00+00:00", "body": "2026-01-02T00:00:00+00:00"}
    assert map_to_crm(mapping, row)[field] == pulled
    # A body that is no handover at all, on a row without structured values: kept.
    assert map_to_crm(mapping, {"body": "kept as is"})[field] == "kept as is"
    assert map_to_crm(mapping, {"body": None})[field] == (None if crm == "salesforce" else "")


@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
def test_defaults_are_valid(crm: str) -> None:
    validate_mapping_set(default_mappings(crm))


def test_read_fields_and_associations() -> None:
    assert SF.object("Opportunity").read_fields()[:3] == ("Id", "SystemModstamp", "IsDeleted")
    deals = HS.object("deals")
    assert deals.read_fields()[0] == "hs_lastmodifieddate"
    assert "id" not in deals.read_fields()
    assert not any(f.startswith("associations.") for f in deals.read_fields())
    assert deals.associations() == ("companies",)
    assert HS.object("notes").associations() == ("companies", "deals")
    assert "Days_To_Renewal__c" in SF.object("Account").write_fields()
    assert SF.object("Account").id_column == "sf_id"
    assert HS.object("deals").modified_column == "hs_modified_at"


@pytest.mark.parametrize(("lookup", "arg"), [("object", "Contact"), ("for_table", "contacts")])
def test_mapping_set_lookup_errors(lookup: str, arg: str) -> None:
    with pytest.raises(KeyError):
        getattr(SF, lookup)(arg)


def test_unknown_crm() -> None:
    with pytest.raises(KeyError):
        default_mappings("pipedrive")
