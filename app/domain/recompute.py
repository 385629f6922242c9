"""One account's recompute, pure: its facts in, the columns, snapshot and events out.

The recompute (``app.wiring.recompute``) reads each chunk of accounts in bulk
(``app.db.health_store``) into one :class:`AccountFacts` per account: plain values, already
aggregated per account where the database can do it (ticket counts, touchpoint counts). Here
they become the domain's inputs (tier 3.3, health 4, renewal 5, lifecycle 2), in that order:
health needs the tier (cadence, caps), renewal the band, lifecycle the days to renewal.

:func:`compute_account` returns an :class:`AccountOutcome`: the ``accounts`` columns as they
should now be, which of them changed (only those are stamped as CS changes, so an unchanged
account costs the push nothing), the ``health_snapshots`` row and the ``account_events`` rows.
No I/O and no clock: ``as_of`` and ``now`` are arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.domain.components import ComponentScore
from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.health import HealthResult, compute_health
from app.domain.lifecycle import (
    LifecycleFacts,
    LifecycleResult,
    OnboardingProgress,
    Stage,
    StageEntry,
    compute_lifecycle,
)
from app.domain.renewal import (
    Contract,
    RenewalInput,
    RenewalResult,
    TermDeal,
    compute_renewal,
)
from app.domain.signals import (
    ContactSignal,
    EngagementSignals,
    HealthInput,
    Milestone,
    NpsAnswer,
    PaymentSignals,
    SnapshotPoint,
    SupportSignals,
    SurveyAnswer,
    UsageSignals,
    ValueSignals,
)
from app.domain.tier import ClosedWonDeal, TierInput, TierOverride, TierResult, compute_tier
from app.domain.values import TIERS, Tier, quick_init

HEALTH_BAND_CHANGED = "health_band_changed"  # account_events.kind (domain.md 4.6)

#: The ``accounts`` columns a recompute owns. Each is compared with its stored value; the ones
#: that changed are written and stamped (``field_stamps``, ``cs_changed_at``).
OUTPUT_COLUMNS: tuple[str, ...] = (
    "health_score",
    "health_band",
    "health_trend",
    "health_reasons",
    "health_coverage",
    "loyalty_type",
    "false_loyalty",
    "tier",
    "growth_focus",
    "renewal_on",
    "renewal_status",
    "renewal_risk",
    "lifecycle_stage",
    "lifecycle_entered_at",
    "flags",
)

#: Onboarding task codes of domain.md 7.2 that are 7.4's exit criteria.
EXIT_TASKS = ("go_live", "first_value", "admin_training", "onboarding_csat")
ANY_TYPE: tuple[str | None, ...] = ("new_business", "renewal", "expansion", None)


@quick_init
@dataclass(frozen=True)
class Opp:
    """An opportunity of the account, as the rules read it."""

    type: str | None
    is_closed: bool
    is_won: bool
    amount: Decimal | None = None
    close_on: date | None = None
    term_start_on: date | None = None
    term_months: int | None = None


@quick_init
@dataclass(frozen=True)
class UsageRow:
    observed_on: date
    active_users_30d: int
    logins_30d: int
    licensed_seats: int | None = None
    key_features_used_30d: int | None = None
    key_features_defined: int | None = None
    last_login_on: date | None = None


@quick_init
@dataclass(frozen=True)
class ContactRow:
    id: int
    roles: tuple[str, ...] = ()
    active: bool = True
    left_on: date | None = None


@quick_init
@dataclass(frozen=True)
class TouchAggregate:
    """Touchpoints of one account and one contact (``contact_id`` None: no contact named)."""

    contact_id: int | None
    last_two_way_on: date | None = None
    meetings_180d: int = 0
    meetings_attended_180d: int = 0
    emails_90d: int = 0
    emails_answered_90d: int = 0


@quick_init
@dataclass(frozen=True)
class TicketAggregate:
    tickets_30d: int = 0
    tickets_prior_90d: int = 0
    tickets_90d: int = 0
    closed_90d_with_fcr: int = 0
    fcr_90d: int = 0
    escalations_90d: int = 0
    oldest_open_p1_on: date | None = None
    last_ticket_on: date | None = None


@quick_init
@dataclass(frozen=True)
class Task:
    code: str
    due_on: date
    done_on: date | None


@quick_init
@dataclass(frozen=True)
class Feeds:
    """Which whole feeds exist in the database. A feed that exists makes its component a fact
    for every account (no tickets = a calm account, not a missing one); without the feed the
    component is missing (domain.md 4.3: "missing if no support feed")."""

    support: bool = False
    touchpoints: bool = False


@dataclass
class AccountFacts:
    """Everything one account's recompute reads, as plain values (see the module docstring)."""

    id: int
    stored: Mapping[str, Any]  # the accounts row: inputs and the current output columns
    opportunities: list[Opp] = field(default_factory=list)
    usage: list[UsageRow] = field(default_factory=list)  # oldest first
    contacts: list[ContactRow] = field(default_factory=list)
    touches: list[TouchAggregate] = field(default_factory=list)
    tickets: TicketAggregate | None = None
    nps: list[NpsAnswer] = field(default_factory=list)
    surveys: list[SurveyAnswer] = field(default_factory=list)
    invoices_total: int = 0
    oldest_open_invoice_due_on: date | None = None
    billing_received_on: date | None = None  # the billing feed's last delivery for the account
    criteria: dict[str, int] = field(default_factory=dict)  # status -> count
    onboarding_tasks: list[Task] | None = None  # None: no active onboarding plan
    history: list[SnapshotPoint] = field(default_factory=list)
    previous_usage: float | None = None  # usage component of the snapshot the trend uses


