"""The pull's three-way merge against the ledger and the conflict policies
(app/mappers/ownership.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.mappers.defaults import salesforce_mappings
from app.mappers.ledger import LedgerEntry, value_hash
from app.mappers.ownership import (
    MergeAction,
    Side,
    UnreadableStampError,
    merge_incoming,
    newest_cs_stamp,
    resolve_conflict,
    values_equal,
)
from app.mappers.record import MappedRecord
from app.mappers.spec import ConflictPolicy, Direction, FieldMapping, ObjectMapping

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EARLIER = T0 - timedelta(hours=1)
LATER = T0 + timedelta(hours=1)

ACCOUNT = salesforce_mappings().object("Account")
POLICIES = list(ConflictPolicy)


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


def agreed(value: Any) -> LedgerEntry:
    """A ledger entry as a confirmed push of ``value`` (or a pull that took it) leaves it."""
    h = value_hash(value)
    return LedgerEntry(h, h, value)


# The three-way table of ADR 0006 for one field (Plan__c -> plan), for every policy.
# (ledger value, CS value, CRM value, CS stamp, CRM stamp) -> (plan afterwards, expected ledger
# value_hash of, kept_cs).
NOTHING = "nothing"  # the ledger entry is not rewritten


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("case", "ledger", "cs", "crm", "expected", "ledger_after"),
    [
        # nobody changed it (an echo of crmsync's own push)
        ("unchanged", "Pro", "Pro", "Pro", "Pro", NOTHING),
        # the CS side changed it, the CRM did not: the CS value stays, whatever the CRM stamp
        ("cs changed", "Pro", "Gold", "Pro", "Gold", NOTHING),
        # the CRM changed it, the CS side did not: taken
        ("crm changed", "Pro", "Pro", "Gold", "Gold", "Gold"),
        # both changed it the same way: the ledger agrees, nothing to write
        ("same change", "Pro", "Gold", "Gold", "Gold", "Gold"),
    ],
)
def test_three_way_cases_that_need_no_policy(
    policy: ConflictPolicy,
    case: str,
    ledger: str,
    cs: str,
    crm: str,
    expected: str,
    ledger_after: str,
) -> None:
    mapping = with_plan(policy)
    existing = {"name": "Acme", "plan": cs, "sf_modified_at": EARLIER}
    # A CS stamp newer than the CRM's: under the old newest_wins it decided every case.
    stamps = {"plan": LATER.isoformat()} if cs != ledger else {}
    result = merge_incoming(
        mapping,
        existing,
        incoming({"name": "Acme", "plan": crm}, T0),
        stamps,
        {"Plan__c": agreed(ledger)},
    )
    assert result.values.get("plan", existing["plan"]) == expected, case
    assert result.conflicts == ()
    if expected != cs:
        assert result.action is MergeAction.UPDATE
        assert result.changed == ("plan",)
    else:
        assert result.action is MergeAction.UNCHANGED
        assert result.changed == ()
    if ledger_after == NOTHING:
        assert "Plan__c" not in result.ledger
    else:
        entry = result.ledger["Plan__c"]
        assert entry.value_hash == entry.crm_hash == value_hash(ledger_after)
        assert entry.value == ledger_after
    assert result.kept_cs == (("plan",) if case == "cs changed" else ())


def test_an_unrelated_crm_edit_does_not_revert_an_unpushed_cs_edit() -> None:
    """Issue #17: the old newest_wins compared the whole record's stamp with the column's CS
    stamp, so any CRM edit made after an unpushed CS edit reverted it. Now the CRM value's hash
    equals the ledger's: the CRM did not touch the field, and the CS value stands."""
    mapping = with_plan(ConflictPolicy.NEWEST_WINS)
    existing = {"name": "Acme", "plan": "Gold", "sf_modified_at": EARLIER}
    result = merge_incoming(
        mapping,
        existing,
        incoming({"name": "Acme Renamed", "plan": "Pro"}, LATER),  # Name edited after the CS edit
        {"plan": T0.isoformat()},
        {"Plan__c": agreed("Pro")},
    )
    assert result.values == {"name": "Acme Renamed", "sf_modified_at": LATER}
    assert result.kept_cs == ("plan",)
    assert "Plan__c" not in result.ledger


