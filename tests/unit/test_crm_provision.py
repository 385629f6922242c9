"""The pure half of field provisioning: target specs, the comparison, and setup's decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from app.crm.hubspot.fields import property_body, property_meta
from app.crm.provision import (
    HEALTH_BANDS,
    TIERS,
    Created,
    FieldMeta,
    FieldsByObject,
    FieldSpec,
    Kind,
    Outcome,
    Problem,
    check_field,
    compare,
    missing_targets,
    refusal,
    setup,
    target_specs,
)
from app.crm.salesforce.fields import field_meta, tooling_body
from app.db.enums import HealthBand, Tier
from app.mappers.config import apply_overrides, parse_mapping_overrides
from app.mappers.defaults import hubspot_mappings, salesforce_mappings


def spec(kind: Kind, crm: Any = "salesforce", **kw: Any) -> FieldSpec:
    name = kw.pop("name", "X__c" if crm == "salesforce" else "crmsync_x")
    return FieldSpec(crm, kw.pop("object_name", "Account"), name, "X", kind, **kw)


def meta(type_: str, **kw: Any) -> FieldMeta:
    return FieldMeta(name=kw.pop("name", "X__c"), type=type_, updateable=kw.pop("up", True), **kw)


def test_enumerations_are_the_domains() -> None:
    assert tuple(HealthBand) == HEALTH_BANDS
    assert tuple(Tier) == TIERS


def test_salesforce_targets_of_the_default_mapping() -> None:
    specs = {s.full_name: s for s in target_specs(salesforce_mappings())}
    shapes = {
        name: (s.kind, s.length, s.precision, s.scale, s.options) for name, s in specs.items()
    }
    assert shapes == {
        "Account.Health_Score__c": (Kind.NUMBER, None, 3, 0, ()),
        "Account.Health_Band__c": (Kind.ENUM, None, None, None, HEALTH_BANDS),
        "Account.Health_Trend__c": (Kind.ENUM, None, None, None, ("up", "flat", "down", "new")),
        "Account.Health_Reasons__c": (Kind.TEXT, 255, None, None, ()),
        "Account.Tier__c": (Kind.ENUM, None, None, None, TIERS),
        "Account.Renewal_Date__c": (Kind.DATE, None, None, None, ()),
        "Account.Days_To_Renewal__c": (Kind.NUMBER, None, 5, 0, ()),
        "Account.Renewal_Risk__c": (
            Kind.ENUM,
            None,
            None,
            None,
            ("low", "medium", "high", "critical"),
        ),
        "Account.CSM_Email__c": (Kind.TEXT, 255, None, None, ()),
        "Account.Onboarding_Status__c": (Kind.TEXT, 16, None, None, ()),
        "Account.Crmsync_Id__c": (Kind.EXTERNAL_ID, 36, None, None, ()),
        "Opportunity.Crmsync_Id__c": (Kind.EXTERNAL_ID, 36, None, None, ()),
        # a Note's title and body are written back (both ways) but are standard fields
        "Note.Title": (Kind.TEXT, 255, None, None, ()),
        "Note.Body": (Kind.LONG_TEXT, 131072, None, None, ()),
    }
    assert specs["Account.Health_Score__c"].label == "Health Score"
    assert not specs["Note.Body"].creatable
    assert specs["Account.Tier__c"].creatable


def test_hubspot_targets_of_the_default_mapping() -> None:
    specs = {s.full_name: s for s in target_specs(hubspot_mappings())}
    assert {n for n, s in specs.items() if s.kind is Kind.EXTERNAL_ID} == {
        "companies.crmsync_id",
        "deals.crmsync_id",
        "notes.crmsync_id",
    }
    assert specs["companies.crmsync_days_to_renewal"].label == "Days To Renewal"
    assert specs["companies.crmsync_tier"].options == TIERS
    assert not specs["notes.hs_note_body"].creatable
    assert specs["companies.crmsync_health_score"].creatable


def test_a_mapping_override_adds_its_target() -> None:
    field = {"column": "health_coverage", "convert": "integer", "direction": "cs_to_crm"}
    overrides = parse_mapping_overrides(
        {"salesforce": {"Account": {"fields": {"Coverage__c": field}}}}
    )
    mappings = apply_overrides(salesforce_mappings(), overrides)
    specs = {s.full_name: s for s in target_specs(mappings)}
    assert (specs["Account.Coverage__c"].kind, specs["Account.Coverage__c"].precision) == (
        Kind.NUMBER,
        3,
    )


@pytest.mark.parametrize(
    ("target", "found", "problem", "detail"),
    [
        # Salesforce
        (spec(Kind.NUMBER, precision=3, scale=0), None, Problem.MISSING, "not found"),
        (spec(Kind.NUMBER, precision=3, scale=0), meta("double", precision=18, scale=2), None, ""),
        (spec(Kind.NUMBER, precision=3, scale=0), meta("int"), None, ""),
        (
            spec(Kind.NUMBER, precision=5, scale=0),
            meta("double", precision=4, scale=0),
            Problem.WRONG_TYPE,
            "holds 4 whole digits",
        ),
        (
            spec(Kind.NUMBER, precision=18, scale=2),
            meta("double", precision=18, scale=0),
            Problem.WRONG_TYPE,
            "has 0 decimal places",
        ),
        (
            spec(Kind.NUMBER, precision=3),
            meta("string", length=10),
            Problem.WRONG_TYPE,
            "is string(10): not a number",
        ),
        (spec(Kind.DATE), meta("date"), None, ""),
        (spec(Kind.DATE), meta("datetime"), Problem.WRONG_TYPE, "not a date field"),
        (spec(Kind.TEXT, length=255), meta("string", length=255), None, ""),
        (spec(Kind.TEXT, length=255), meta("textarea", length=32000), None, ""),
        (
            spec(Kind.TEXT, length=255),
            meta("string", length=80),
            Problem.WRONG_TYPE,
            "holds 80 characters",
        ),
        (
            spec(Kind.ENUM, options=TIERS),
            meta("picklist", options=TIERS, restricted=True),
            None,
            "",
        ),
        (spec(Kind.ENUM, options=TIERS), meta("picklist", options=("key",)), None, ""),
        (
            spec(Kind.ENUM, options=TIERS),
            meta("picklist", options=("key",), restricted=True),
            Problem.WRONG_TYPE,
            "without the values high, low, tech",
        ),
        (spec(Kind.ENUM, options=HEALTH_BANDS), meta("string", length=255), None, ""),
        (
            spec(Kind.ENUM, options=HEALTH_BANDS),
            meta("string", length=5),
            Problem.WRONG_TYPE,
            "holds 5 characters",
        ),
        (spec(Kind.EXTERNAL_ID, length=36), meta("string", length=255, unique=True), None, ""),
        (
            spec(Kind.EXTERNAL_ID, length=36),
            meta("string", length=255),
            Problem.WRONG_TYPE,
            "not marked External ID",
        ),
        (
            spec(Kind.TEXT, length=255),
            meta("string", length=255, up=False),
            Problem.NOT_UPDATEABLE,
            "not updateable",
        ),
        # HubSpot
        (spec(Kind.NUMBER, "hubspot", precision=3), meta("number"), None, ""),
        (
            spec(Kind.NUMBER, "hubspot", precision=3),
            meta("string"),
            Problem.WRONG_TYPE,
            "not a number property",
        ),
        (spec(Kind.DATE, "hubspot"), meta("datetime"), None, ""),
        (spec(Kind.ENUM, "hubspot", options=TIERS), meta("string"), None, ""),
        (spec(Kind.ENUM, "hubspot", options=TIERS), meta("enumeration", options=TIERS), None, ""),
        (
            spec(Kind.ENUM, "hubspot", options=TIERS),
            meta("enumeration", options=("key", "high")),
            Problem.WRONG_TYPE,
            "enumeration without the options low, tech",
        ),
        (spec(Kind.EXTERNAL_ID, "hubspot"), meta("string"), Problem.WRONG_TYPE, "hasUniqueValue"),
        (spec(Kind.EXTERNAL_ID, "hubspot"), meta("string", unique=True), None, ""),
        (spec(Kind.TEXT, "hubspot"), meta("string", up=False), Problem.NOT_UPDATEABLE, ""),
    ],
)
def test_check_field(
    target: FieldSpec, found: FieldMeta | None, problem: Problem | None, detail: str
) -> None:
    result = check_field(target, found)
    if problem is None:
        assert result is None
        return
    assert result is not None
    assert result.problem is problem
    assert detail in result.detail


def test_an_absent_object_makes_each_of_its_targets_missing() -> None:
    specs = target_specs(salesforce_mappings())
    found = compare(specs, {"Account": None, "Opportunity": {}, "Note": {}})
    assert {m.spec.full_name for m in found} == {s.full_name for s in specs}
    account = [m for m in found if m.object_name == "Account"]
    assert all("object Account not found" in m.detail for m in account)


@pytest.mark.parametrize(
    ("target", "fix"),
    [
        (
            spec(Kind.NUMBER, name="Health_Score__c", precision=3, scale=0),
            "create custom field Account.Health_Score__c (Number, length 3, decimal places 0, "
            'label "X") and give the integration user Edit access to it',
        ),
        (
            spec(Kind.EXTERNAL_ID, name="Crmsync_Id__c", length=36),
            "create custom field Account.Crmsync_Id__c (Text, length 36, External ID, Unique, "
            'label "X") and give the integration user Edit access to it',
        ),
        (
            spec(Kind.ENUM, "hubspot", object_name="companies", options=TIERS),
            "create property crmsync_x on companies (enumeration (select), options key, high, "
            'low, tech, label "X", group crmsync)',
        ),
        (
            spec(Kind.LONG_TEXT, name="Body", object_name="Note"),
            "Note.Body is a standard field crmsync cannot create: make it visible to the "
            "integration user, or map it away in CRMSYNC_MAPPING_FILE",
        ),
    ],
)
def test_the_fix_names_type_and_size(target: FieldSpec, fix: str) -> None:
    missing = check_field(target, None)
    assert missing is not None
    assert missing.fix() == fix


def test_missing_field_carries_the_spec_flat() -> None:
    target = spec(Kind.NUMBER, name="Days__c", precision=5, scale=0)
    missing = check_field(target, None)
    assert missing is not None
    assert (missing.name, missing.type, missing.precision, missing.scale, missing.length) == (
        "Days__c",
        "Number",
        5,
        0,
        None,
    )
    assert missing.creatable


def test_refusal_lists_every_problem_in_one_message() -> None:
    specs = target_specs(hubspot_mappings())
    problems = compare(specs, {"companies": {}, "deals": {}, "notes": None})
    text = refusal(problems)
    assert text.splitlines()[0].startswith(f"the push needs {len(problems)} target field(s)")
    assert "crmsync crm setup --crm hubspot" in text.splitlines()[0]
    assert len(text.splitlines()) == len(problems) + 1


# -- wire bodies --------------------------------------------------------------------------------


def test_tooling_bodies() -> None:
    assert tooling_body(spec(Kind.NUMBER, name="Health_Score__c", precision=3, scale=0)) == {
        "FullName": "Account.Health_Score__c",
        "Metadata": {
            "type": "Number",
            "label": "X",
            "description": "Written by crmsync (crmsync crm setup).",
            "precision": 3,
            "scale": 0,
        },
    }
    ext = tooling_body(spec(Kind.EXTERNAL_ID, length=36))["Metadata"]
    assert (ext["type"], ext["length"], ext["externalId"], ext["unique"]) == (
        "Text",
        36,
        True,
        True,
    )
    pick = tooling_body(spec(Kind.ENUM, options=TIERS))["Metadata"]
    assert pick["type"] == "Picklist"
    assert [v["fullName"] for v in pick["valueSet"]["valueSetDefinition"]["value"]] == list(TIERS)


def test_property_bodies() -> None:
    band = property_body(spec(Kind.ENUM, "hubspot", options=HEALTH_BANDS))
    assert (band["type"], band["fieldType"], band["groupName"]) == (
        "enumeration",
        "select",
        "crmsync",
    )
    assert [o["value"] for o in band["options"]] == list(HEALTH_BANDS)
    ident = property_body(spec(Kind.EXTERNAL_ID, "hubspot", name="crmsync_id"))
    assert (ident["type"], ident["hasUniqueValue"]) == ("string", True)
    assert property_body(spec(Kind.DATE, "hubspot"))["type"] == "date"


def test_metadata_readers() -> None:
    sf = field_meta(
        {
            "name": "Tier__c",
            "type": "picklist",
            "updateable": True,
            "length": 255,
            "precision": 0,
            "scale": 0,
            "restrictedPicklist": True,
            "picklistValues": [
                {"value": "key", "active": True},
                {"value": "old", "active": False},
            ],
        }
    )
    assert (sf.options, sf.restricted, sf.precision, sf.length) == (("key",), True, None, 255)
    hs = property_meta(
        {
            "name": "crmsync_id",
            "type": "string",
            "hasUniqueValue": True,
            "modificationMetadata": {"readOnlyValue": False},
        }
    )
    assert (hs.unique, hs.updateable) == (True, True)
    read_only = property_meta(
        {"name": "hs_object_id", "type": "number", "modificationMetadata": {"readOnlyValue": True}}
    )
    assert read_only.updateable is False


# -- setup's decisions, against a fake CRM ------------------------------------------------------


class FakeCrm:
    """Fields per object; creates succeed, exist, or are refused; created fields may stay hidden."""

    def __init__(
        self,
        fields: dict[str, dict[str, FieldMeta] | None],
        *,
        refuse: bool = False,
        hidden: bool = False,
        exists: Sequence[str] = (),
    ) -> None:
        self.fields = fields
        self.refuse = refuse
        self.hidden = hidden
        self.exists = set(exists)
        self.reads: list[tuple[str, ...]] = []
        self.creates: list[str] = []

    def read_fields(self, object_names: Sequence[str]) -> FieldsByObject:
        self.reads.append(tuple(object_names))
        return {n: self.fields.get(n) for n in object_names}

    def create_fields(self, specs: Sequence[FieldSpec]) -> list[Created]:
        out = []
        for s in specs:
            if self.refuse:
                out.append(Created(s, Outcome.REFUSED, "INSUFFICIENT_ACCESS_OR_READONLY: no"))
                continue
            self.creates.append(s.full_name)
            outcome = Outcome.EXISTS if s.full_name in self.exists else Outcome.CREATED
            if not self.hidden:
                kind_type = {Kind.NUMBER: "double", Kind.DATE: "date", Kind.ENUM: "picklist"}
                found = FieldMeta(
                    s.name,
                    kind_type.get(s.kind, "string"),
                    True,
                    length=255,
                    options=s.options,
                    unique=s.kind is Kind.EXTERNAL_ID,
                )
                target = self.fields.setdefault(s.object_name, {})
                assert target is not None
                target[s.name] = found
            out.append(Created(s, outcome))
        return out


def _org(**account: FieldMeta) -> dict[str, dict[str, FieldMeta] | None]:
    note = {
        "Title": meta("string", name="Title", length=255),
        "Body": meta("textarea", name="Body"),
    }
    return {"Account": dict(account), "Opportunity": {}, "Note": note}


def test_setup_creates_what_is_missing_and_a_second_run_does_nothing() -> None:
    crm = FakeCrm(_org())
    mappings = salesforce_mappings()
    report = setup(crm, mappings, dry_run=False)
    assert report.status == "done"
    assert not report.manual
    assert len(crm.creates) == len(report.created) == 12
    assert crm.reads == [("Account", "Opportunity", "Note"), ("Account", "Opportunity")]
    crm.reads.clear()
    again = setup(crm, mappings, dry_run=False)
    assert again.status == "ready"
    assert not again.planned
    assert crm.reads == [("Account", "Opportunity", "Note")]
    assert len(crm.creates) == 12
    assert missing_targets(crm, mappings) == []


def test_dry_run_creates_nothing() -> None:
    crm = FakeCrm(_org())
    report = setup(crm, salesforce_mappings(), dry_run=True)
    assert report.status == "planned"
    assert len(report.planned) == 12
    assert not crm.creates
    assert len(crm.reads) == 1


def test_refused_creates_become_manual_with_the_crms_words() -> None:
    crm = FakeCrm(_org(), refuse=True)
    report = setup(crm, salesforce_mappings(), dry_run=False)
    assert report.status == "action_needed"
    assert len(report.manual) == 12
    assert all(
        m.detail == "missing; the CRM refused to create it (INSUFFICIENT_ACCESS_OR_READONLY)"
        for m in report.manual
    )
    assert report.refused == "INSUFFICIENT_ACCESS_OR_READONLY: no"
    assert report.manual[0].fix().startswith("create custom field Account.")


def test_created_but_invisible_asks_for_field_level_security() -> None:
    crm = FakeCrm(_org(), hidden=True, exists=["Account.Tier__c"])
    report = setup(crm, salesforce_mappings(), dry_run=False)
    tier = next(m for m in report.manual if m.name == "Tier__c")
    assert tier.detail == "exists, but not visible to the integration user"
    assert "Read and Edit access to Account.Tier__c (field-level security" in tier.fix()
    score = next(m for m in report.manual if m.name == "Health_Score__c")
    assert score.detail == "created, but not visible to the integration user"


def test_wrong_types_and_read_only_fields_are_manual_and_not_created() -> None:
    org = _org(
        Health_Score__c=meta("date", name="Health_Score__c"),
        Tier__c=meta("picklist", name="Tier__c", options=TIERS, up=False),
    )
    crm = FakeCrm(org)
    report = setup(crm, salesforce_mappings(), dry_run=False)
    assert {(m.name, m.problem) for m in report.manual} == {
        ("Health_Score__c", Problem.WRONG_TYPE),
        ("Tier__c", Problem.NOT_UPDATEABLE),
    }
    assert "Account.Health_Score__c" not in crm.creates
    assert len(crm.creates) == 10
    assert report.status == "action_needed"


def test_report_status_words() -> None:
    crm = FakeCrm(_org())
    base = setup(crm, salesforce_mappings(), dry_run=True)
    assert replace(base, planned=()).status == "ready"
    assert replace(base, dry_run=False, planned=(), created=()).status == "ready"
