"""Renewal (domain.md 5): the renewal date, days to renewal, window status, risk and the day
renewal preparation starts.

Pure: :func:`compute_renewal` takes the account's contracts and deals as values, ``as_of`` and a
:class:`~app.domain.config.ScoringConfig`. Churn is never inferred here: an overdue renewal
stays ``overdue`` (flag ``renewal_overdue``) until the CRM records a win or an end (2, 5.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.values import RISK_LEVELS, Band, RiskLevel, Tier, add_months, quick_init

RenewalSource = Literal["contract", "term", "open_renewal_deal"]
WindowStatus = Literal["none", "outside", "upcoming", "in_window", "overdue", "ended"]


@quick_init
@dataclass(frozen=True)
class Contract:
    """An active contract or subscription (5.1 step 1). ``end_on`` is the CRM's explicit end
    date; without it, ``start_on`` + ``term_months`` give the term."""

    end_on: date | None = None
    start_on: date | None = None
    term_months: int | None = None
    auto_renew: bool = False
    evergreen: bool = False
    name: str = ""


@quick_init
@dataclass(frozen=True)
class TermDeal:
    """The latest closed-won new-business or renewal opportunity (5.1 step 2)."""

    start_on: date  # its start date, or its close date when it has none
    term_months: int | None = None
    auto_renew: bool = False


@quick_init
@dataclass(frozen=True)
class RenewalInput:
    contracts: tuple[Contract, ...] = ()
    last_term_deal: TermDeal | None = None
    open_renewal_close_on: date | None = None  # issue 18 item 4: the open renewal deal
    trial: bool = False  # 5.1 step 5: trials have no renewal date
    ended: bool = False  # contract ended unrenewed, renewal closed-lost, cancelled (2)


@quick_init
@dataclass(frozen=True)
class RenewalResult:
    renewal_on: date | None
    source: RenewalSource | None
    term_months: int | None
    other_renewals_on: tuple[date, ...]  # 5.1 step 4: the other active contracts
    days_to_renewal: int | None
    status: WindowStatus
    risk: RiskLevel | None
    risk_bumped: bool
    prep_on: date | None  # 5.4: when the renewal_prep task is due
    flags: tuple[str, ...]


def term_end(start_on: date, term_months: int) -> date:
    """5.1 step 2: ``term_start + term_months - 1 day``."""
    return add_months(start_on, term_months) - timedelta(days=1)


def roll_forward(start_on: date, term_months: int, as_of: date) -> date:
    """5.1 step 3: the end of the first whole term from ``start_on`` that ends on or after
    ``as_of`` (continuous and monthly contracts renew every term)."""
    if term_months <= 0:
        raise ValueError("term_months must be >= 1")
    months_elapsed = (as_of.year - start_on.year) * 12 + (as_of.month - start_on.month)
    k = max(1, months_elapsed // term_months)
    while k > 1 and term_end(start_on, (k - 1) * term_months) >= as_of:
        k -= 1
    while term_end(start_on, k * term_months) < as_of:
        k += 1
    return term_end(start_on, k * term_months)


def _rolls(auto_renew: bool, evergreen: bool, term_months: int, cfg: ScoringConfig) -> bool:
    # 5.1 step 3 (000:300-304): evergreen contracts, and auto-renewing terms shorter than a year.
    return evergreen or (auto_renew and term_months < cfg.lifecycle.renewal_min_term_months)


def _contract_renewal(c: Contract, as_of: date, cfg: ScoringConfig) -> tuple[date, int] | None:
    months = c.term_months or cfg.renewal.default_term_months
    if c.end_on is not None:
        if as_of > c.end_on and _rolls(c.auto_renew, c.evergreen, months, cfg):
            start = c.end_on + timedelta(days=1)
            return roll_forward(start, months, as_of), months
        return c.end_on, months
    if c.start_on is not None:
        end = term_end(c.start_on, months)
        if as_of > end and _rolls(c.auto_renew, c.evergreen, months, cfg):
            end = roll_forward(c.start_on, months, as_of)
        return end, months
    return None


def window_status(
    days: int | None, ended: bool, cfg: ScoringConfig = DEFAULT_CONFIG
) -> WindowStatus:
    """5.2: outside > 180, upcoming 91-180, in_window 0-90, overdue < 0."""
    if ended:
        return "ended"
    if days is None:
        return "none"
    if days < 0:
        return "overdue"
    if days <= cfg.renewal.in_window_days:
        return "in_window"
    if days <= cfg.renewal.upcoming_days:
        return "upcoming"
    return "outside"


def renewal_risk(
    band: Band,
    days: int,
    *,
    false_loyalty: bool = False,
    champion_left: bool = False,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> tuple[RiskLevel, bool]:
    """5.3: the band x days matrix, +1 level (max critical) for false loyalty or a champion who
    left, within 180 days. Returns the level and whether it was bumped."""
    r = cfg.renewal
    if days < 0:
        column = 4
    elif days <= r.near_days:
        column = 3
    elif days <= r.in_window_days:
        column = 2
    elif days <= r.upcoming_days:
        column = 1
    else:
        column = 0
    row: tuple[RiskLevel, ...] = getattr(r.risk_matrix, band)  # a row per band
    level = row[column]
    bump = days <= r.bump_max_days and (
        (false_loyalty and r.bump_false_loyalty) or (champion_left and r.bump_champion_left)
    )
    if bump:
        level = RISK_LEVELS[min(len(RISK_LEVELS) - 1, RISK_LEVELS.index(level) + 1)]
    return level, bump


def prep_start_on(renewal_on: date, tier: Tier, cfg: ScoringConfig = DEFAULT_CONFIG) -> date:
    """5.4: the renewal_prep task is due ``prep_start_days[tier]`` before the renewal date
    (key 270, high 180, low 120, tech 90)."""
    return renewal_on - timedelta(days=cfg.renewal.prep_start_days.of(tier))


def renewal_date(
    inp: RenewalInput, as_of: date, cfg: ScoringConfig = DEFAULT_CONFIG
) -> tuple[date | None, RenewalSource | None, int | None, tuple[date, ...]]:
    """5.1: the contract's end (earliest of several), else the last term computed from the
    latest closed-won deal, else the open renewal deal's close date; none for trials."""
    if inp.trial:
        return None, None, None, ()
    from_contracts = sorted(
        r for c in inp.contracts if (r := _contract_renewal(c, as_of, cfg)) is not None
    )
    if from_contracts:
        (first, months), *others = from_contracts
        return first, "contract", months, tuple(d for d, _ in others)
    deal = inp.last_term_deal
    if deal is not None:
        months = deal.term_months or cfg.renewal.default_term_months
        end = term_end(deal.start_on, months)
        if as_of > end and _rolls(deal.auto_renew, False, months, cfg):
            end = roll_forward(deal.start_on, months, as_of)
        return end, "term", months, ()
    if inp.open_renewal_close_on is not None:
        return inp.open_renewal_close_on, "open_renewal_deal", None, ()
    return None, None, None, ()


def compute_renewal(
    inp: RenewalInput,
    as_of: date,
    *,
    tier: Tier,
    band: Band,
    false_loyalty: bool = False,
    champion_left: bool = False,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> RenewalResult:
    """One account's renewal on ``as_of`` (domain.md 5.1-5.4)."""
    renewal_on, source, months, others = renewal_date(inp, as_of, cfg)
    days = (renewal_on - as_of).days if renewal_on is not None else None
    status = window_status(days, inp.ended, cfg)
    flags: list[str] = []
    risk: RiskLevel | None = None
    bumped = False
    if status == "overdue" and days is not None:
        flags.append("renewal_overdue")
        if -days > cfg.renewal.stale_after_days:
            flags.append("renewal_stale")
    if days is not None and status != "ended":
        risk, bumped = renewal_risk(
            band, days, false_loyalty=false_loyalty, champion_left=champion_left, cfg=cfg
        )
    return RenewalResult(
        renewal_on=renewal_on,
        source=source,
        term_months=months,
        other_renewals_on=others,
        days_to_renewal=days,
        status=status,
        risk=risk,
        risk_bumped=bumped,
        prep_on=prep_start_on(renewal_on, tier, cfg) if renewal_on and status != "ended" else None,
        flags=tuple(flags),
    )