@pytest.mark.parametrize(
    ("policy", "cs_stamp", "crm_modified", "expected"),
    [
        (ConflictPolicy.PREFER_CRM, LATER, T0, "Enterprise"),
        (ConflictPolicy.PREFER_CRM, None, T0, "Enterprise"),
        (ConflictPolicy.PREFER_CS, EARLIER, T0, "Gold"),
        (ConflictPolicy.PREFER_CS, None, T0, "Gold"),
        (ConflictPolicy.NEWEST_WINS, EARLIER, T0, "Enterprise"),
        (ConflictPolicy.NEWEST_WINS, LATER, T0, "Gold"),
        (ConflictPolicy.NEWEST_WINS, T0, T0, "Enterprise"),  # tie -> CRM
        (ConflictPolicy.NEWEST_WINS, None, T0, "Enterprise"),  # no CS stamp on record
        (ConflictPolicy.NEWEST_WINS, LATER.isoformat(), T0, "Gold"),  # JSON stamp
        (ConflictPolicy.NEWEST_WINS, "2024-03-01T13:00:00.000Z", T0, "Gold"),
        (ConflictPolicy.NEWEST_WINS, EARLIER, None, "Gold"),  # no CRM stamp
    ],
)
def test_a_true_conflict_is_decided_by_the_policy(
    policy: ConflictPolicy, cs_stamp: Any, crm_modified: datetime | None, expected: str
) -> None:
    """Ledger "Pro"; the CS side made it "Gold", the CRM "Enterprise"."""
    mapping = with_plan(policy)
    existing = {"name": "Acme", "plan": "Gold", "sf_modified_at": EARLIER}
    stamps = {"plan": cs_stamp} if cs_stamp is not None else {}
    result = merge_incoming(
        mapping,
        existing,
        incoming({"name": "Acme", "plan": "Enterprise"}, crm_modified),
        stamps,
        {"Plan__c": agreed("Pro")},
    )
    assert result.values.get("plan", "Gold") == expected
    entry = result.ledger["Plan__c"]
    assert entry.crm_hash == value_hash("Enterprise")  # the CRM value as last pulled, always
    if expected == "Enterprise":
        assert result.action is MergeAction.UPDATE
        assert entry.value_hash == value_hash("Enterprise")
    else:
        assert result.action is MergeAction.UNCHANGED
        assert result.kept_cs == ("plan",)
        assert entry.value_hash == value_hash("Pro")  # still the last agreed value


@pytest.mark.parametrize("stamp", ["garbage", "2024-13-45T99:00:00Z", 3.5, ""])
def test_an_unreadable_stamp_decides_for_neither_side(stamp: Any) -> None:
    mapping = with_plan(ConflictPolicy.NEWEST_WINS)
    existing = {"name": "Acme", "plan": "Gold", "sf_modified_at": EARLIER}
    result = merge_incoming(
        mapping,
        existing,
        incoming({"name": "Acme", "plan": "Enterprise"}, T0),
        {"plan": stamp},
        {"Plan__c": agreed("Pro")},
    )
    assert "plan" not in result.values
    assert result.kept_cs == ()
    assert result.ledger == {}
    (conflict,) = result.conflicts
    assert conflict.crm_field == "Plan__c"
    assert conflict.columns == ("plan",)
    assert "plan" in conflict.message
    assert "neither side" in conflict.message


def test_an_unreadable_stamp_only_matters_on_a_true_conflict() -> None:
    """Echo, CS change and CRM change never read the stamp."""
    mapping = with_plan(ConflictPolicy.NEWEST_WINS)
    for cs, crm, expected in (("Pro", "Pro", "Pro"), ("Gold", "Pro", "Gold"), ("Pro", "X", "X")):
        result = merge_incoming(
            mapping,
            {"plan": cs, "sf_modified_at": EARLIER},
            incoming({"plan": crm}),
            {"plan": "garbage"},
            {"Plan__c": agreed("Pro")},
        )
        assert result.conflicts == ()
        assert result.values.get("plan", cs) == expected


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("cs", "crm", "stamp", "expected_by_policy"),
    [
        # never synced, the CS side never changed it: the CRM wins under every policy
        ("Pro", "Enterprise", None, dict.fromkeys(POLICIES, "Enterprise")),
        # never synced, equal values: agreed, nothing written
        ("Pro", "Pro", LATER, dict.fromkeys(POLICIES, "Pro")),
        # never synced with a CS stamp on record: a conflict
        (
            "Pro",
            "Enterprise",
            LATER,
            {
                ConflictPolicy.PREFER_CRM: "Enterprise",
                ConflictPolicy.PREFER_CS: "Pro",
                ConflictPolicy.NEWEST_WINS: "Pro",
            },
        ),
        (
            "Pro",
            "Enterprise",
            EARLIER,
            {
                ConflictPolicy.PREFER_CRM: "Enterprise",
                ConflictPolicy.PREFER_CS: "Pro",
                ConflictPolicy.NEWEST_WINS: "Enterprise",
            },
        ),
    ],
)
def test_no_ledger_row(
    policy: ConflictPolicy,
    cs: str,
    crm: str,
    stamp: datetime | None,
    expected_by_policy: dict[ConflictPolicy, str],
) -> None:
    mapping = with_plan(policy)
    stamps = {"plan": stamp} if stamp is not None else {}
    result = merge_incoming(
        mapping, {"plan": cs, "sf_modified_at": EARLIER}, incoming({"plan": crm}), stamps, {}
    )
    expected = expected_by_policy[policy]
    assert result.values.get("plan", cs) == expected
    if expected == crm:  # taken or equal: the ledger records the agreement
        assert result.ledger["Plan__c"] == LedgerEntry(value_hash(crm), value_hash(crm), crm)
    else:  # the CS value stays and nothing was ever agreed: no ledger row yet
        assert result.ledger == {}


