"""The pure half of ``crmsync crm check``: org facts against the mappings' needs."""

from __future__ import annotations

from typing import Any

import pytest

from app.crm.check import (
    FieldFacts,
    ObjectNeed,
    OrgFacts,
    Status,
    check_budget,
    check_bulk,
    check_object,
    check_version,
    findings,
    needs_from,
    worst,
)
from app.mappers.defaults import hubspot_mappings, salesforce_mappings


def facts(**kw: Any) -> OrgFacts:
    base: dict[str, Any] = {
        "crm": "salesforce",
        "api_version": "59.0",
        "api_versions": ("58.0", "59.0", "62.0"),
        "daily_max": 100_000,
        "daily_used": 1_000,
        "bulk": True,
        "objects": {},
    }
    base.update(kw)
    return OrgFacts(**base)


def fields(*names: str, read_only: tuple[str, ...] = ()) -> dict[str, FieldFacts]:
    return {n: FieldFacts(n, n not in read_only) for n in names}


@pytest.mark.parametrize(
    ("kw", "status", "fix"),
    [
        ({}, Status.OK, None),
        ({"api_version": "63.0"}, Status.MISSING, "set CRMSYNC_SALESFORCE_API_VERSION=62.0"),
        ({"crm": "hubspot", "api_version": "CRM v3", "api_versions": None}, Status.OK, None),
    ],
)
def test_version(kw: dict[str, Any], status: Status, fix: str | None) -> None:
    found = check_version(facts(**kw))
    assert (found.status, found.fix) == (status, fix)


@pytest.mark.parametrize(
    ("used", "mx", "status", "detail"),
    [
        (1_000, 100_000, Status.OK, "1,000 of 100,000 used, 99,000 left"),
        (95_000, 100_000, Status.WARN, "95,000 of 100,000 used, 5,000 left"),
        (None, None, Status.OK, "not reported"),
    ],
)
def test_budget(used: int | None, mx: int | None, status: Status, detail: str) -> None:
    found = check_budget(facts(daily_used=used, daily_max=mx))
    assert (found.status, found.detail) == (status, detail)


@pytest.mark.parametrize(
    ("bulk", "status"), [(True, Status.OK), (False, Status.MISSING), (None, Status.OK)]
)
def test_bulk(bulk: bool | None, status: Status) -> None:
    found = check_bulk(facts(bulk=bulk))
    assert found.status is status
    assert (found.fix is not None) == (status is Status.MISSING)


NEED = ObjectNeed("Account", read=("Id", "Name"), optional=("CurrencyIsoCode",), write=("Tier__c",))


@pytest.mark.parametrize(
    ("org_fields", "expected"),
    [
        # everything there: one row, optional absence noted
        (
            fields("Id", "Name", "Tier__c"),
            [
                (
                    "Account",
                    Status.OK,
                    "2 read, 1 written back; optional, not in this org: CurrencyIsoCode",
                )
            ],
        ),
        (
            fields("Id", "Name", "Tier__c", "CurrencyIsoCode"),
            [("Account", Status.OK, "2 read, 1 written back")],
        ),
        # a read field missing, a write field missing
        (
            fields("Id"),
            [
                ("Account.Name", Status.MISSING, "read by pulls; not found or not visible"),
                (
                    "Account.Tier__c",
                    Status.MISSING,
                    "written back by crmsync; not found or not visible",
                ),
            ],
        ),
        # a write field present but not updateable
        (
            fields("Id", "Name", "Tier__c", read_only=("Tier__c",)),
            [("Account.Tier__c", Status.MISSING, "written back by crmsync; not updateable")],
        ),
        # the object itself not readable
        (None, [("Account", Status.MISSING, "not found or not readable")]),
    ],
)
def test_object(
    org_fields: dict[str, FieldFacts] | None, expected: list[tuple[str, Status, str]]
) -> None:
    found = check_object("salesforce", NEED, org_fields)
    assert [(f.subject, f.status, f.detail) for f in found] == expected
    assert all(f.fix for f in found if f.status is Status.MISSING)


def test_needs_from_default_mappings_name_reads_and_writes() -> None:
    sf = {n.object_name: n for n in needs_from(salesforce_mappings())}
    assert {"Id", "SystemModstamp", "IsDeleted", "ARR__c"} <= set(sf["Account"].read)
    assert "CurrencyIsoCode" not in sf["Account"].read
    assert sf["Account"].optional == ("CurrencyIsoCode",)
    assert "Health_Score__c" in sf["Account"].write
    hs = {n.object_name: n for n in needs_from(hubspot_mappings())}
    assert "hs_lastmodifieddate" in hs["companies"].read
    assert not any(r.startswith("associations.") for r in hs["deals"].read)


def test_findings_order_and_worst() -> None:
    org = facts(objects={"Account": fields("Id", "Name", "Tier__c")})
    found = findings(org, [NEED])
    assert [f.check for f in found] == ["API version", "daily API limit", "Bulk API 2.0", "object"]
    assert worst(found) is Status.OK
    assert worst(findings(facts(bulk=False, objects={}), [NEED])) is Status.MISSING
    assert worst(findings(facts(daily_used=99_999, objects={"Account": None}), [])) is Status.WARN