@quick_init
@dataclass(frozen=True)
class AccountOutcome:
    """What to write for one account."""

    account_id: int
    values: dict[str, Any]  # every OUTPUT_COLUMNS value as it should now be
    changed: tuple[str, ...]  # the OUTPUT_COLUMNS whose value differs from the stored one
    snapshot: dict[str, Any]
    events: tuple[tuple[str, dict[str, Any]], ...]  # (kind, payload)
    health: HealthResult
    tier: TierResult
    renewal: RenewalResult
    lifecycle: LifecycleResult


# --------------------------------------------------------------------------------------------
# facts -> domain inputs
# --------------------------------------------------------------------------------------------


def _date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a date, got {value!r}")


def _tier(value: Any) -> Tier | None:
    return value if value in TIERS else None


def tier_input(facts: AccountFacts, as_of: date, cfg: ScoringConfig) -> TierInput:
    s = facts.stored
    override = None
    if _tier(s.get("tier_override")) is not None:
        until = _date(s.get("tier_override_until"))
        # The data model keeps no date the override was set: with an end date it runs to that
        # date, without one it holds until removed (docs/recompute.md).
        set_on = until - timedelta(days=cfg.tiering.override_days) if until else as_of
        override = TierOverride(
            tier=s["tier_override"],
            reason=(s.get("tier_override_reason") or "").strip() or "manual override",
            set_on=set_on,
            until_on=until,
        )
    deal = _last_won(facts.opportunities, ("new_business", None))
    return TierInput(
        arr=s.get("arr"),
        mrr=s.get("mrr"),
        last_deal=(
            ClosedWonDeal(deal.amount, deal.close_on, deal.term_months)
            if deal is not None and deal.amount is not None and deal.close_on is not None
            else None
        ),
        potential_arr=s.get("potential_arr"),
        strategic_account=bool(s.get("strategic_account")),
        override=override,
        current_tier=_tier(s.get("tier")),
    )


def _last_won(opps: Sequence[Opp], types: tuple[str | None, ...]) -> Opp | None:
    if not opps:
        return None
    won = [o for o in opps if o.is_won and o.close_on is not None and o.type in types]
    return max(won, key=lambda o: o.close_on or date.min) if won else None


def drop_window(latest_on: date, cfg: ScoringConfig) -> tuple[date, date]:
    """The days (both included) of the earlier usage snapshots that ``usage_drop`` may compare
    the latest one with: ``trend.days`` before it, give or take ``trend.tolerance_days``. The
    read (``app.db.health_store.load_chunk``) keeps only those and the latest."""
    target = latest_on - timedelta(days=cfg.trend.days)
    tolerance = timedelta(days=cfg.trend.tolerance_days)
    return target - tolerance, target + tolerance


