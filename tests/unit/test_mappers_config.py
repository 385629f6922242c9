"""Mapping overrides from TOML (app/mappers/config.py)."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from app.mappers.config import (
    MappingFileError,
    apply_overrides,
    load_mapping_overrides,
    load_mapping_set,
    load_mapping_sets,
    parse_mapping_overrides,
)
from app.mappers.defaults import hubspot_mappings, salesforce_mappings
from app.mappers.errors import MappingConfigError
from app.mappers.record import map_record
from app.mappers.spec import ConflictPolicy, Direction, FieldMapping, validate_object_mapping

EXAMPLE = """
[salesforce.Account.fields.Health_Score__c]
column = "health_score"
direction = "cs_to_crm"

[salesforce.Account.fields.Industry]
direction = "none"            # stop syncing a field

[salesforce.Account.fields.Employees__c]
column = "potential_arr"
convert = "decimal"

[hubspot.companies.fields.my_custom_prop]
column = "plan"
convert = "string"
direction = "both"
conflict_policy = "newest_wins"

[hubspot.companies.fields.plan]
direction = "none"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    overrides = load_mapping_overrides(path)
    sf = apply_overrides(salesforce_mappings(), overrides)
    account = sf.object("Account")
    industry = account.field_for("Industry")
    assert industry is not None
    assert industry.direction is Direction.NONE
    assert "Industry" not in account.read_fields()
    mapped = map_record(account, {"Id": "001A", "Industry": "x", "Employees__c": "12.5"})
    assert "industry" not in mapped.values
    assert mapped.values["potential_arr"] == 12.5
    # the other objects are untouched
    assert sf.object("Opportunity") == salesforce_mappings().object("Opportunity")

    hs = load_mapping_set("hubspot", path)
    custom = hs.object("companies").field_for("my_custom_prop")
    assert custom is not None
    assert custom.direction is Direction.BOTH
    assert custom.conflict_policy is ConflictPolicy.NEWEST_WINS
    assert "my_custom_prop" in hs.object("companies").write_fields()


def test_no_file_gives_the_defaults() -> None:
    assert load_mapping_set("salesforce") == salesforce_mappings()
    assert load_mapping_set("hubspot", default_currency="USD") == hubspot_mappings("USD")


def test_direction_override_of_a_multi_column_field() -> None:
    overrides = parse_mapping_overrides(
        tomllib.loads('[salesforce.Note.fields.Body]\ndirection = "crm_to_cs"\n')
    )
    note = apply_overrides(salesforce_mappings(), overrides).object("Note")
    assert {f.direction for f in note.fields if f.crm_field == "Body"} == {Direction.CRM_TO_CS}


def test_a_two_way_body_keeps_its_parses_inbound() -> None:
    """``direction = "both"`` on Body (what the defaults say) keeps the handover parses
    ``crm_to_cs``: they cannot write to the CRM, the body's composite does."""
    toml = '[salesforce.Note.fields.Body]\ndirection = "both"\nconflict_policy = "prefer_cs"\n'
    note = apply_overrides(salesforce_mappings(), parse_mapping_overrides(tomllib.loads(toml)))
    fields = {f.column: f for f in note.object("Note").fields if f.crm_field == "Body"}
    assert fields["body"].direction is Direction.BOTH
    assert fields["body"].conflict_policy is ConflictPolicy.PREFER_CS
    assert {f.direction for c, f in fields.items() if c != "body"} == {Direction.CRM_TO_CS}
    off = '[salesforce.Note.fields.Body]\ndirection = "cs_to_crm"\n'
    note = apply_overrides(salesforce_mappings(), parse_mapping_overrides(tomllib.loads(off)))
    fields = {f.column: f for f in note.object("Note").fields if f.crm_field == "Body"}
    assert fields["body"].direction is Direction.CS_TO_CRM
    assert {f.direction for c, f in fields.items() if c != "body"} == {Direction.NONE}


@pytest.mark.parametrize(
    ("fm", "says"),
    [
        (FieldMapping("Body", "fit", "handover_fit", Direction.BOTH), "cannot write to the CRM"),
        (FieldMapping("Body", "goals", "handover_goals", Direction.CS_TO_CRM), "cannot write"),
        (FieldMapping("ParentId", "sf_parent_id", "first_id", Direction.BOTH), "cannot write"),
        (FieldMapping("Days", "title", "days_until", Direction.BOTH), "cannot read from the CRM"),
        (FieldMapping("Days", "title", "days_until", Direction.CRM_TO_CS), "cannot read"),
    ],
)
def test_a_direction_the_converter_cannot_carry_is_refused(fm: FieldMapping, says: str) -> None:
    """Defaults and files alike: validate_object_mapping runs on both (the defaults are checked
    by test_defaults_are_valid)."""
    note = salesforce_mappings().object("Note")
    with pytest.raises(MappingConfigError) as caught:
        validate_object_mapping(replace(note, fields=(*note.fields, fm)))
    assert caught.value.key == f"salesforce.Note.fields.{fm.crm_field}.direction"
    assert says in caught.value.reason
    assert repr(fm.column) in caught.value.reason


