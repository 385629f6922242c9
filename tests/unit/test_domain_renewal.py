"""Renewal rules (domain.md 5): each table row's id names the section it checks."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.renewal import (
    Contract,
    RenewalInput,
    TermDeal,
    compute_renewal,
    prep_start_on,
    renewal_date,
    renewal_risk,
    roll_forward,
    term_end,
    window_status,
)
from app.domain.values import RISK_LEVELS

TODAY = date(2026, 12, 6)


def in_days(n: int) -> date:
    return TODAY + timedelta(days=n)


@pytest.mark.parametrize(
    ("inp", "renewal_on", "source"),
    [
        pytest.param(
            RenewalInput(
                contracts=(Contract(end_on=in_days(100)),),
                last_term_deal=TermDeal(date(2026, 1, 1)),
            ),
            in_days(100),
            "contract",
            id="5.1.1-contract-end-wins",
        ),
        pytest.param(
            RenewalInput(last_term_deal=TermDeal(date(2026, 3, 1))),
            date(2027, 2, 28),
            "term",
            id="5.1.2-term-start-plus-12-months-minus-1-day",
        ),
        pytest.param(
            RenewalInput(last_term_deal=TermDeal(date(2026, 3, 1), term_months=24)),
            date(2028, 2, 29),
            "term",
            id="5.1.2-term-months-from-the-deal",
        ),
        pytest.param(
            RenewalInput(last_term_deal=TermDeal(date(2026, 10, 1), 1, auto_renew=True)),
            date(2026, 12, 31),
            "term",
            id="5.1.3-monthly-auto-renew-rolls-forward",
        ),
        pytest.param(
            RenewalInput(last_term_deal=TermDeal(date(2025, 1, 1), 12, auto_renew=True)),
            date(2025, 12, 31),
            "term",
            id="5.1.3-yearly-term-does-not-roll-overdue-instead",
        ),
        pytest.param(
            RenewalInput(
                contracts=(Contract(end_on=date(2026, 6, 30), term_months=12, evergreen=True),)
            ),
            date(2027, 6, 30),
            "contract",
            id="5.1.3-evergreen-contract-rolls",
        ),
        pytest.param(
            RenewalInput(contracts=(Contract(end_on=in_days(200)), Contract(end_on=in_days(40)))),
            in_days(40),
            "contract",
            id="5.1.4-earliest-of-several",
        ),
        pytest.param(
            RenewalInput(contracts=(Contract(end_on=in_days(40)),), trial=True),
            None,
            None,
            id="5.1.5-trial-has-no-renewal",
        ),
        pytest.param(
            RenewalInput(open_renewal_close_on=in_days(70)),
            in_days(70),
            "open_renewal_deal",
            id="issue18.4-open-renewal-deal-last-resort",
        ),
        pytest.param(RenewalInput(), None, None, id="5.1-nothing-known"),
    ],
)
def test_renewal_date(inp: RenewalInput, renewal_on: date | None, source: str | None) -> None:
    got, src, _, _ = renewal_date(inp, TODAY)
    assert (got, src) == (renewal_on, source)


def test_other_contracts_are_listed() -> None:  # 5.1 step 4
    inp = RenewalInput(contracts=(Contract(end_on=in_days(200)), Contract(end_on=in_days(40))))
    assert renewal_date(inp, TODAY)[3] == (in_days(200),)


@pytest.mark.parametrize(
    ("days", "status"),
    [
        pytest.param(181, "outside", id="5.2-181-outside"),
        pytest.param(180, "upcoming", id="5.2-180-upcoming"),
        pytest.param(91, "upcoming", id="5.2-91-upcoming"),
        pytest.param(90, "in_window", id="5.2-90-in-window"),
        pytest.param(0, "in_window", id="5.2-0-in-window"),
        pytest.param(-1, "overdue", id="5.2-minus-1-overdue"),
        pytest.param(None, "none", id="5.2-no-date"),
    ],
)
def test_window_status(days: int | None, status: str) -> None:
    assert window_status(days, ended=False) == status


@pytest.mark.parametrize(
    ("days", "flags"),
    [
        pytest.param(-1, ("renewal_overdue",), id="5.2-overdue-flag"),
        pytest.param(-60, ("renewal_overdue",), id="5.2-60d-not-yet-stale"),
        pytest.param(-61, ("renewal_overdue", "renewal_stale"), id="5.2-stale-after-60d"),
        pytest.param(10, (), id="5.2-not-overdue"),
    ],
)
def test_overdue_flags(days: int, flags: tuple[str, ...]) -> None:
    inp = RenewalInput(contracts=(Contract(end_on=in_days(days)),))
    r = compute_renewal(inp, TODAY, tier="high", band="green")
    assert r.flags == flags
    assert r.status == ("overdue" if days < 0 else "in_window")


def test_ended_contract_has_no_risk() -> None:  # 2: churn is an explicit end, not silence
    inp = RenewalInput(contracts=(Contract(end_on=in_days(-5)),), ended=True)
    r = compute_renewal(inp, TODAY, tier="high", band="red")
    assert (r.status, r.risk, r.flags) == ("ended", None, ())


# 5.3's table, row by row: band x (> 180, 91-180, 31-90, 0-30, overdue)
MATRIX = {
    "green": ("low", "low", "low", "low", "medium"),
    "yellow": ("low", "medium", "medium", "high", "high"),
    "red": ("medium", "high", "high", "critical", "critical"),
    "unknown": ("low", "medium", "medium", "high", "high"),
}
COLUMNS = ((181, 400), (91, 180), (31, 90), (0, 30), (-1, -300))


@pytest.mark.parametrize(
    ("band", "col", "days"),
    [
        pytest.param(band, col, days, id=f"5.3-{band}-{days}d")
        for band in MATRIX
        for col, edge in enumerate(COLUMNS)
        for days in edge
    ],
)
def test_risk_matrix(band: str, col: int, days: int) -> None:
    assert renewal_risk(band, days) == (MATRIX[band][col], False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("band", "days", "fl", "cl", "level", "bumped"),
    [
        pytest.param("green", 100, True, False, "medium", True, id="5.3-false-loyalty-plus-1"),
        pytest.param("yellow", 20, False, True, "critical", True, id="5.3-champion-left-plus-1"),
        pytest.param("red", 10, True, True, "critical", True, id="5.3-max-critical"),
        pytest.param("green", 181, True, True, "low", False, id="5.3-bump-only-within-180d"),
        pytest.param("yellow", -10, True, False, "critical", True, id="5.3-bump-when-overdue"),
    ],
)
def test_risk_bumps(band: str, days: int, fl: bool, cl: bool, level: str, bumped: bool) -> None:
    got = renewal_risk(band, days, false_loyalty=fl, champion_left=cl)  # type: ignore[arg-type]
    assert got == (level, bumped)


@pytest.mark.parametrize(
    ("tier", "days_before"),
    [
        pytest.param("key", 270, id="5.4-key-270"),
        pytest.param("high", 180, id="5.4-high-180"),
        pytest.param("low", 120, id="5.4-low-120"),
        pytest.param("tech", 90, id="5.4-tech-90"),
    ],
)
def test_prep_start(tier: str, days_before: int) -> None:
    renewal_on = date(2027, 12, 31)
    assert prep_start_on(renewal_on, tier) == renewal_on - timedelta(days=days_before)  # type: ignore[arg-type]


def test_compute_renewal_puts_it_together() -> None:
    inp = RenewalInput(last_term_deal=TermDeal(date(2026, 3, 1)))
    r = compute_renewal(inp, TODAY, tier="key", band="yellow", false_loyalty=True)
    assert r.renewal_on == date(2027, 2, 28)
    assert r.days_to_renewal == 84
    assert r.status == "in_window"
    assert (r.risk, r.risk_bumped) == ("high", True)
    assert r.prep_on == date(2027, 2, 28) - timedelta(days=270)


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2026, 12, 6)),
    st.sampled_from([1, 3, 6, 12, 24]),
)
def test_property_roll_forward_gives_the_first_term_end_not_before_today(
    start: date, months: int
) -> None:
    end = roll_forward(start, months, TODAY)
    assert end >= TODAY
    # the previous term end, if any, was before today
    k = 1
    while term_end(start, k * months) != end:
        k += 1
    if k > 1:
        assert term_end(start, (k - 1) * months) < TODAY


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["green", "yellow", "red", "unknown"]),
    st.integers(-400, 400),
    st.integers(0, 400),
)
def test_property_risk_never_falls_as_the_date_nears(band: str, days: int, closer: int) -> None:
    """5.3: 'the same health matters more as the date nears'."""
    far = renewal_risk(band, days)[0]  # type: ignore[arg-type]
    near = renewal_risk(band, days - closer)[0]  # type: ignore[arg-type]
    assert RISK_LEVELS.index(near) >= RISK_LEVELS.index(far)


@settings(max_examples=200, deadline=None)
@given(st.integers(-400, 400))
def test_property_worse_band_never_lowers_risk(days: int) -> None:
    levels = [RISK_LEVELS.index(renewal_risk(b, days)[0]) for b in ("green", "yellow", "red")]  # type: ignore[arg-type]
    assert levels == sorted(levels)