def _usage(facts: AccountFacts, as_of: date, cfg: ScoringConfig) -> UsageSignals | None:
    rows = facts.usage
    if rows and rows[-1].observed_on > as_of:
        rows = [r for r in rows if r.observed_on <= as_of]
    if not rows:
        return None
    latest = rows[-1]
    # The snapshot closest to 30 days before the latest (23-37 days), for usage_drop; ties go to
    # the older one.
    target = latest.observed_on - timedelta(days=cfg.trend.days)
    tolerance = cfg.trend.tolerance_days
    before: UsageRow | None = None
    best: tuple[int, date] | None = None
    for r in rows[:-1]:
        distance = abs((r.observed_on - target).days)
        if distance <= tolerance and (best is None or (distance, r.observed_on) < best):
            best, before = (distance, r.observed_on), r
    seats = (
        latest.licensed_seats
        if latest.licensed_seats is not None
        else facts.stored.get("licensed_seats")
    )
    return UsageSignals(
        observed_on=latest.observed_on,
        active_users_30d=latest.active_users_30d,
        logins_30d=latest.logins_30d,
        licensed_seats=seats,
        key_features_used_30d=latest.key_features_used_30d,
        key_features_defined=latest.key_features_defined,
        last_login_on=latest.last_login_on,
        prev_active_users_30d=before.active_users_30d if before is not None else None,
    )


def _engagement(facts: AccountFacts, feeds: Feeds) -> EngagementSignals | None:
    if not feeds.touchpoints:
        return None
    last: date | None = None
    scheduled = attended = emails = answered = 0
    for a in facts.touches:
        if a.last_two_way_on is not None and (last is None or a.last_two_way_on > last):
            last = a.last_two_way_on
        scheduled += a.meetings_180d
        attended += a.meetings_attended_180d
        emails += a.emails_90d
        answered += a.emails_answered_90d
    return EngagementSignals(
        last_two_way_touch_on=last,
        meetings_scheduled_180d=scheduled,
        meetings_attended_180d=attended,
        csm_emails_90d=emails,
        csm_emails_answered_90d=answered,
    )


def _support(facts: AccountFacts, feeds: Feeds) -> SupportSignals | None:
    if not feeds.support:
        return None
    t = facts.tickets or TicketAggregate()
    return SupportSignals(
        tickets_30d=t.tickets_30d,
        tickets_prior_90d=t.tickets_prior_90d,
        tickets_90d=t.tickets_90d,
        fcr_90d=t.fcr_90d / t.closed_90d_with_fcr if t.closed_90d_with_fcr else None,
        escalations_90d=t.escalations_90d,
        oldest_open_p1_or_escalation_on=t.oldest_open_p1_on,
        last_ticket_on=t.last_ticket_on,
    )


def _contacts(facts: AccountFacts) -> tuple[ContactSignal, ...]:
    if not facts.contacts:
        return ()
    last = {a.contact_id: a.last_two_way_on for a in facts.touches if a.contact_id is not None}
    return tuple(
        ContactSignal(
            roles=frozenset(c.roles),
            last_two_way_touch_on=last.get(c.id),
            active=c.active,
            left_on=c.left_on,
        )
        for c in facts.contacts
    )


def _value(facts: AccountFacts) -> ValueSignals | None:
    if facts.onboarding_tasks is not None:
        return ValueSignals(
            onboarding=True,
            milestones=tuple(
                Milestone(t.due_on, t.done_on, t.code) for t in facts.onboarding_tasks
            ),
        )
    c = facts.criteria
    if not any(c.get(k) for k in ("met", "partly_met", "not_met")):
        return None
    return ValueSignals(
        criteria_met=c.get("met", 0),
        criteria_partly_met=c.get("partly_met", 0),
        criteria_not_met=c.get("not_met", 0),
    )


def _payment(facts: AccountFacts, as_of: date) -> PaymentSignals | None:
    if not facts.invoices_total:
        return None
    due = facts.oldest_open_invoice_due_on
    # Staleness (4.4: billing 30 days) counts from the last invoice the feed delivered.
    return PaymentSignals(
        observed_on=facts.billing_received_on or as_of, open_invoice_due_on=(due,) if due else ()
    )


def health_input(
    facts: AccountFacts, tier: Tier, as_of: date, feeds: Feeds, cfg: ScoringConfig
) -> HealthInput:
    s = facts.stored
    return HealthInput(
        tier=tier,
        customer_since_on=_date(s.get("customer_since_on")),
        usage=_usage(facts, as_of, cfg),
        engagement=_engagement(facts, feeds),
        nps=tuple(facts.nps),
        surveys=tuple(facts.surveys),
        support=_support(facts, feeds),
        contacts=_contacts(facts),
        value=_value(facts),
        payment=_payment(facts, as_of),
        history=tuple(facts.history),
    )