def test_one_crm_field_is_written_from_one_column() -> None:
    toml = '[salesforce.Account.fields.Plan__c]\ndirection = "both"\n'
    apply_overrides(salesforce_mappings(), parse_mapping_overrides(tomllib.loads(toml)))
    account = salesforce_mappings().object("Account")
    twice = FieldMapping("Tier__c", "plan", "string", Direction.CS_TO_CRM)
    with pytest.raises(MappingConfigError) as caught:
        validate_object_mapping(replace(account, fields=(*account.fields, twice)))
    assert caught.value.key == "salesforce.Account.fields.Tier__c.direction"
    assert "already written from column 'tier'" in caught.value.reason


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[pipedrive.Account.fields.X]\ncolumn = "name"', "pipedrive"),
        ('[salesforce.Contact.fields.X]\ncolumn = "name"', "salesforce.Contact"),
        ('[salesforce.Account.fields.X]\ncolumn = "nope"', "salesforce.Account.fields.X.column"),
        ('[salesforce.Account.fields.X]\ncolumn = "sf_id"', "salesforce.Account.fields.X.column"),
        (
            '[salesforce.Account.fields.X]\ncolumn = "account_id"',
            "salesforce.Account.fields.X.column",
        ),
        ('[salesforce.Account.fields.X]\nconvert = "string"', "salesforce.Account.fields.X.column"),
        (
            '[salesforce.Account.fields.X]\ncolumn = "mrr"\nconvert = "money"',
            "salesforce.Account.fields.X.convert",
        ),
        (
            '[salesforce.Account.fields.X]\ncolumn = "mrr"\nconvert = "decimal:2"',
            "salesforce.Account.fields.X.convert",
        ),
        (
            '[salesforce.Account.fields.Industry]\ndirection = "sideways"',
            "salesforce.Account.fields.Industry.direction",
        ),
        (
            '[salesforce.Account.fields.Industry]\ndirection = "both"\nconflict_policy = "loudest"',
            "salesforce.Account.fields.Industry.conflict_policy",
        ),
        (
            '[salesforce.Account.fields.Industry]\nconflict_policy = "prefer_cs"',
            "salesforce.Account.fields.Industry.conflict_policy",
        ),
        (
            '[salesforce.Account.fields.Industry]\ncolum = "industry"',
            "salesforce.Account.fields.Industry.colum",
        ),
        (
            "[salesforce.Account.fields.Industry]\ndirection = 3",
            "salesforce.Account.fields.Industry.direction",
        ),
        ("[salesforce.Account]\nfield = 1", "salesforce.Account.field"),
        (
            '[salesforce.Account.fields]\nIndustry = "industry"',
            "salesforce.Account.fields.Industry",
        ),
        (
            '[salesforce.Account.fields.Sector__c]\ncolumn = "industry"',
            "salesforce.Account.fields.Sector__c.column",
        ),
        (
            '[salesforce.Account.fields.Days_To_Renewal__c]\ndirection = "both"',
            "salesforce.Account.fields.Days_To_Renewal__c.direction",
        ),
        ('[salesforce.Note.fields.Body]\ncolumn = "title"', "salesforce.Note.fields.Body"),
        (
            '[salesforce.Note.fields.Body2]\ncolumn = "goals"\nconvert = "handover_goals"\n'
            'direction = "cs_to_crm"',
            "salesforce.Note.fields.Body2.direction",
        ),
        (
            '[salesforce.Opportunity.fields.AccountRef]\ncolumn = "sf_account_id"\n'
            'convert = "first_id"\ndirection = "both"',
            "salesforce.Opportunity.fields.AccountRef.direction",
        ),
    ],
)
def test_errors_name_the_key(toml: str, key: str) -> None:
    def load() -> None:
        apply_overrides(salesforce_mappings(), parse_mapping_overrides(tomllib.loads(toml)))

    with pytest.raises(MappingConfigError) as caught:
        load()
    assert caught.value.key == key
    assert str(caught.value).startswith(key + ":")


@pytest.mark.parametrize(
    ("text", "reason"), [("[salesforce\n", "not valid TOML"), (None, "not found")]
)
def test_file_errors(tmp_path: Path, text: str | None, reason: str) -> None:
    path = write(tmp_path, text) if text is not None else tmp_path / "missing.toml"
    with pytest.raises(MappingConfigError, match=reason):
        load_mapping_overrides(path)


def test_a_file_is_validated_whole_and_errors_name_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[hubspot.companies.fields.x]\ncolumn = "nope"\n')
    with pytest.raises(MappingFileError) as caught:
        load_mapping_set("salesforce", path)  # the hubspot section is checked too
    assert caught.value.key == "hubspot.companies.fields.x.column"
    assert str(caught.value).startswith(f"{path}: hubspot.companies.fields.x.column: ")


def test_a_typo_of_a_default_field_is_pointed_out() -> None:
    overrides = parse_mapping_overrides(
        tomllib.loads('[salesforce.Account.fields.Industy]\ndirection = "none"\n')
    )
    with pytest.raises(MappingConfigError, match="did you mean 'Industry'"):
        apply_overrides(salesforce_mappings(), overrides)


def test_load_mapping_sets_gives_every_crm(tmp_path: Path) -> None:
    sets = load_mapping_sets(write(tmp_path, EXAMPLE))
    assert sets["salesforce"] == load_mapping_set("salesforce", tmp_path / "mapping.toml")
    assert sets["hubspot"].object("companies").field_for("my_custom_prop") is not None
