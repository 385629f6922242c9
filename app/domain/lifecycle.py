"""Lifecycle stage (domain.md 2): one stage per account from facts, with its history.

Pure: :func:`compute_lifecycle` takes the stage history so far (each entry with the day it was
entered), this day's facts and ``as_of``; it returns the stage, the day it was entered, the new
history and the change as a value (the caller writes it as an ``account_events`` row).

Rules kept here on purpose:
- Precedence: churned > onboarding > renewal > expansion > adoption > steady.
- Churn is never inferred from silence: only an explicit end (contract ended unrenewed,
  renewal closed-lost, account cancelled) is ``churned``; an overdue renewal stays ``renewal``
  with flag ``renewal_overdue``.
- Onboarding never ends by time alone: past ``onboarding.max_days`` it is flagged
  ``onboarding_overdue``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.values import Tier, quick_init

Stage = Literal["trial", "onboarding", "adoption", "steady", "renewal", "expansion", "churned"]
PRECEDENCE: tuple[Stage, ...] = (
    "churned",
    "onboarding",
    "renewal",
    "expansion",
    "adoption",
    "steady",
    "trial",
)
LIFECYCLE_STAGE_ENTERED = "lifecycle_stage_entered"  # account_events.kind


@quick_init
@dataclass(frozen=True)
class StageEntry:
    stage: Stage
    entered_on: date
    reason: str = ""

    @property
    def kind(self) -> str:
        return LIFECYCLE_STAGE_ENTERED

    def payload(self) -> dict[str, str]:
        return {
            "stage": self.stage,
            "entered_on": self.entered_on.isoformat(),
            "reason": self.reason,
        }


@quick_init
@dataclass(frozen=True)
class OnboardingProgress:
    """The open onboarding plan of the latest close (7.4 exit criteria)."""

    go_live_done: bool = False
    first_value_done: bool = False
    admin_training_done: bool = False
    csat_sent: bool = False
    active_seat_share: float | None = None  # active users / licensed seats
    weekly_active_users: int | None = None  # tech: >= 1 suffices
    closed_by_hand: bool = False  # a CSM closed onboarding with a reason


@quick_init
@dataclass(frozen=True)
class LifecycleFacts:
    tier: Tier
    trial_active: bool = False
    has_contract: bool = False  # an active contract or subscription is known (e.g. backfilled)
    last_close_on: date | None = None  # latest closed-won new business or winback (D0)
    churned_on: date | None = None  # explicit end; None is never read as churn
    churn_reason: str = ""
    onboarding: OnboardingProgress | None = None  # None: no open plan for the latest close
    usage_monthly: tuple[float | None, ...] = ()  # usage component, monthly snapshots, oldest first
    success_criterion_met: bool = False
    open_expansion: bool = False
    days_to_renewal: int | None = None
    term_months: int | None = None


@quick_init
@dataclass(frozen=True)
class LifecycleResult:
    stage: Stage | None  # None: not a customer (no close, or a trial that ended unsold)
    entered_on: date | None
    history: tuple[StageEntry, ...]
    change: StageEntry | None
    flags: tuple[str, ...]


def onboarding_exit_met(
    p: OnboardingProgress, tier: Tier, cfg: ScoringConfig = DEFAULT_CONFIG
) -> bool:
    """7.4: go-live, first value and admin training done; active seats >= 50 % of licensed
    (tech: >= 1 weekly active user); the onboarding CSAT sent. Or closed by hand."""
    if p.closed_by_hand:
        return True
    if tier == "tech":
        seats_ok = (p.weekly_active_users or 0) >= cfg.onboarding.exit_tech_weekly_active_users
    else:
        seats_ok = (
            p.active_seat_share is not None
            and p.active_seat_share >= cfg.onboarding.exit_active_seat_share
        )
    return (
        p.go_live_done and p.first_value_done and p.admin_training_done and p.csat_sent and seats_ok
    )


def adoption_confirmed(facts: LifecycleFacts, cfg: ScoringConfig = DEFAULT_CONFIG) -> bool:
    """2: usage >= 60 on the last two monthly snapshots and one success criterion met."""
    n = cfg.lifecycle.adoption_confirm_snapshots
    last = facts.usage_monthly[-n:] if n > 0 else ()
    return (
        len(last) == n
        and all(u is not None and u >= cfg.lifecycle.adoption_confirm_usage for u in last)
        and facts.success_criterion_met
    )


def _passed_onboarding(history: Sequence[StageEntry], close_on: date) -> bool:
    """Onboarding for the close of ``close_on`` is over once a later stage was entered."""
    return any(
        e.stage not in ("onboarding", "trial", "churned") and e.entered_on >= close_on
        for e in history
    )


def compute_lifecycle(
    history: Sequence[StageEntry],
    facts: LifecycleFacts,
    as_of: date,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> LifecycleResult:
    """The account's stage on ``as_of`` (domain.md 2)."""
    current = history[-1] if history else None
    flags: list[str] = []
    candidates: dict[Stage, str] = {}  # stage -> reason

    close = facts.last_close_on
    churn = facts.churned_on
    won_back = close is not None and churn is not None and close > churn
    if churn is not None and not won_back:
        candidates["churned"] = facts.churn_reason or "explicit end"

    customer = (
        close is not None
        or facts.has_contract
        or (current is not None and current.stage not in ("trial", "churned"))
        or won_back
    )
    onboarding_now = False
    if (
        close is not None
        and facts.onboarding is not None
        and not _passed_onboarding(history, close)
    ):
        if onboarding_exit_met(facts.onboarding, facts.tier, cfg):
            how = "closed by hand" if facts.onboarding.closed_by_hand else "exit criteria met"
            candidates["adoption"] = f"onboarding {how}"
        else:
            onboarding_now = True
            candidates["onboarding"] = "winback" if won_back else "closed-won"
            overdue_after = cfg.onboarding.max_days.of(facts.tier)
            if (as_of - close).days > overdue_after:
                flags.append("onboarding_overdue")

    if customer and not onboarding_now and "adoption" not in candidates:
        if current is not None and current.stage == "adoption":
            if adoption_confirmed(facts, cfg):
                candidates["steady"] = "adoption confirmed"
            elif (as_of - current.entered_on).days >= cfg.lifecycle.adoption_max_days:
                candidates["steady"] = "adoption not confirmed"
            else:
                candidates["adoption"] = current.reason
        else:
            candidates["steady"] = (
                "renewal or expansion closed"
                if current is not None and current.stage in ("renewal", "expansion")
                else "customer"
            )

    days = facts.days_to_renewal
    long_term = (
        facts.term_months is None or facts.term_months >= cfg.lifecycle.renewal_min_term_months
    )
    if customer and days is not None and long_term and days <= cfg.renewal.upcoming_days:
        candidates["renewal"] = f"{days} days to renewal"
    if customer and days is not None and days < 0 and "churned" not in candidates:
        flags.append("renewal_overdue")  # 5.2: stays in renewal; never churned by silence
    if customer and facts.open_expansion:
        candidates["expansion"] = "open expansion opportunity"
    if facts.trial_active and close is None:
        candidates["trial"] = "trial recorded"

    stage = next((s for s in PRECEDENCE if s in candidates), None)
    if stage is None:
        return LifecycleResult(None, None, tuple(history), None, tuple(flags))
    if stage != "onboarding" and "onboarding_overdue" in flags:
        flags.remove("onboarding_overdue")
    if current is not None and current.stage == stage:
        return LifecycleResult(stage, current.entered_on, tuple(history), None, tuple(flags))
    entry = StageEntry(stage, as_of, candidates[stage][:255])
    return LifecycleResult(stage, as_of, (*history, entry), entry, tuple(flags))
