"""Tier rules (domain.md 3.2, 3.3): each table row's id names the section and step it checks."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.config import ScoringConfig, TieringConfig
from app.domain.tier import (
    ClosedWonDeal,
    TierInput,
    TierOverride,
    compute_tier,
    growth_focus,
    key_accounts_warning,
    key_review_due_on,
    resolve_arr,
    tier_for_arr,
)
from app.domain.values import add_months, tier_rank

TODAY = date(2026, 12, 6)
D = Decimal


@pytest.mark.parametrize(
    ("arr", "tier"),
    [
        pytest.param(D(0), "tech", id="3.2-zero-tech"),
        pytest.param(D("4999.99"), "tech", id="3.2-below-5000-tech-001:439"),
        pytest.param(D(5000), "low", id="3.2-5000-low-001:439"),
        pytest.param(D(24999), "low", id="3.2-24999-low"),
        pytest.param(D(25000), "high", id="3.2-25000-high"),
        pytest.param(D(99999), "high", id="3.2-99999-high"),
        pytest.param(D(100000), "key", id="3.2-100000-key"),
    ],
)
def test_arr_bands(arr: Decimal, tier: str) -> None:
    assert tier_for_arr(arr) == tier


@pytest.mark.parametrize(
    ("inp", "arr", "source"),
    [
        pytest.param(TierInput(arr=D(30000), mrr=D(10)), D(30000), "arr", id="3.3.1-arr-first"),
        pytest.param(TierInput(mrr=D(500)), D(6000), "mrr", id="3.3.1-mrr-times-12-domain.md-0"),
        pytest.param(
            TierInput(last_deal=ClosedWonDeal(D(24000), TODAY, 24)),
            D(12000),
            "deal",
            id="3.3.1-deal-annualised",
        ),
        pytest.param(
            TierInput(last_deal=ClosedWonDeal(D(8000), TODAY)),
            D(8000),
            "deal",
            id="3.3.1-deal-default-12-months",
        ),
        pytest.param(TierInput(), None, None, id="3.3.1-unknown"),
    ],
)
def test_resolve_arr(inp: TierInput, arr: Decimal | None, source: str | None) -> None:
    assert resolve_arr(inp) == (arr, source)


def test_unknown_arr_is_low_with_flag() -> None:  # 3.3 step 1
    r = compute_tier(TierInput(), TODAY)
    assert r.tier == "low"
    assert "arr_missing" in r.flags
    assert r.change is not None
    assert r.change.new == "low"


@pytest.mark.parametrize(
    ("arr", "potential", "tier", "flags"),
    [
        pytest.param(D(4000), D(20000), "low", ("potential_step_up",), id="3.3.3-one-step-up"),
        pytest.param(D(4000), D(80000), "low", ("potential_step_up",), id="3.3.3-at-most-one-step"),
        pytest.param(D(4000), D(6000), "tech", (), id="3.3.3-weight-0.5"),
        pytest.param(
            D(30000), D(300000), "high", ("key_candidate",), id="3.3.3-never-key-flag-candidate"
        ),
        pytest.param(
            D(20000),
            D(200000),
            "high",
            ("key_candidate", "potential_step_up"),
            id="3.3.3-step-to-high-and-key-candidate",
        ),
        pytest.param(D(150000), D(100), "key", (), id="3.3.3-potential-never-lowers"),
    ],
)
def test_potential(arr: Decimal, potential: Decimal, tier: str, flags: tuple[str, ...]) -> None:
    r = compute_tier(TierInput(arr=arr, potential_arr=potential), TODAY)
    assert r.tier == tier
    assert tuple(sorted(r.flags)) == tuple(sorted(flags))


def test_potential_can_make_key_when_allowed() -> None:  # 3.3 step 3, 10 potential_can_make_key
    cfg = ScoringConfig(tiering=TieringConfig(potential_can_make_key=True))
    assert compute_tier(TierInput(arr=D(30000), potential_arr=D(300000)), TODAY, cfg).tier == "key"


@pytest.mark.parametrize(
    ("arr", "potential", "focus"),
    [
        pytest.param(D(2000), D(10000), "sales", id="3.3.4-20pct-sales-003:660"),
        pytest.param(D(2100), D(10000), "balanced", id="3.3.4-21pct-balanced"),
        pytest.param(D(8900), D(10000), "balanced", id="3.3.4-89pct-balanced"),
        pytest.param(D(9000), D(10000), "care", id="3.3.4-90pct-care-003:660"),
        pytest.param(D(9000), None, None, id="3.3.4-no-potential"),
        pytest.param(None, D(10000), None, id="3.3.4-no-arr"),
        pytest.param(D(10), D(0), None, id="3.3.4-zero-potential"),
    ],
)
def test_growth_focus(arr: Decimal | None, potential: Decimal | None, focus: str | None) -> None:
    assert growth_focus(arr, potential) == focus


def test_strategic_is_key_at_any_arr() -> None:  # 3.3 step 5
    r = compute_tier(TierInput(arr=D(1000), strategic_account=True), TODAY)
    assert r.tier == "key"
    assert r.base_tier == "tech"
    assert "strategic" in r.flags


@pytest.mark.parametrize(
    ("override", "tier", "flag"),
    [
        pytest.param(
            TierOverride("tech", "pilot, pool-served", TODAY - timedelta(days=10)),
            "tech",
            "override",
            id="3.3.6-override-wins",
        ),
        pytest.param(
            TierOverride("key", "reference customer", TODAY - timedelta(days=365)),
            "key",
            "override",
            id="3.3.6-override-365d-still-active",
        ),
        pytest.param(
            TierOverride("key", "reference customer", TODAY - timedelta(days=366)),
            "high",
            "override_expired",
            id="3.3.6-override-expires-after-365d",
        ),
        pytest.param(
            TierOverride("low", "contract dispute", TODAY - timedelta(days=400), TODAY),
            "low",
            "override",
            id="3.3.6-explicit-until",
        ),
    ],
)
def test_override(override: TierOverride, tier: str, flag: str) -> None:
    r = compute_tier(TierInput(arr=D(50000), strategic_account=False, override=override), TODAY)
    assert r.tier == tier
    assert r.computed_tier == "high"
    assert flag in r.flags


def test_override_needs_a_reason() -> None:  # 3.3 step 6
    with pytest.raises(ValueError, match="reason"):
        TierOverride("key", "  ", TODAY)


def test_override_beats_strategic() -> None:  # 3.3 step 6: wins over steps 1-5
    o = TierOverride("high", "exec decision", TODAY)
    r = compute_tier(TierInput(arr=D(1000), strategic_account=True, override=o), TODAY)
    assert (r.tier, r.computed_tier) == ("high", "key")


@pytest.mark.parametrize(
    ("current", "arr", "tier", "held"),
    [
        pytest.param("high", D(22500), "high", True, id="3.3.7-90pct-of-bound-held"),
        pytest.param("high", D(22499), "low", False, id="3.3.7-below-90pct-demoted"),
        pytest.param("key", D(90000), "key", True, id="3.3.7-key-held"),
        pytest.param("key", D(89999), "high", False, id="3.3.7-key-demoted"),
        pytest.param("low", D(100000), "key", False, id="3.3.7-promote-at-once"),
        pytest.param("high", D(1000), "tech", False, id="3.3.7-demote-several-steps"),
        pytest.param("high", None, "high", True, id="3.3.7-missing-arr-never-demotes"),
    ],
)
def test_hysteresis(current: str, arr: Decimal | None, tier: str, held: bool) -> None:
    r = compute_tier(TierInput(arr=arr, current_tier=current), TODAY)  # type: ignore[arg-type]
    assert r.tier == tier
    assert ("demotion_held" in r.flags) is held


def test_potential_does_not_hold_key() -> None:  # 3.3 steps 3 and 7
    r = compute_tier(TierInput(arr=D(50000), potential_arr=D(400000), current_tier="key"), TODAY)
    assert r.tier == "high"


def test_change_is_a_value_for_account_events() -> None:  # issue 18 item 3
    r = compute_tier(TierInput(arr=D(30000), current_tier="low"), TODAY)
    assert r.change is not None
    assert r.change.kind == "tier_changed"
    assert r.change.payload() == {
        "old": "low",
        "new": "high",
        "reason": "ARR 30000 from subscriptions",
    }
    assert compute_tier(TierInput(arr=D(30000), current_tier="high"), TODAY).change is None


@pytest.mark.parametrize(
    ("count", "warns"),
    [
        pytest.param(20, False, id="3.3.8-20-ok-003:360"),
        pytest.param(21, True, id="3.3.8-21-warns"),
    ],
)
def test_key_max_warning(count: int, warns: bool) -> None:
    assert (key_accounts_warning(count) is not None) is warns


def test_key_review_every_365_days() -> None:  # 3.3 step 8 (003:372)
    assert key_review_due_on(date(2026, 1, 1), None) == date(2027, 1, 1)
    assert key_review_due_on(date(2020, 1, 1), date(2026, 3, 1)) == date(2027, 3, 1)


@pytest.mark.parametrize(
    ("d", "months", "expected"),
    [
        pytest.param(date(2026, 1, 31), 1, date(2026, 2, 28), id="clamp-to-month-end"),
        pytest.param(date(2026, 11, 15), 14, date(2028, 1, 15), id="year-roll"),
    ],
)
def test_add_months(d: date, months: int, expected: date) -> None:
    assert add_months(d, months) == expected


# --- properties ------------------------------------------------------------------------------

money = st.decimals(min_value=0, max_value=10_000_000, places=2, allow_nan=False)
tiers = st.sampled_from(["tech", "low", "high", "key"])


@settings(max_examples=200, deadline=None)
@given(money, money)
def test_property_more_arr_never_lowers_the_tier(a: Decimal, b: Decimal) -> None:
    lo, hi = sorted((a, b))
    assert tier_rank(compute_tier(TierInput(arr=lo), TODAY).tier) <= tier_rank(
        compute_tier(TierInput(arr=hi), TODAY).tier
    )


@settings(max_examples=200, deadline=None)
@given(money, st.one_of(st.none(), money), st.one_of(st.none(), tiers))
def test_property_potential_at_most_one_step_never_key(
    arr: Decimal, potential: Decimal | None, current: str | None
) -> None:
    r = compute_tier(TierInput(arr=arr, potential_arr=potential), TODAY)
    assert tier_rank(r.tier) - tier_rank(r.base_tier) <= 1
    if r.base_tier != "key":
        assert r.tier != "key"
    # hysteresis only ever holds a tier up, never pushes it down
    held = compute_tier(TierInput(arr=arr, potential_arr=potential, current_tier=current), TODAY)  # type: ignore[arg-type]
    assert tier_rank(held.tier) >= tier_rank(r.tier)
