"""Tiering (domain.md 3.3): ARR bands, potential, growth focus, strategic flag, manual override,
hysteresis and the key-account count warning.

Pure: :func:`compute_tier` takes one account's facts, the day (``as_of``) and a
:class:`~app.domain.config.ScoringConfig`; it returns a :class:`TierResult` whose ``change`` is
the tier change as a value: the caller writes it as an ``account_events`` row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from app.domain.config import DEFAULT_CONFIG, ScoringConfig, TieringConfig
from app.domain.values import TIERS, Tier, quick_init, tier_rank

ArrSource = Literal["arr", "mrr", "deal"]
GrowthFocus = Literal["sales", "balanced", "care"]
TIER_CHANGED = "tier_changed"  # account_events.kind
_SOURCE_TEXT: dict[str, str] = {
    "arr": "subscriptions",
    "mrr": "12 x MRR",
    "deal": "the last closed-won deal",
}


@quick_init
@dataclass(frozen=True)
class ClosedWonDeal:
    """The latest closed-won new-business opportunity: its amount over ``term_months``."""

    amount: Decimal
    closed_on: date
    term_months: int | None = None  # None: tiering.deal_term_months (12)


@quick_init
@dataclass(frozen=True)
class TierOverride:
    """3.3 step 6: a manual tier with a reason; it expires ``until_on`` or, when that is not
    given, ``tiering.override_days`` after ``set_on``."""

    tier: Tier
    reason: str
    set_on: date
    until_on: date | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a tier override needs a reason (domain.md 3.3 step 6)")

    def expires_on(self, cfg: TieringConfig) -> date:
        return self.until_on or self.set_on + timedelta(days=cfg.override_days)


@quick_init
@dataclass(frozen=True)
class TierInput:
    arr: Decimal | None = None  # sum of active recurring subscriptions
    mrr: Decimal | None = None
    last_deal: ClosedWonDeal | None = None
    potential_arr: Decimal | None = None
    strategic_account: bool = False
    override: TierOverride | None = None
    current_tier: Tier | None = None  # the account's tier as stored before this computation


@quick_init
@dataclass(frozen=True)
class TierChange:
    """A tier change, to be written as an ``account_events`` row of kind ``tier_changed``."""

    old: Tier | None
    new: Tier
    on: date
    reason: str

    @property
    def kind(self) -> str:
        return TIER_CHANGED

    def payload(self) -> dict[str, str | None]:
        return {"old": self.old, "new": self.new, "reason": self.reason}


@quick_init
@dataclass(frozen=True)
class TierResult:
    tier: Tier  # what the account is served as (override or computed)
    computed_tier: Tier  # steps 1-5 and 7, without the override
    base_tier: Tier  # from ARR alone (step 2)
    arr: Decimal | None
    arr_source: ArrSource | None
    effective_arr: Decimal | None  # max(arr, weight * potential) (step 3)
    growth_focus: GrowthFocus | None
    flags: tuple[str, ...]
    change: TierChange | None
    override_expires_on: date | None = None


def resolve_arr(
    inp: TierInput, cfg: ScoringConfig = DEFAULT_CONFIG
) -> tuple[Decimal | None, ArrSource | None]:
    """3.3 step 1: subscriptions' ARR, else 12 x MRR (domain.md 0), else the last closed-won
    new-business deal annualised; else unknown."""
    if inp.arr is not None:
        return inp.arr, "arr"
    if inp.mrr is not None:
        return inp.mrr * 12, "mrr"
    if inp.last_deal is not None:
        months = inp.last_deal.term_months or cfg.tiering.deal_term_months
        if months > 0:
            return inp.last_deal.amount * 12 / months, "deal"
    return None, None


def tier_for_arr(arr: Decimal, cfg: ScoringConfig = DEFAULT_CONFIG) -> Tier:
    """3.2: key >= 100,000; high >= 25,000; low >= 5,000 (001:439); tech below."""
    t = cfg.tiering
    if arr >= t.key_min:
        return "key"
    if arr >= t.high_min:
        return "high"
    if arr >= t.low_min:
        return "low"
    return "tech"


def growth_focus(
    arr: Decimal | None, potential: Decimal | None, cfg: ScoringConfig = DEFAULT_CONFIG
) -> GrowthFocus | None:
    """3.3 step 4 (003:660): potential captured <= 20 % -> sales, >= 90 % -> care."""
    if arr is None or potential is None or potential <= 0:
        return None
    captured = arr / potential
    if captured <= cfg.tiering.shares["growth_sales_max"]:
        return "sales"
    if captured >= cfg.tiering.shares["growth_care_min"]:
        return "care"
    return "balanced"


def compute_tier(inp: TierInput, as_of: date, cfg: ScoringConfig = DEFAULT_CONFIG) -> TierResult:
    """One account's tier on ``as_of`` (domain.md 3.3 steps 1-7)."""
    t = cfg.tiering
    flags: list[str] = []
    arr, source = resolve_arr(inp, cfg)
    effective: Decimal | None = None
    if arr is None:
        base = t.unknown_arr_tier
        candidate = base
        flags.append("arr_missing")
    else:
        base = tier_for_arr(arr, cfg)
        candidate = base
        effective = arr
        if inp.potential_arr is not None:
            effective = max(arr, t.shares["potential_weight"] * inp.potential_arr)
            reach = tier_for_arr(effective, cfg)
            ceiling = tier_rank(base) + t.potential_max_steps
            if not t.potential_can_make_key:
                ceiling = min(ceiling, tier_rank("high"))
            candidate = TIERS[max(tier_rank(base), min(tier_rank(reach), ceiling))]
            if reach == "key" and base != "key" and candidate != "key":
                flags.append("key_candidate")
            if candidate != base:
                flags.append("potential_step_up")
    reason = "arr_missing" if arr is None else f"ARR {arr:.0f} from {_SOURCE_TEXT[source or 'arr']}"

    if inp.strategic_account:
        candidate = "key"
        flags.append("strategic")
        reason = "strategic_account"

    current = inp.current_tier
    if current is not None and tier_rank(candidate) < tier_rank(current):
        # Step 7: demote only below (1 - hysteresis) x the current tier's lower bound. A key
        # tier is held by ARR alone: potential never makes (or keeps) an account key.
        held_by = arr if current == "key" else effective
        floor = Decimal(t.lower_bound(current)) * (1 - t.shares["demote_hysteresis"])
        if held_by is None or held_by >= floor:
            candidate = current
            flags.append("demotion_held")
            reason = "hysteresis" if held_by is not None else "arr_missing: tier kept"
        else:
            reason = f"demoted: {'arr' if current == 'key' else 'effective arr'} below {floor:.0f}"
    computed = candidate

    final = computed
    expires: date | None = None
    if inp.override is not None:
        expires = inp.override.expires_on(t)
        if as_of <= expires:
            final = inp.override.tier
            flags.append("override")
            reason = f"override: {inp.override.reason}"
        else:
            flags.append("override_expired")
            expires = None

    change = None
    if final != current:
        change = TierChange(old=current, new=final, on=as_of, reason=reason[:255])
    return TierResult(
        tier=final,
        computed_tier=computed,
        base_tier=base,
        arr=arr,
        arr_source=source,
        effective_arr=effective,
        growth_focus=growth_focus(arr, inp.potential_arr, cfg),
        flags=tuple(flags),
        change=change,
        override_expires_on=expires,
    )


def key_accounts_warning(key_count: int, cfg: ScoringConfig = DEFAULT_CONFIG) -> str | None:
    """3.3 step 8 (003:360-362): above ``key_max`` key accounts, a warning for status and
    reports; never an automatic demotion."""
    limit = cfg.tiering.key_max
    if key_count <= limit:
        return None
    return (
        f"{key_count} key accounts, above the {limit} a key-account programme can serve; "
        "review them (domain.md 3.3)"
    )


def key_review_due_on(
    key_since_on: date, last_review_on: date | None, cfg: ScoringConfig = DEFAULT_CONFIG
) -> date:
    """3.3 step 8 (003:372): a key account's review is due every ``key_review_days``."""
    return (last_review_on or key_since_on) + timedelta(days=cfg.tiering.key_review_days)
