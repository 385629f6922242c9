"""The push planner (ADR 0006): the three-way table per field, creates, and its speed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

import pytest

from app.crm.writes import Association, WriteKind, WriteTuning
from app.mappers.defaults import hubspot_mappings, salesforce_mappings
from app.mappers.ledger import LedgerEntry, value_hash
from app.mappers.push_plan import LedgerIndex, Reason, plan_push
from app.mappers.spec import ConflictPolicy, Direction, FieldMapping, ObjectMapping

TODAY = date(2026, 12, 6)
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def two_way(policy: ConflictPolicy) -> ObjectMapping:
    """An account mapping with one ``both`` field under ``policy`` and one write-back."""
    return ObjectMapping(
        crm="salesforce",
        crm_object="Account",
        cs_table="accounts",
        id_field="Id",
        modified_field="SystemModstamp",
        deleted_field="IsDeleted",
        fields=(
            FieldMapping("Plan__c", "plan", "string", Direction.BOTH, policy),
            FieldMapping("Health_Score__c", "health_score", "integer", Direction.CS_TO_CRM),
        ),
        defaults=MappingProxyType({}),
    )


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1,
        "sf_id": "001A",
        "crmsync_id": None,
        "plan": "gold",
        "health_score": 80,
        "field_stamps": {},
        "sf_modified_at": T0,
    }
    base.update(values)
    return base


H = value_hash


# (case, ledger entry of Plan__c (None: no row), CS plan, expected outcome, expected reason)
PLAN_CASES = [
    ("never pushed", None, "gold", "write", Reason.NEVER_PUSHED),
    ("unchanged", LedgerEntry(H("gold"), H("gold"), "gold"), "gold", "unchanged", None),
    ("unchanged, never pulled", LedgerEntry(H("gold"), None, "gold"), "gold", "unchanged", None),
    ("cs changed, crm unknown", LedgerEntry(H("gold"), None, "gold"), "silver", "write",
     Reason.CS_CHANGED),
    ("cs changed, crm as agreed", LedgerEntry(H("gold"), H("gold"), "gold"), "silver", "write",
     Reason.CS_CHANGED),
    ("both changed the same way", LedgerEntry(H("gold"), H("silver"), "gold"), "silver",
     "agreed", None),
    ("crm changed only (pull not yet run)", LedgerEntry(H("gold"), H("bronze"), "gold"), "gold",
     "unchanged", None),
    ("conflict, prefer_crm", LedgerEntry(H("gold"), H("bronze"), "gold"), "silver", "skipped",
     None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "entry", "cs_value", "outcome", "reason"), PLAN_CASES, ids=[c[0] for c in PLAN_CASES]
)
def test_three_way_table(
    case: str, entry: LedgerEntry | None, cs_value: str, outcome: str, reason: Reason | None
) -> None:
    mapping = two_way(ConflictPolicy.PREFER_CRM)
    ledger = {("001A", "Health_Score__c"): LedgerEntry(H(80), None, 80)}
    if entry is not None:
        ledger[("001A", "Plan__c")] = entry
    plan = plan_push(mapping, [row(plan=cs_value)], ledger, today=TODAY)
    assert not plan.errors
    if outcome == "write":
        (record,) = plan.records
        (change,) = record.changes
        assert (change.crm_field, change.new, change.reason) == ("Plan__c", cs_value, reason)
        assert change.old == (entry.value if entry else None)
        assert change.new_hash == H(cs_value)
        assert record.kind is WriteKind.UPDATE
        assert record.crm_id == "001A"
        assert record.to_op().fields == {"Plan__c": cs_value}
    else:
        assert plan.records == []
        assert plan.unchanged == 1
    assert [a.crm_field for a in plan.agreed] == (["Plan__c"] if outcome == "agreed" else [])
    assert [s.crm_field for s in plan.skipped] == (["Plan__c"] if outcome == "skipped" else [])


def _conflict_ledger() -> dict[tuple[str, str], LedgerEntry]:
    # agreed gold, the CRM since pulled as bronze, the CS side holds something else
    return {
        ("001A", "Plan__c"): LedgerEntry(H("gold"), H("bronze"), "gold"),
        ("001A", "Health_Score__c"): LedgerEntry(H(80), H(80), 80),
    }


# (case, policy, CS value, CS field stamp, CRM modification stamp, outcome)
CONFLICT_CASES = [
    ("prefer_cs keeps the CS value", ConflictPolicy.PREFER_CS, "silver", None, T0, "write"),
    ("prefer_cs: an empty CS value is filled by the CRM", ConflictPolicy.PREFER_CS, None, None,
     T0, "skipped"),
    ("newest_wins: CS newer", ConflictPolicy.NEWEST_WINS, "silver", T1.isoformat(), T0, "write"),
    ("newest_wins: CRM newer", ConflictPolicy.NEWEST_WINS, "silver", T0.isoformat(), T1,
     "skipped"),
    ("newest_wins: a tie goes to the CRM", ConflictPolicy.NEWEST_WINS, "silver", T0.isoformat(),
     T0, "skipped"),
    ("newest_wins: no CS stamp, the CRM wins", ConflictPolicy.NEWEST_WINS, "silver", None, T0,
     "skipped"),
    ("newest_wins: no CRM stamp, the CS wins", ConflictPolicy.NEWEST_WINS, "silver",
     T0.isoformat(), None, "write"),
    ("newest_wins: a garbage CS stamp decides nothing", ConflictPolicy.NEWEST_WINS, "silver",
     "yesterday-ish", T0, "error"),
    ("newest_wins: a garbage CRM stamp decides nothing", ConflictPolicy.NEWEST_WINS, "silver",
     T0.isoformat(), "soon", "error"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "policy", "cs_value", "cs_stamp", "crm_stamp", "outcome"),
    CONFLICT_CASES,
    ids=[c[0] for c in CONFLICT_CASES],
)
def test_conflicts_follow_the_policy(
    case: str,
    policy: ConflictPolicy,
    cs_value: str | None,
    cs_stamp: str | None,
    crm_stamp: Any,
    outcome: str,
) -> None:
    stamps = {"plan": cs_stamp} if cs_stamp is not None else {}
    r = row(plan=cs_value, field_stamps=stamps, sf_modified_at=crm_stamp)
    plan = plan_push(two_way(policy), [r], _conflict_ledger(), today=TODAY)
    if outcome == "write":
        (record,) = plan.records
        (change,) = record.changes
        assert change.reason is Reason.CONFLICT_CS_WINS
        assert change.new == cs_value
        assert change.old == "gold"
    else:
        assert plan.records == []
        assert plan.unchanged == 1
    if outcome == "skipped":
        assert [(s.crm_field, s.reason) for s in plan.skipped] == [
            ("Plan__c", "conflict: the CRM wins")
        ]
    if outcome == "error":
        (error,) = plan.errors
        assert error.category == "conflict"
        assert error.crm_field == "Plan__c"
        assert "does not parse" in error.message
        assert error.record_id == "001A"
    else:
        assert plan.errors == []


def test_only_changed_fields_are_sent_and_records_share_the_plan() -> None:
    mapping = salesforce_mappings().object("Account")
    base = {
        "id": 1,
        "sf_id": "001A",
        "health_score": 70,
        "health_band": "yellow",
        "health_trend": "down",
        "health_reasons": "usage dropped",
        "tier": "high",
        "renewal_on": date(2027, 1, 5),
        "renewal_risk": "medium",
        "field_stamps": {},
    }
    ledger: dict[tuple[str, str], LedgerEntry] = {}
    first = plan_push(mapping, [base], ledger, today=TODAY)
    (record,) = first.records
    sent = record.to_op().fields
    assert sent["Health_Score__c"] == 70
    assert sent["Renewal_Date__c"] == "2027-01-05"
    assert sent["Days_To_Renewal__c"] == 30  # derived: days from ``today``
    # The CRM confirmed everything: the ledger holds what was sent.
    for change in record.changes:
        ledger[("001A", change.crm_field)] = LedgerEntry(
            change.new_hash, change.new_hash, change.new
        )
    assert plan_push(mapping, [base], ledger, today=TODAY).records == []
    # A day later only the derived field moves; two records with different changed fields.
    other = {**base, "id": 2, "sf_id": "001B"}
    for change in record.changes:
        ledger[("001B", change.crm_field)] = LedgerEntry(change.new_hash, None, change.new)
    plan = plan_push(mapping, [base, {**other, "tier": "key"}], ledger, today=date(2026, 12, 7))
    assert [r.to_op().fields for r in plan.records] == [
        {"Days_To_Renewal__c": 29},
        {"Tier__c": "key", "Days_To_Renewal__c": 29},
    ]
    assert plan.planned_calls("salesforce") == 1
    assert plan.records[1].changes[0].old == "high"


def test_equal_values_of_other_types_are_unchanged() -> None:
    mapping = hubspot_mappings().object("companies")
    r = {"id": 1, "hs_id": "9", "health_score": 70, "field_stamps": {}}
    ledger = {("9", "crmsync_health_score"): LedgerEntry(H(70), None, "70")}
    plan = plan_push(mapping, [r], ledger, today=TODAY)
    # only the fields present in the ledger are settled; the rest were never pushed
    changed = {c.crm_field for rec in plan.records for c in rec.changes}
    assert "crmsync_health_score" not in changed
    # the other write-backs are empty and were never agreed: nothing to write (no clearing "")
    assert plan.records == []
    assert plan.unchanged == 1


def test_rows_without_a_crm_id_are_upserted_on_their_crmsync_id() -> None:
    mapping = two_way(ConflictPolicy.NEWEST_WINS)
    rows = [row(id=5, sf_id=None, crmsync_id="c-5"), row(id=6, sf_id=None, crmsync_id=None)]
    plan = plan_push(mapping, rows, {}, today=TODAY)
    assert [(r.kind, r.row_id, r.crmsync_id, r.crm_id) for r in plan.records] == [
        (WriteKind.UPSERT, 5, "c-5", None),
        (WriteKind.UPSERT, 6, None, None),
    ]
    op = plan.records[1].with_crmsync_id("c-6").to_op()
    assert (op.external_id, op.fields) == ("c-6", {"Plan__c": "gold", "Health_Score__c": 80})
    assert all(c.reason is Reason.NEVER_PUSHED for c in plan.records[0].changes)
    assert plan.planned_calls("salesforce") == 1
    assert plan.upserts == 2


def test_create_extras_and_rows_waiting_for_their_parent() -> None:
    mapping = two_way(ConflictPolicy.NEWEST_WINS)

    def creates(r: Mapping[str, Any]) -> tuple[dict[str, Any], list[Association]] | None:
        if r.get("parent") is None:
            return None
        return {"ParentId": r["parent"]}, [Association("companies", r["parent"], 190)]

    rows = [row(id=5, sf_id=None, parent="001P"), row(id=6, sf_id=None)]
    plan = plan_push(mapping, rows, {}, today=TODAY, creates=creates)
    (record,) = plan.records
    op = record.to_op()
    assert op.fields["ParentId"] == "001P"
    assert op.associations == (Association("companies", "001P", 190),)
    assert [(s.row_id, s.reason) for s in plan.skipped] == [(6, "waiting: no parent id in the CRM")]


def test_a_value_that_does_not_convert_is_an_error_not_a_write() -> None:
    mapping = two_way(ConflictPolicy.PREFER_CRM)
    plan = plan_push(mapping, [row(health_score="lots")], {}, today=TODAY)
    (error,) = plan.errors
    assert (error.category, error.crm_field, error.record_id) == (
        "validation",
        "Health_Score__c",
        "001A",
    )
    assert [c.crm_field for c in plan.records[0].changes] == ["Plan__c"]


@pytest.mark.parametrize(
    ("crm", "updates", "upserts", "calls"),
    [
        ("salesforce", 0, 0, 0),
        ("salesforce", 200, 0, 1),
        ("salesforce", 201, 1, 3),
        ("salesforce", 2_001, 0, 6),
        ("hubspot", 250, 0, 3),
        ("hubspot", 100, 100, 2),
    ],
)
def test_planned_calls_follow_the_chunking(
    crm: str, updates: int, upserts: int, calls: int
) -> None:
    mapping = two_way(ConflictPolicy.PREFER_CRM)
    rows = [row(id=i, sf_id=f"001{i}") for i in range(updates)]
    rows += [row(id=10_000 + i, sf_id=None) for i in range(upserts)]
    plan = plan_push(mapping, rows, {}, today=TODAY)
    assert plan.planned_calls(crm, WriteTuning()) == calls


def test_planning_100k_unchanged_accounts_finds_nothing_to_write() -> None:
    """At the benchmark's size nothing is planned; its time (target 1 s) is measured by
    ``make bench``, not here, since the machines are shared. The ledger comes as the store
    builds it."""
    mapping = salesforce_mappings().object("Account")
    bands, trends, risks = ("green", "yellow", "red"), ("up", "flat", "down"), ("low", "high")
    templates = [
        {
            "health_score": k * 3,
            "health_band": bands[k % 3],
            "health_trend": trends[k % 3],
            "health_reasons": f"usage {k}",
            "tier": "high",
            "renewal_on": date(2027, 1, 1 + k),
            "renewal_risk": risks[k % 2],
            "field_stamps": {},
        }
        for k in range(28)
    ]
    first = plan_push(
        mapping,
        [{**t, "id": k, "sf_id": f"T{k}"} for k, t in enumerate(templates)],
        {},
        today=TODAY,
    )
    agreed = {r.row_id: r.changes for r in first.records}
    rows = [{**templates[i % 28], "id": i, "sf_id": f"001{i:012d}"} for i in range(100_000)]
    ledger = LedgerIndex()
    for i in range(100_000):
        for change in agreed[i % 28]:
            entry = LedgerEntry(change.new_hash, change.new_hash, change.new)
            ledger.add(f"001{i:012d}", change.crm_field, entry)
    assert len(ledger) == 800_000
    plan = plan_push(mapping, rows, ledger, today=TODAY)
    assert plan.records == []
    assert plan.unchanged == 100_000


def test_a_ledger_index_is_the_flat_mapping_grouped() -> None:
    flat = {
        ("a", "F1"): LedgerEntry("h1"),
        ("a", "F2"): LedgerEntry("h2"),
        ("b", "F1"): LedgerEntry("h3"),
    }
    index = LedgerIndex.of(flat)
    assert dict(index) == flat
    assert index[("a", "F2")] == LedgerEntry("h2")
    assert LedgerIndex.of(index) is index
