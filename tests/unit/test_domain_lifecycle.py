"""Lifecycle rules (domain.md 2, 7.4): each table row's id names the section it checks."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.lifecycle import (
    PRECEDENCE,
    LifecycleFacts,
    OnboardingProgress,
    StageEntry,
    compute_lifecycle,
    onboarding_exit_met,
)

TODAY = date(2026, 12, 6)


def ago(n: int) -> date:
    return TODAY - timedelta(days=n)


DONE = OnboardingProgress(True, True, True, True, active_seat_share=0.5)
OPEN = OnboardingProgress(True, False, True, False, active_seat_share=0.3)


def facts(**kw: object) -> LifecycleFacts:
    base: dict[str, object] = {"tier": "high"}
    base.update(kw)
    return LifecycleFacts(**base)  # type: ignore[arg-type]


def hist(*entries: tuple[str, int]) -> tuple[StageEntry, ...]:
    return tuple(StageEntry(s, ago(d)) for s, d in entries)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("history", "f", "stage"),
    [
        pytest.param((), facts(trial_active=True), "trial", id="2-trial-recorded"),
        pytest.param(hist(("trial", 20)), facts(), None, id="2-trial-ended-unsold-not-a-customer"),
        pytest.param(
            hist(("trial", 20)),
            facts(last_close_on=ago(1), onboarding=OPEN),
            "onboarding",
            id="2-trial-closed-won-onboarding",
        ),
        pytest.param(
            hist(("onboarding", 40)),
            facts(last_close_on=ago(40), onboarding=DONE),
            "adoption",
            id="2-onboarding-exit-criteria-7.4-adoption",
        ),
        pytest.param(
            hist(("onboarding", 400)),
            facts(last_close_on=ago(400), onboarding=OPEN),
            "onboarding",
            id="2-onboarding-never-leaves-by-time",
        ),
        pytest.param(
            hist(("adoption", 50)),
            facts(last_close_on=ago(100), usage_monthly=(65.0, 70.0), success_criterion_met=True),
            "steady",
            id="2-adoption-confirmed-steady",
        ),
        pytest.param(
            hist(("adoption", 50)),
            facts(last_close_on=ago(100), usage_monthly=(50.0, 70.0), success_criterion_met=True),
            "adoption",
            id="2-adoption-needs-two-snapshots-in-a-row",
        ),
        pytest.param(
            hist(("adoption", 50)),
            facts(last_close_on=ago(100), usage_monthly=(65.0, 70.0)),
            "adoption",
            id="2-adoption-needs-a-success-criterion",
        ),
        pytest.param(
            hist(("adoption", 180)),
            facts(last_close_on=ago(300)),
            "steady",
            id="2-adoption-180d-steady-not-confirmed",
        ),
        pytest.param(
            hist(("steady", 100)),
            facts(has_contract=True, days_to_renewal=180, term_months=12),
            "renewal",
            id="2-renewal-at-180d",
        ),
        pytest.param(
            hist(("steady", 100)),
            facts(has_contract=True, days_to_renewal=181, term_months=12),
            "steady",
            id="2-steady-at-181d",
        ),
        pytest.param(
            hist(("steady", 100)),
            facts(has_contract=True, days_to_renewal=20, term_months=1),
            "steady",
            id="2-monthly-terms-never-enter-renewal",
        ),
        pytest.param(
            hist(("renewal", 200)),
            facts(has_contract=True, days_to_renewal=-30, term_months=12),
            "renewal",
            id="2-overdue-renewal-stays-renewal-no-churn-from-silence",
        ),
        pytest.param(
            hist(("renewal", 100)),
            facts(has_contract=True, days_to_renewal=300, term_months=12),
            "steady",
            id="2-renewal-won-next-term-steady",
        ),
        pytest.param(
            hist(("renewal", 100)),
            facts(has_contract=True, days_to_renewal=-3, churned_on=ago(3)),
            "churned",
            id="2-renewal-lost-churned",
        ),
        pytest.param(
            hist(("steady", 100)),
            facts(has_contract=True, open_expansion=True),
            "expansion",
            id="2-open-expansion",
        ),
        pytest.param(
            hist(("expansion", 30)),
            facts(has_contract=True),
            "steady",
            id="2-expansion-closed-steady",
        ),
        pytest.param(
            hist(("churned", 100)),
            facts(churned_on=ago(100), last_close_on=ago(5), onboarding=OPEN),
            "onboarding",
            id="2-winback-onboarding",
        ),
        pytest.param(
            hist(("churned", 100)),
            facts(churned_on=ago(100)),
            "churned",
            id="2-churned-stays",
        ),
        pytest.param((), facts(has_contract=True), "steady", id="2-backfilled-customer-steady"),
        pytest.param((), facts(), None, id="2-nothing-known-not-a-customer"),
    ],
)
def test_stage(history: tuple[StageEntry, ...], f: LifecycleFacts, stage: str | None) -> None:
    assert compute_lifecycle(history, f, TODAY).stage == stage


@pytest.mark.parametrize(
    ("f", "stage"),
    [
        pytest.param(
            facts(
                churned_on=ago(1),
                last_close_on=ago(30),
                onboarding=OPEN,
                days_to_renewal=10,
                open_expansion=True,
            ),
            "churned",
            id="2-precedence-churned-first",
        ),
        pytest.param(
            facts(last_close_on=ago(30), onboarding=OPEN, days_to_renewal=10, open_expansion=True),
            "onboarding",
            id="2-precedence-onboarding-over-renewal",
        ),
        pytest.param(
            facts(has_contract=True, days_to_renewal=10, open_expansion=True),
            "renewal",
            id="2-precedence-renewal-over-expansion",
        ),
        pytest.param(
            facts(last_close_on=ago(30), onboarding=DONE, open_expansion=True),
            "expansion",
            id="2-precedence-expansion-over-adoption",
        ),
    ],
)
def test_precedence(f: LifecycleFacts, stage: str) -> None:
    assert compute_lifecycle(hist(("onboarding", 30)), f, TODAY).stage == stage


@pytest.mark.parametrize(
    ("tier", "days", "overdue"),
    [
        pytest.param("key", 120, False, id="7.4-key-120d-ok"),
        pytest.param("key", 121, True, id="7.4-key-121d-overdue"),
        pytest.param("high", 91, True, id="7.4-high-91d-overdue"),
        pytest.param("low", 61, True, id="7.4-low-61d-overdue"),
        pytest.param("tech", 30, False, id="7.4-tech-30d-ok"),
        pytest.param("tech", 31, True, id="7.4-tech-31d-overdue"),
    ],
)
def test_onboarding_overdue(tier: str, days: int, overdue: bool) -> None:
    f = facts(tier=tier, last_close_on=ago(days), onboarding=OPEN)
    r = compute_lifecycle(hist(("onboarding", days)), f, TODAY)
    assert r.stage == "onboarding"
    assert ("onboarding_overdue" in r.flags) is overdue


def test_renewal_overdue_flag() -> None:  # 2, 5.2
    f = facts(has_contract=True, days_to_renewal=-1, term_months=12)
    assert compute_lifecycle(hist(("renewal", 200)), f, TODAY).flags == ("renewal_overdue",)
    churned = facts(has_contract=True, days_to_renewal=-1, churned_on=ago(1))
    assert compute_lifecycle(hist(("renewal", 200)), churned, TODAY).flags == ()


@pytest.mark.parametrize(
    ("p", "tier", "met"),
    [
        pytest.param(DONE, "high", True, id="7.4-all-criteria"),
        pytest.param(OPEN, "high", False, id="7.4-missing-criteria"),
        pytest.param(
            OnboardingProgress(True, True, True, True, active_seat_share=0.49),
            "high",
            False,
            id="7.4-seats-below-50pct",
        ),
        pytest.param(
            OnboardingProgress(True, True, True, True, weekly_active_users=1),
            "tech",
            True,
            id="7.4-tech-one-weekly-user",
        ),
        pytest.param(
            OnboardingProgress(True, True, True, False, active_seat_share=0.9),
            "high",
            False,
            id="7.4-csat-must-be-sent",
        ),
        pytest.param(OnboardingProgress(closed_by_hand=True), "key", True, id="7.4-closed-by-hand"),
    ],
)
def test_onboarding_exit(p: OnboardingProgress, tier: str, met: bool) -> None:
    assert onboarding_exit_met(p, tier) is met  # type: ignore[arg-type]


def test_history_keeps_entered_on_and_appends_changes() -> None:  # 2: entered_at history
    h = hist(("onboarding", 40))
    same = compute_lifecycle(h, facts(last_close_on=ago(40), onboarding=OPEN), TODAY)
    assert (same.entered_on, same.change, same.history) == (ago(40), None, h)
    moved = compute_lifecycle(h, facts(last_close_on=ago(40), onboarding=DONE), TODAY)
    assert moved.entered_on == TODAY
    assert moved.change == StageEntry("adoption", TODAY, "onboarding exit criteria met")
    assert moved.history == (*h, moved.change)
    assert moved.change.kind == "lifecycle_stage_entered"


def test_onboarding_is_not_reentered_once_passed() -> None:  # 2, 7.4
    h = hist(("onboarding", 60), ("adoption", 20))
    seats_fell = OnboardingProgress(True, True, True, True, active_seat_share=0.1)
    r = compute_lifecycle(h, facts(last_close_on=ago(60), onboarding=seats_fell), TODAY)
    assert r.stage == "adoption"


# --- properties ------------------------------------------------------------------------------

stages = st.sampled_from(["trial", "onboarding", "adoption", "steady", "renewal", "expansion"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(stages, st.integers(0, 500)), max_size=3),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 500)),
    st.one_of(st.none(), st.integers(-400, 400)),
    st.booleans(),
    st.booleans(),
)
def test_property_never_churned_without_an_explicit_end(
    entries: list[tuple[str, int]],
    has_contract: bool,
    close_days: int | None,
    days_to_renewal: int | None,
    expansion: bool,
    onboarding_open: bool,
) -> None:
    """2: churn is never inferred from silence, whatever else is (not) known."""
    history = tuple(
        StageEntry(s, ago(d))  # type: ignore[arg-type]
        for s, d in sorted(entries, key=lambda e: -e[1])
    )
    f = facts(
        has_contract=has_contract,
        last_close_on=ago(close_days) if close_days is not None else None,
        days_to_renewal=days_to_renewal,
        open_expansion=expansion,
        onboarding=OPEN if onboarding_open else None,
    )
    r = compute_lifecycle(history, f, TODAY)
    assert r.stage != "churned"
    assert r.stage is None or r.stage in PRECEDENCE
    if r.change is not None:
        assert r.history[-1] == r.change
        assert r.entered_on == TODAY