def renewal_input(facts: AccountFacts, ended: bool | None = None) -> RenewalInput:
    """``ended``: whether :func:`churned_on` gives a day (computed here when not given)."""
    s = facts.stored
    contracts: tuple[Contract, ...] = ()
    end, start = _date(s.get("contract_end_on")), _date(s.get("contract_start_on"))
    if end is not None or start is not None:
        contracts = (Contract(end_on=end, start_on=start, auto_renew=bool(s.get("auto_renew"))),)
    term = _last_won(facts.opportunities, ("new_business", "renewal", None))
    term_start = None if term is None else term.term_start_on or term.close_on
    open_renewals = [
        o.close_on
        for o in facts.opportunities
        if o.type == "renewal" and not o.is_closed and o.close_on is not None
    ]
    return RenewalInput(
        contracts=contracts,
        last_term_deal=(
            TermDeal(term_start, term.term_months, bool(s.get("auto_renew")))
            if term is not None and term_start is not None
            else None
        ),
        open_renewal_close_on=min(open_renewals) if open_renewals else None,
        ended=churned_on(facts) is not None if ended is None else ended,
    )


def churned_on(facts: AccountFacts) -> date | None:
    """The explicit end (domain.md 2): the account's ``churned_at``, or a renewal closed-lost
    after the last win. Never silence."""
    s = facts.stored
    explicit = _date(s.get("churned_at"))
    won = _last_won(facts.opportunities, ("new_business", "renewal", None))
    lost = [
        o.close_on
        for o in facts.opportunities
        if o.type == "renewal" and o.is_closed and not o.is_won and o.close_on is not None
    ]
    last_lost = max(lost) if lost else None
    if last_lost is not None and (won is None or (won.close_on or date.min) < last_lost):
        explicit = max(explicit, last_lost) if explicit else last_lost
    if explicit is not None and won is not None and (won.close_on or date.min) > explicit:
        return None  # won back since
    return explicit


class _Unset:
    """The default of an argument whose ``None`` is a value."""


UNSET = _Unset()


def _onboarding(facts: AccountFacts, usage: UsageSignals | None) -> OnboardingProgress | None:
    tasks = facts.onboarding_tasks
    if tasks is None:
        return None
    done = {t.code for t in tasks if t.done_on is not None}
    share = None
    if usage is not None and usage.licensed_seats:
        share = usage.active_users_30d / usage.licensed_seats
    return OnboardingProgress(
        go_live_done="go_live" in done,
        first_value_done="first_value" in done,
        admin_training_done="admin_training" in done,
        csat_sent="onboarding_csat" in done,
        active_seat_share=share,
        weekly_active_users=usage.active_users_30d if usage is not None else None,
    )


def lifecycle_facts(
    facts: AccountFacts,
    tier: Tier,
    health: HealthResult,
    usage: UsageSignals | None,
    renewal: RenewalResult,
    churned: date | _Unset | None = UNSET,
) -> LifecycleFacts:
    """``churned``: :func:`churned_on` of the account (computed here when not given)."""
    s = facts.stored
    opps = facts.opportunities
    close = _last_won(opps, ("new_business", None))
    current_usage = health.component("usage").value
    return LifecycleFacts(
        tier=tier,
        has_contract=bool(s.get("contract_end_on") or s.get("contract_start_on"))
        or _last_won(opps, ANY_TYPE) is not None,
        last_close_on=close.close_on if close is not None else None,
        churned_on=churned_on(facts) if isinstance(churned, _Unset) else churned,
        churn_reason=s.get("churn_reason") or "",
        onboarding=_onboarding(facts, usage),
        usage_monthly=(facts.previous_usage, current_usage),
        success_criterion_met=facts.criteria.get("met", 0) > 0,
        open_expansion=any(o.type == "expansion" and not o.is_closed for o in opps),
        days_to_renewal=renewal.days_to_renewal,
        term_months=renewal.term_months,
    )


def _stage_history(s: Mapping[str, Any]) -> tuple[StageEntry, ...]:
    """The current stage as the one history entry the rules need (its entry day)."""
    stage = s.get("lifecycle_stage")
    entered = _date(s.get("lifecycle_entered_at"))
    if stage is None or entered is None:
        return ()
    valid: tuple[Stage, ...] = (
        "trial",
        "onboarding",
        "adoption",
        "steady",
        "renewal",
        "expansion",
        "churned",
    )
    return (StageEntry(stage, entered),) if stage in valid else ()


# --------------------------------------------------------------------------------------------
# the outcome
# --------------------------------------------------------------------------------------------