def test_create_records_the_agreed_value_of_two_way_fields() -> None:
    mapping = with_plan(ConflictPolicy.PREFER_CS)
    result = merge_incoming(mapping, None, incoming({"name": "Acme", "plan": "Pro"}))
    assert result.action is MergeAction.CREATE
    assert result.ledger == {"Plan__c": LedgerEntry(value_hash("Pro"), value_hash("Pro"), "Pro")}
    # crm_to_cs fields have no ledger rows: crmsync never writes them
    assert merge_incoming(ACCOUNT, None, incoming({"name": "Acme"})).ledger == {}


def test_an_echo_with_a_moved_stamp_is_unchanged() -> None:
    """crmsync pushed "Gold"; the CRM answers with a new modification stamp only."""
    mapping = with_plan(ConflictPolicy.NEWEST_WINS)
    existing = {"name": "Acme", "plan": "Gold", "sf_modified_at": EARLIER}
    result = merge_incoming(
        mapping,
        existing,
        incoming({"name": "Acme", "plan": "Gold"}, LATER),
        {"plan": T0.isoformat()},
        {"Plan__c": agreed("Gold")},
    )
    assert result.action is MergeAction.UNCHANGED
    assert result.values == {"sf_modified_at": LATER}
    assert result.ledger == {}


def test_the_handover_columns_follow_the_body() -> None:
    """The structured columns are parsed from Body: they are taken when, and only when, the
    body is (an unpushed CS edit of ``fit`` survives a CRM edit of the Title)."""
    note = salesforce_mappings().object("Note")
    body = "Handover: Acme\nFit: good\nGoals: a"
    cs_row = {
        "title": "Acme",
        "body": body,
        "fit": "bad",  # changed on the CS side, not pushed yet
        "goals": ["a"],
        "sf_modified_at": EARLIER,
    }
    pulled = {"title": "Acme v2", "body": body, "fit": "good", "goals": ["a"]}
    ledger = {"Body": agreed(body), "Title": agreed("Acme")}
    result = merge_incoming(note, cs_row, incoming(pulled, LATER), {"fit": T0}, ledger)
    assert result.values == {"title": "Acme v2", "sf_modified_at": LATER}
    assert result.kept_cs == ("fit",)
    assert set(result.ledger) == {"Title"}
    # The CRM edits the body: it wins over the older CS edit (newest_wins), columns with it.
    new_body = "Handover: Acme\nFit: stretch\nGoals: a; b"
    pulled = {"title": "Acme", "body": new_body, "fit": "stretch", "goals": ["a", "b"]}
    result = merge_incoming(note, cs_row, incoming(pulled, LATER), {"fit": T0}, ledger)
    assert result.values == {
        "body": new_body,
        "fit": "stretch",
        "goals": ["a", "b"],
        "sf_modified_at": LATER,
    }
    # ... but not over a newer one.
    result = merge_incoming(note, cs_row, incoming(pulled, T0), {"fit": LATER}, ledger)
    assert result.values == {"sf_modified_at": T0}
    assert set(result.kept_cs) == {"body", "fit", "goals"}


@pytest.mark.parametrize(
    ("policy", "crm_at", "cs_at", "expected"),
    [
        (ConflictPolicy.PREFER_CRM, None, None, Side.CRM),
        (ConflictPolicy.PREFER_CRM, T0, LATER, Side.CRM),
        (ConflictPolicy.PREFER_CS, LATER, T0, Side.CS),
        (ConflictPolicy.NEWEST_WINS, T0, None, Side.CRM),
        (ConflictPolicy.NEWEST_WINS, None, T0, Side.CS),
        (ConflictPolicy.NEWEST_WINS, LATER, T0, Side.CRM),
        (ConflictPolicy.NEWEST_WINS, T0, LATER, Side.CS),
        (ConflictPolicy.NEWEST_WINS, T0, T0, Side.CRM),
    ],
)
def test_resolve_conflict(
    policy: ConflictPolicy, crm_at: datetime | None, cs_at: datetime | None, expected: Side
) -> None:
    assert resolve_conflict(policy, crm_at, cs_at) is expected


def test_newest_cs_stamp() -> None:
    stamps = {"a": EARLIER.isoformat(), "b": LATER, "c": None}
    assert newest_cs_stamp(stamps, ["a", "b", "c", "d"]) == LATER
    assert newest_cs_stamp(stamps, ["c", "d"]) is None
    with pytest.raises(UnreadableStampError) as caught:
        newest_cs_stamp({"a": "soon"}, ["a"])
    assert caught.value.column == "a"


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


def test_default_columns_without_field_mapping_take_the_crm_side() -> None:
    # "currency" comes from ObjectMapping.defaults, no FieldMapping is inbound for it
    mapping = replace(ACCOUNT, fields=(FieldMapping("Name", "name"),))
    result = merge_incoming(mapping, {"currency": None}, incoming({"currency": "EUR"}))
    assert result.values["currency"] == "EUR"
