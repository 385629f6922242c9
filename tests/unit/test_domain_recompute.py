"""``app.domain.recompute``: one account's facts to its columns, changes, snapshot and events.
Each row names the rule it checks (domain.md section or docs/recompute.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.config import DEFAULT_CONFIG
from app.domain.recompute import (
    OUTPUT_COLUMNS,
    AccountFacts,
    Feeds,
    Opp,
    TicketAggregate,
    UsageRow,
    _round2,
    churned_on,
    compute_account,
    drop_window,
    health_input,
)

AS_OF = date(2026, 12, 6)
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
BOTH = Feeds(support=True, touchpoints=True)


def d(days_ago: int) -> date:
    return AS_OF - timedelta(days=days_ago)


def facts(**kw: Any) -> AccountFacts:
    stored = {
        "arr": Decimal("30000"),
        "licensed_seats": 20,
        "customer_since_on": d(400),
        "contract_end_on": AS_OF + timedelta(days=200),
        **kw.pop("stored", {}),
    }
    return AccountFacts(id=1, stored=stored, **kw)


def won(days_ago: int, type_: str = "new_business") -> Opp:
    return Opp(type_, True, True, Decimal("1000"), d(days_ago))


def lost(days_ago: int) -> Opp:
    return Opp("renewal", True, False, None, d(days_ago))


@pytest.mark.parametrize(
    ("rule", "stored", "opps", "expected"),
    [
        ("2: churned_at is an explicit end", {"churned_at": NOW - timedelta(days=3)}, [], d(3)),
        ("2: a renewal lost after the last win", {}, [won(400), lost(10)], d(10)),
        ("2: a renewal lost before the last win is history", {}, [lost(400), won(10)], None),
        ("2: won back after the churn", {"churned_at": NOW - timedelta(days=90)}, [won(5)], None),
        ("2: silence is never churn", {}, [won(900)], None),
    ],
)
def test_churn_only_from_an_explicit_end(
    rule: str, stored: dict[str, Any], opps: list[Opp], expected: date | None
) -> None:
    assert churned_on(facts(stored=stored, opportunities=opps)) == expected, rule


@pytest.mark.parametrize(
    ("rule", "usage_days", "expected_prev"),
    [
        ("4.3 usage_drop: the snapshot ~30 days before the latest", [31, 24, 1], 40),
        ("4.6 window: 23-37 days before the latest, else none", [10, 1], None),
        ("ties go to the older snapshot", [38, 24, 1], 40),
    ],
)
def test_previous_usage_for_the_drop(
    rule: str, usage_days: list[int], expected_prev: int | None
) -> None:
    rows = [
        UsageRow(d(days), 40 if days > 1 else 20, 200, 50, 3, 5, d(days)) for days in usage_days
    ]
    out = compute_account(facts(usage=rows), AS_OF, NOW, BOTH)
    usage = out.health.component("usage")
    assert usage.inputs.get("prev_active_users_30d") == expected_prev, rule
    assert ("usage_drop" in usage.flags) is (expected_prev is not None), rule


@given(
    days=st.lists(st.integers(0, 60), min_size=1, max_size=13, unique=True),
    users=st.lists(st.integers(0, 60), min_size=13, max_size=13),
)
def test_the_usage_rows_the_read_keeps_give_the_same_signals(
    days: list[int], users: list[int]
) -> None:
    """The read keeps of an account's earlier usage snapshots only those within
    ``drop_window`` of the latest (``load_chunk``): the signals, the drop's comparison
    included (4.3 usage_drop, ties to the older), must be those of all the snapshots."""
    rows = [
        UsageRow(d(n), users[i], users[i] * 4, 50, 3, 8, d(n))
        for i, n in enumerate(sorted(days, reverse=True))  # oldest first, as read
    ]
    lo, hi = drop_window(rows[-1].observed_on, DEFAULT_CONFIG)
    kept = [r for r in rows[:-1] if lo <= r.observed_on <= hi] + [rows[-1]]
    full = health_input(facts(usage=rows), "low", AS_OF, BOTH, DEFAULT_CONFIG).usage
    trimmed = health_input(facts(usage=kept), "low", AS_OF, BOTH, DEFAULT_CONFIG).usage
    assert full == trimmed


@pytest.mark.parametrize(
    ("rule", "feeds", "status"),
    [
        ("4.3: no touchpoint feed: engagement missing, never 0", Feeds(), "missing"),
        ("a feed without a touch for the account is a fact: no touch", BOTH, "ok"),
    ],
)
def test_engagement_needs_the_feed(rule: str, feeds: Feeds, status: str) -> None:
    out = compute_account(facts(), AS_OF, NOW, feeds)
    assert out.health.component("engagement").status == status, rule
    assert out.health.component("support").status == status, rule


@pytest.mark.parametrize(
    ("rule", "received_days_ago", "status", "flag"),
    [
        ("4.4: billing delivered within 30 days", 3, "ok", None),
        ("4.4: billing older than 30 days is stale, not 0", 40, "stale", "stale_billing"),
    ],
)
def test_payment_staleness_from_the_last_invoice_received(
    rule: str, received_days_ago: int, status: str, flag: str | None
) -> None:
    f = facts(invoices_total=2, oldest_open_invoice_due_on=d(70))
    f.billing_received_on = d(received_days_ago)
    payment = compute_account(f, AS_OF, NOW, BOTH).health.component("payment")
    assert payment.status == status, rule
    if flag:
        assert flag in payment.flags, rule
    else:
        assert payment.value == 0.0, rule  # 70 days overdue


def test_first_computation_changes_every_set_column_and_a_rerun_none() -> None:
    """docs/recompute.md: only columns whose value changed are stamped; recomputing the same
    facts over the values it wrote changes nothing and emits nothing."""
    f = facts(tickets=TicketAggregate(tickets_30d=1, tickets_90d=1, last_ticket_on=d(3)))
    first = compute_account(f, AS_OF, NOW, BOTH)
    assert set(first.changed) == {c for c in OUTPUT_COLUMNS if first.values[c] is not None}
    kinds = [k for k, _ in first.events]
    assert kinds == ["tier_changed", "lifecycle_stage_entered"]  # no band change from nothing
    assert first.values["lifecycle_entered_at"] == NOW

    again = compute_account(
        replace(f, stored={**f.stored, **first.values}), AS_OF, NOW + timedelta(hours=1), BOTH
    )
    assert again.changed == ()
    assert again.events == ()
    assert again.values["lifecycle_entered_at"] == NOW  # kept, not re-entered


def test_a_band_change_is_an_event_with_old_new_and_reasons() -> None:
    """4.6: health_band_changed (old, new, reasons)."""
    f = facts(stored={"health_band": "green", "tier": "high"})
    f.usage.append(UsageRow(d(1), 0, 0, 50, 0, 5, d(40)))  # dormant
    out = compute_account(f, AS_OF, NOW, BOTH)
    (payload,) = [p for k, p in out.events if k == "health_band_changed"]
    assert payload["old"] == "green"
    assert payload["new"] == out.health.band != "green"
    assert "dormant" in payload["reasons"]
    assert "health_band" in out.changed


def test_snapshot_carries_components_with_inputs_and_the_model_version() -> None:
    f = facts()
    f.usage.append(UsageRow(d(1), 15, 150, 20, 3, 5, d(1)))
    out = compute_account(f, AS_OF, NOW, BOTH)
    snap = out.snapshot
    assert (snap["computed_on"], snap["computed_at"]) == (AS_OF, NOW)
    assert snap["model_version"] == out.health.model_version
    usage = snap["components"]["components"]["usage"]
    assert usage["inputs"]["active_users_30d"] == 15
    assert usage["weight"] == 30
    assert [r["code"] for r in snap["components"]["reasons"]] == [
        r.code for r in out.health.reasons
    ]


def test_a_deal_gives_the_term_and_the_tier_when_no_arr() -> None:
    """3.3 step 1 (ARR from the last closed-won deal) and 5.1 step 2 (the term from it)."""
    deal = Opp("new_business", True, True, Decimal("12000"), d(100), None, 12)
    f = facts(stored={"arr": None, "contract_end_on": None}, opportunities=[deal])
    out = compute_account(f, AS_OF, NOW, BOTH)
    assert out.tier.arr == Decimal("12000")
    assert out.values["tier"] == "low"
    assert out.values["renewal_on"] == d(100) + timedelta(days=364)
    assert out.renewal.source == "term"


@given(st.one_of(st.floats(allow_nan=False), st.integers(-(10**6), 10**6)))
def test_snapshot_rounding_is_round_to_two_places(x: float) -> None:
    """The snapshot's values and sub-scores: ``round(x, 2)``, whole-number floats kept as they
    are without the decimal conversion (docs/benchmarks.md, "Health recompute")."""
    got = _round2(x)
    assert (type(got), got) == (type(round(x, 2)), round(x, 2))


def test_values_name_every_output_column_in_order() -> None:
    """The changed columns are read off ``values`` in its order: that of OUTPUT_COLUMNS."""
    out = compute_account(facts(), AS_OF, NOW, BOTH)
    assert tuple(out.values) == OUTPUT_COLUMNS