def _round2(x: float) -> float:
    """``round(x, 2)``, without its decimal conversion for the whole-number floats most
    component values and sub-scores are (100.0, 60.0, 0.0, ...): the same value either way."""
    return x if type(x) is float and x.is_integer() else round(x, 2)


def component_doc(c: ComponentScore) -> dict[str, Any]:
    """A component as the snapshot and the API show it: its value with the numbers it read."""
    value = c.value
    subscores: dict[str, float | None] = {}
    for s in c.subscores:
        subscores[s.name] = None if s.value is None else _round2(s.value)
    return {
        "value": None if value is None else _round2(value),
        "status": c.status,
        "weight": c.weight,
        "subscores": subscores,
        "inputs": dict(c.inputs) if c.inputs else {},
        "flags": list(c.flags) if c.flags else [],
    }


def compute_account(
    facts: AccountFacts,
    as_of: date,
    now: datetime,
    feeds: Feeds,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> AccountOutcome:
    """Tier, health, renewal and lifecycle of one account on ``as_of``; ``now`` stamps a stage
    entered today and the events."""
    s = facts.stored
    tier = compute_tier(tier_input(facts, as_of, cfg), as_of, cfg)
    inp = health_input(facts, tier.tier, as_of, feeds, cfg)
    health = compute_health(inp, as_of, cfg)
    churned = churned_on(facts)
    renewal = compute_renewal(
        renewal_input(facts, churned is not None),
        as_of,
        tier=tier.tier,
        band=health.band,
        false_loyalty=health.false_loyalty,
        champion_left="champion_left" in health.flags,
        cfg=cfg,
    )
    lifecycle = compute_lifecycle(
        _stage_history(s),
        lifecycle_facts(facts, tier.tier, health, inp.usage, renewal, churned),
        as_of,
        cfg,
    )
    entered_at = s.get("lifecycle_entered_at")
    if lifecycle.change is not None or lifecycle.stage is None:
        entered_at = now if lifecycle.stage is not None else None
    flags = sorted({*health.flags, *tier.flags, *renewal.flags, *lifecycle.flags})
    values: dict[str, Any] = {
        "health_score": health.score,
        "health_band": health.band,
        "health_trend": health.trend,
        "health_reasons": health.reasons_text or None,
        "health_coverage": health.coverage,
        "loyalty_type": health.loyalty_type,
        "false_loyalty": health.false_loyalty,
        "tier": tier.tier,
        "growth_focus": tier.growth_focus,
        "renewal_on": renewal.renewal_on,
        "renewal_status": renewal.status,
        "renewal_risk": renewal.risk,
        "lifecycle_stage": lifecycle.stage,
        "lifecycle_entered_at": entered_at,
        "flags": flags,
    }
    # The columns that changed: stored and computed values compare as equal Python values
    # (aware datetimes, dates, lists); ``0`` is not ``None``.
    get = s.get
    changed = tuple(
        column
        for column, value in values.items()
        if ((old := get(column)) is None) != (value is None) or old != value
    )
    events: list[tuple[str, dict[str, Any]]] = []
    if tier.change is not None:
        events.append((tier.change.kind, dict(tier.change.payload())))
    old_band = s.get("health_band")
    if old_band is not None and old_band != health.band:
        events.append(
            (
                HEALTH_BAND_CHANGED,
                {
                    "old": old_band,
                    "new": health.band,
                    "score": health.score,
                    "reasons": [r.code for r in health.reasons],
                },
            )
        )
    if lifecycle.change is not None:
        events.append((lifecycle.change.kind, lifecycle.change.payload()))
    snapshot = {
        "account_id": facts.id,
        "computed_on": as_of,
        "computed_at": now,
        "score": health.score,
        "band": health.band,
        "coverage": health.coverage,
        "components": snapshot_doc(health),
        "flags": list(health.flags),
        "reasons": health.reasons_text or None,
        "model_version": health.model_version,
    }
    return AccountOutcome(
        facts.id, values, changed, snapshot, tuple(events), health, tier, renewal, lifecycle
    )


def snapshot_doc(health: HealthResult) -> dict[str, Any]:
    """``health_snapshots.components``: each component with its inputs, and the rest of the
    result the API shows (reasons with their codes, trend delta, caps, uncapped band)."""
    return {
        "components": {c.name: component_doc(c) for c in health.components},
        "reasons": [{"code": r.code, "text": r.text} for r in health.reasons],
        "trend_delta": health.trend_delta,
        "caps": list(health.caps),
        "uncapped_band": health.uncapped_band,
        "loyalty_type": health.loyalty_type,
    }
