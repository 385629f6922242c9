"""Direction and conflict policies on a pull (app/mappers/ownership.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.mappers.defaults import salesforce_mappings
from app.mappers.ownership import MergeAction, crm_wins, merge_incoming, values_equal
from app.mappers.record import MappedRecord
from app.mappers.spec import ConflictPolicy, Direction, FieldMapping, ObjectMapping

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EARLIER = T0 - timedelta(hours=1)
LATER = T0 + timedelta(hours=1)

ACCOUNT = salesforce_mappings().object("Account")


def with_plan(policy: ConflictPolicy) -> ObjectMapping:
    """The Account mapping with Plan__c synced both ways under ``policy``."""
    fields = tuple(
        replace(f, direction=Direction.BOTH, conflict_policy=policy)
        if f.crm_field == "Plan__c"
        else f
        for f in ACCOUNT.fields
    )
    return replace(ACCOUNT, fields=fields)


def incoming(values: dict[str, Any], modified_at: datetime | None = T0) -> MappedRecord:
    return MappedRecord("001A", modified_at, False, values, {})


@pytest.mark.parametrize(
    ("policy", "cs_value", "cs_stamp", "crm_modified", "expected_plan"),
    [
        (ConflictPolicy.PREFER_CRM, "Pro", LATER, T0, "Enterprise"),
        (ConflictPolicy.PREFER_CS, "Pro", None, T0, "Pro"),
        (ConflictPolicy.PREFER_CS, None, None, T0, "Enterprise"),
        (ConflictPolicy.NEWEST_WINS, "Pro", EARLIER, T0, "Enterprise"),
        (ConflictPolicy.NEWEST_WINS, "Pro", LATER, T0, "Pro"),
        (ConflictPolicy.NEWEST_WINS, "Pro", T0, T0, "Enterprise"),  # tie -> CRM
        (ConflictPolicy.NEWEST_WINS, "Pro", None, T0, "Enterprise"),  # CS never changed it
        (ConflictPolicy.NEWEST_WINS, "Pro", LATER.isoformat(), T0, "Pro"),  # JSON stamp
        (ConflictPolicy.NEWEST_WINS, "Pro", "2024-03-01T13:00:00.000Z", T0, "Pro"),
        (ConflictPolicy.NEWEST_WINS, "Pro", EARLIER, None, "Pro"),  # no CRM stamp
        (ConflictPolicy.NEWEST_WINS, "Pro", "garbage", T0, "Enterprise"),
    ],
)
def test_conflict_policies(
    policy: ConflictPolicy,
    cs_value: str | None,
    cs_stamp: Any,
    crm_modified: datetime | None,
    expected_plan: str,
) -> None:
    mapping = with_plan(policy)
    existing = {"name": "Acme", "plan": cs_value, "sf_modified_at": EARLIER}
    stamps = {"plan": cs_stamp} if cs_stamp is not None else {}
    result = merge_incoming(
        mapping, existing, incoming({"name": "Acme", "plan": "Enterprise"}, crm_modified), stamps
    )
    final = result.values.get("plan", existing["plan"])
    assert final == expected_plan
    if expected_plan == "Enterprise":
        assert result.action is MergeAction.UPDATE
        assert result.changed == ("plan",)
    else:
        assert result.action is MergeAction.UNCHANGED
        assert result.kept_cs == ("plan",)


def test_crm_to_cs_always_takes_the_crm_value() -> None:
    existing = {"name": "Acme", "plan": "Pro"}
    result = merge_incoming(ACCOUNT, existing, incoming({"plan": "Enterprise"}), {"plan": LATER})
    assert result.action is MergeAction.UPDATE
    assert result.values == {"plan": "Enterprise", "sf_modified_at": T0}


def test_create() -> None:
    result = merge_incoming(ACCOUNT, None, incoming({"name": "Acme", "arr": Decimal(5)}))
    assert result.action is MergeAction.CREATE
    assert result.values == {
        "name": "Acme",
        "arr": Decimal(5),
        "sf_id": "001A",
        "sf_modified_at": T0,
    }
    assert set(result.changed) == {"name", "arr"}


@pytest.mark.parametrize(
    ("cs", "crm"),
    [
        (Decimal("120000.00"), Decimal("120000")),
        (120000.0, Decimal("120000")),
        (Decimal("0.10"), 0.1),
        (12, Decimal("12.0")),
        (datetime(2024, 3, 1, 12, 0), T0),  # naive from the database reads as UTC
        (T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")), T0),
        (date(2025, 1, 1), date(2025, 1, 1)),
        (["a", "b"], ("a", "b")),
        ({"seats": 250, "arr": 1.5}, {"seats": Decimal(250), "arr": Decimal("1.50")}),
        ([{"role": "primary"}], [{"role": "primary"}]),
        (None, None),
        ("x", "x"),
        (True, True),
    ],
)
def test_values_equal(cs: Any, crm: Any) -> None:
    assert values_equal(cs, crm)
    assert values_equal(crm, cs)


@pytest.mark.parametrize(
    ("cs", "crm"),
    [
        (None, 0),
        ("", None),
        (True, 1),
        (Decimal("1.01"), 1),
        (T0, T0.date()),
        (["a"], ["a", "b"]),
        ({"a": 1}, {"b": 1}),
        ("x", "X"),
    ],
)
def test_values_differ(cs: Any, crm: Any) -> None:
    assert not values_equal(cs, crm)


def test_unchanged_when_values_only_differ_in_representation() -> None:
    existing = {
        "name": "Acme",
        "arr": Decimal("120000.00"),
        "contract_end_on": date(2025, 12, 31),
        "sf_modified_at": T0,
    }
    result = merge_incoming(
        ACCOUNT,
        existing,
        incoming({"name": "Acme", "arr": Decimal("120000"), "contract_end_on": date(2025, 12, 31)}),
    )
    assert result.action is MergeAction.UNCHANGED
    assert result.values == {}


def test_unchanged_may_carry_the_moved_stamp() -> None:
    result = merge_incoming(
        ACCOUNT, {"name": "Acme", "sf_modified_at": EARLIER}, incoming({"name": "Acme"})
    )
    assert result.action is MergeAction.UNCHANGED
    assert result.values == {"sf_modified_at": T0}


def test_prefer_cs_fills_empty_json_columns() -> None:
    note = salesforce_mappings().object("Note")
    fields = tuple(replace(f, conflict_policy=ConflictPolicy.PREFER_CS) for f in note.fields)
    mapping = replace(note, fields=fields)
    result = merge_incoming(
        mapping, {"goals": [], "fit": "bad"}, incoming({"goals": ["a"], "fit": "good"})
    )
    assert result.values == {"goals": ["a"], "sf_modified_at": T0}
    assert result.kept_cs == ("fit",)


def test_default_columns_without_field_mapping_take_the_crm_side() -> None:
    # "currency" comes from ObjectMapping.defaults, no FieldMapping is inbound for it
    mapping = replace(ACCOUNT, fields=(FieldMapping("Name", "name"),))
    result = merge_incoming(mapping, {"currency": None}, incoming({"currency": "EUR"}))
    assert result.values["currency"] == "EUR"


@pytest.mark.parametrize(
    ("policy", "cs_value", "crm_at", "cs_at", "expected"),
    [
        (ConflictPolicy.PREFER_CRM, "x", None, None, True),
        (ConflictPolicy.PREFER_CS, "x", None, None, False),
        (ConflictPolicy.PREFER_CS, [], None, None, True),
        (ConflictPolicy.NEWEST_WINS, "x", T0, None, True),
        (ConflictPolicy.NEWEST_WINS, "x", None, T0, False),
        (ConflictPolicy.NEWEST_WINS, "x", LATER, T0, True),
    ],
)
def test_crm_wins(
    policy: ConflictPolicy,
    cs_value: Any,
    crm_at: datetime | None,
    cs_at: datetime | None,
    expected: bool,
) -> None:
    assert crm_wins(policy, cs_value, crm_at, cs_at) is expected
