"""The seven health components of domain.md 4.3, each a pure function of its signals.

Every function returns a :class:`ComponentScore`: the value (0-100, or ``None`` when the data is
missing or stale: never 0), the sub-scores, the numbers it read (``inputs``, shown by the API
and quoted by the reasons) and the flags it raised. Weights and coverage are applied by
``app.domain.health``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from app.domain.config import ScoringConfig
from app.domain.signals import (
    ContactSignal,
    EngagementSignals,
    HealthInput,
    NpsAnswer,
    PaymentSignals,
    SupportSignals,
    SurveyAnswer,
    UsageSignals,
    ValueSignals,
)
from app.domain.values import Tier, clamp, lin, quick_init, wmean

ComponentName = Literal[
    "usage", "engagement", "sentiment", "support", "relationship", "value", "payment"
]
COMPONENTS: tuple[ComponentName, ...] = (
    "usage",
    "engagement",
    "sentiment",
    "support",
    "relationship",
    "value",
    "payment",
)
Status = Literal["ok", "missing", "stale", "skipped", "disabled"]
InputValue = float | int | str | None


@quick_init
@dataclass(frozen=True)
class SubScore:
    name: str
    value: float | None  # None: no data for this sub-score (left out of the wmean)
    weight: float


@quick_init
@dataclass(frozen=True)
class ComponentScore:
    name: ComponentName
    value: float | None
    status: Status
    subscores: tuple[SubScore, ...] = ()
    inputs: dict[str, InputValue] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    weight: int = 0  # filled by health.compute_health from the configuration

    @property
    def available(self) -> bool:
        return self.value is not None


def _days(as_of: date, then: date) -> int:
    return (as_of - then).days


# --- usage ------------------------------------------------------------------------------------


def score_usage(inp: HealthInput, as_of: date, cfg: ScoringConfig) -> ComponentScore:
    """4.3 usage: seats, logins per active user per week, key features; dormant and drop."""
    c = cfg.usage
    since = inp.customer_since_on
    if since is not None and _days(as_of, since) < c.grace_days:
        return ComponentScore(
            "usage",
            None,
            "skipped",
            inputs={"account_age_days": _days(as_of, since)},
            flags=("new_account",),
        )
    sig: UsageSignals | None = inp.usage
    if sig is None:
        return ComponentScore("usage", None, "missing")
    age = _days(as_of, sig.observed_on)
    if age > cfg.max_age_days.usage:
        return ComponentScore(
            "usage", None, "stale", inputs={"observed_days_ago": age}, flags=("stale_usage",)
        )
    inputs: dict[str, InputValue] = {
        "active_users_30d": sig.active_users_30d,
        "logins_30d": sig.logins_30d,
        "licensed_seats": sig.licensed_seats,
    }
    seat = freq = breadth = None
    if sig.licensed_seats:
        share = sig.active_users_30d / sig.licensed_seats
        seat = lin(share, c.seat_lo, c.seat_hi)
        inputs["seat_share"] = round(share, 4)
    if sig.active_users_30d > 0:
        per_week = sig.logins_30d / sig.active_users_30d / c.weeks_per_30d
        freq = lin(per_week, c.logins_per_user_week_lo, c.logins_per_user_week_hi)
        inputs["logins_per_user_week"] = round(per_week, 3)
    defined = sig.key_features_defined or c.key_features_defined
    if defined and sig.key_features_used_30d is not None:
        inputs["key_features_used_30d"] = sig.key_features_used_30d
        inputs["key_features_defined"] = defined
        breadth = lin(sig.key_features_used_30d / defined, c.features_lo, c.features_hi)
    subs = (
        SubScore("seat", seat, c.weight_seat),
        SubScore("freq", freq, c.weight_freq),
        SubScore("breadth", breadth, c.weight_breadth),
    )
    value = wmean(((seat, c.weight_seat), (freq, c.weight_freq), (breadth, c.weight_breadth)))
    flags: list[str] = []
    # Days since any login: the last login's date, or, with no login in the snapshot's 30-day
    # window, at least 30 days before the snapshot (a fact, not a guess).
    since_login: int | None = None
    if sig.last_login_on is not None:
        since_login = _days(as_of, sig.last_login_on)
    elif sig.logins_30d == 0:
        since_login = age + 30
    inputs["days_since_login"] = since_login
    if since_login is not None and since_login >= c.dormant_days:
        value = 0.0
        flags.append("dormant")
    elif (
        value is not None
        and sig.prev_active_users_30d is not None
        and sig.prev_active_users_30d >= c.drop_min_users
        and sig.active_users_30d <= (1 - c.drop_share) * sig.prev_active_users_30d
    ):
        value = min(value, c.drop_cap)
        flags.append("usage_drop")
        inputs["prev_active_users_30d"] = sig.prev_active_users_30d
    if value is None:
        return ComponentScore("usage", None, "missing", subs, inputs)
    return ComponentScore("usage", value, "ok", subs, inputs, tuple(flags))


# --- engagement ------------------------------------------------------------------------------


def score_engagement(inp: HealthInput, as_of: date, cfg: ScoringConfig) -> ComponentScore:
    """4.3 engagement: recency of two-way contact against the tier's cadence, attendance,
    answers to the CSM's e-mails."""
    c = cfg.engagement
    sig: EngagementSignals | None = inp.engagement
    if sig is None:
        return ComponentScore("engagement", None, "missing")
    cadence = cfg.service.cadence_days.of(inp.tier)
    inputs: dict[str, InputValue] = {"cadence_days": cadence}
    flags: list[str] = []
    if sig.last_two_way_touch_on is not None:
        days = _days(as_of, sig.last_two_way_touch_on)
        r = days / cadence if cadence > 0 else float("inf")
        inputs["days_since_two_way_touch"] = days
        if r <= c.recency_full:
            recency = 100.0
        elif r <= c.recency_mid:
            recency = c.recency_mid_points
        elif r <= c.recency_low:
            recency = c.recency_low_points
        else:
            recency = 0.0
        if r > c.recency_full:
            flags.append("no_touch")
    else:
        age = _days(as_of, inp.customer_since_on) if inp.customer_since_on else None
        inputs["days_since_two_way_touch"] = None
        inputs["account_age_days"] = age
        if age is not None and age <= cadence:
            recency = 100.0
        else:
            recency = 0.0
            flags.append("no_touch")
    attend = respond = None
    if sig.meetings_scheduled_180d >= c.attend_min_scheduled:
        attend = lin(
            sig.meetings_attended_180d / sig.meetings_scheduled_180d, c.attend_lo, c.attend_hi
        )
        inputs["meetings_attended_180d"] = sig.meetings_attended_180d
        inputs["meetings_scheduled_180d"] = sig.meetings_scheduled_180d
    if sig.csm_emails_90d >= c.respond_min_sent:
        respond = lin(sig.csm_emails_answered_90d / sig.csm_emails_90d, c.respond_lo, c.respond_hi)
        inputs["csm_emails_answered_90d"] = sig.csm_emails_answered_90d
        inputs["csm_emails_90d"] = sig.csm_emails_90d
    subs = (
        SubScore("recency", recency, c.weight_recency),
        SubScore("attend", attend, c.weight_attend),
        SubScore("respond", respond, c.weight_respond),
    )
    value = wmean(
        ((recency, c.weight_recency), (attend, c.weight_attend), (respond, c.weight_respond))
    )
    return ComponentScore("engagement", value, "ok", subs, inputs, tuple(flags))


# --- sentiment -------------------------------------------------------------------------------


def nps_points(score: int, cfg: ScoringConfig) -> float:
    """4.3: promoter 100, passive 60, detractor 5 points per point (0..30)."""
    c = cfg.sentiment
    if score >= c.promoter_min:
        return 100.0
    if score >= c.passive_min:
        return c.passive_points
    return clamp(c.detractor_points_per_point * score)


def _latest_per_contact(answers: Iterable[NpsAnswer]) -> list[NpsAnswer]:
    latest: dict[str, NpsAnswer] = {}
    anonymous: list[NpsAnswer] = []
    for a in answers:
        if a.contact_key is None:
            anonymous.append(a)
            continue
        seen = latest.get(a.contact_key)
        if seen is None or a.responded_on > seen.responded_on:
            latest[a.contact_key] = a
    return [*latest.values(), *anonymous]


def _survey_points(a: SurveyAnswer, lo_default: int, hi_default: int, invert: bool) -> float | None:
    lo = a.scale_min if a.scale_min is not None else lo_default
    hi = a.scale_max if a.scale_max is not None else hi_default
    if hi <= lo:
        return None
    share = clamp((a.score - lo) / (hi - lo), 0.0, 1.0)
    return 100.0 * (1.0 - share if invert else share)


def _fresh_surveys(
    answers: Iterable[SurveyAnswer], kind: str, as_of: date, max_age: int, flags: list[str]
) -> list[SurveyAnswer]:
    """The answers of ``kind`` at most ``max_age`` days old; flags ``stale_<kind>`` when there
    are answers of that kind but none is fresh (4.4)."""
    all_of_kind = [a for a in answers if a.kind == kind]
    fresh = [a for a in all_of_kind if 0 <= _days(as_of, a.responded_on) <= max_age]
    if all_of_kind and not fresh:
        flags.append(f"stale_{kind}")
    return fresh


def score_sentiment(inp: HealthInput, as_of: date, cfg: ScoringConfig) -> ComponentScore:
    """4.3 sentiment: NPS (latest answer per contact, key roles twice), CSAT, CES."""
    c = cfg.sentiment
    ages = cfg.max_age_days
    flags: list[str] = []
    inputs: dict[str, InputValue] = {}

    nps: float | None = None
    if inp.nps:  # most accounts have an answer or two; some none at all
        fresh_nps = [
            a for a in inp.nps if 0 <= (as_of - a.responded_on).days <= ages.nps
        ]  # an answer dated after as_of is not yet known
        if not fresh_nps:
            flags.append("stale_nps")
        latest = _latest_per_contact(fresh_nps)
        nps = wmean(
            (nps_points(a.score, cfg), c.key_role_weight if a.role in c.key_roles else 1.0)
            for a in latest
        )
        if latest:
            inputs["nps_answers"] = len(latest)
        detractors = [
            a
            for a in latest
            if a.role in c.key_roles
            and a.score <= c.detractor_max
            and (as_of - a.responded_on).days <= c.detractor_days
        ]
        if detractors:
            worst = min(detractors, key=lambda a: (a.score, a.role or ""))
            flags.append("detractor")
            inputs["detractor_role"] = worst.role
            inputs["detractor_nps"] = worst.score

    csat: float | None = None
    ces: float | None = None
    if inp.surveys:  # most accounts have no CSAT or CES answer
        csat_pts = [
            p
            for a in _fresh_surveys(inp.surveys, "csat", as_of, ages.csat, flags)
            if (p := _survey_points(a, c.csat_scale_min, c.csat_scale_max, invert=False))
            is not None
        ]
        ces_pts = [
            p
            for a in _fresh_surveys(inp.surveys, "ces", as_of, ages.ces, flags)
            if (
                p := _survey_points(
                    a, c.ces_scale_min, c.ces_scale_max, invert=not c.ces_high_is_low_effort
                )
            )
            is not None
        ]
        if csat_pts:
            csat = sum(csat_pts) / len(csat_pts)
            inputs["csat_answers"] = len(csat_pts)
        if ces_pts:
            ces = sum(ces_pts) / len(ces_pts)
            inputs["ces_answers"] = len(ces_pts)
    subs = (
        SubScore("nps", nps, c.weight_nps),
        SubScore("csat", csat, c.weight_csat),
        SubScore("ces", ces, c.weight_ces),
    )
    value = wmean(((nps, c.weight_nps), (csat, c.weight_csat), (ces, c.weight_ces)))
    if value is None:
        status: Status = "stale" if any(f.startswith("stale_") for f in flags) else "missing"
        return ComponentScore("sentiment", None, status, subs, inputs, tuple(flags))
    return ComponentScore("sentiment", value, "ok", subs, inputs, tuple(flags))


# --- support ---------------------------------------------------------------------------------


def score_support(inp: HealthInput, as_of: date, cfg: ScoringConfig) -> ComponentScore:
    """4.3 support: penalties for a long-open P1/escalation, escalations, a spike, low FCR.
    Silence is noted (``inputs['silent']``) for the reasons but never penalised."""
    c = cfg.support
    sig: SupportSignals | None = inp.support
    if sig is None:
        return ComponentScore("support", None, "missing")
    s = 100.0
    flags: list[str] = []
    inputs: dict[str, InputValue] = {
        "tickets_30d": sig.tickets_30d,
        "tickets_90d": sig.tickets_90d,
        "escalations_90d": sig.escalations_90d,
    }
    if sig.oldest_open_p1_or_escalation_on is not None:
        open_days = _days(as_of, sig.oldest_open_p1_or_escalation_on)
        inputs["p1_open_days"] = open_days
        if open_days > c.p1_age_days:
            s -= c.p1_penalty
    s -= min(c.escalation_penalty_max, c.escalation_penalty * sig.escalations_90d)
    baseline = sig.tickets_prior_90d / 3
    if sig.tickets_30d >= c.spike_min_tickets and sig.tickets_30d >= c.spike_factor * baseline:
        s -= c.spike_penalty
        flags.append("ticket_spike")
        inputs["mean_monthly_tickets_prior_90d"] = round(baseline, 1)
    if (
        sig.tickets_90d >= c.fcr_min_tickets
        and sig.fcr_90d is not None
        and sig.fcr_90d < c.fcr_floor
    ):
        s -= c.fcr_penalty
        inputs["fcr_90d"] = round(sig.fcr_90d, 3)
    silent = sig.last_ticket_on is None or _days(as_of, sig.last_ticket_on) >= c.silent_days
    inputs["silent"] = "yes" if silent else "no"
    return ComponentScore("support", max(0.0, s), "ok", (), inputs, tuple(flags))


# --- relationship ----------------------------------------------------------------------------


def _touched_within(contact: ContactSignal, as_of: date, days: int) -> bool:
    last = contact.last_two_way_touch_on
    return last is not None and 0 <= _days(as_of, last) <= days


def score_relationship(inp: HealthInput, as_of: date, cfg: ScoringConfig) -> ComponentScore:
    """4.3 relationship: champion, breadth of contact, decision-maker access; champion left."""
    c = cfg.relationship
    contacts = inp.contacts
    if not contacts:
        return ComponentScore("relationship", None, "missing")
    active = [k for k in contacts if k.active and k.left_on is None]
    champion = any(
        "champion" in k.roles and _touched_within(k, as_of, c.champion_touch_days) for k in active
    )
    touched = sum(1 for k in active if _touched_within(k, as_of, c.contacts_touch_days))
    decision = any(
        k.roles & set(c.decision_roles) and _touched_within(k, as_of, c.decision_touch_days)
        for k in active
    )
    s = (
        c.champion_points * champion
        + c.contacts_points * (touched >= c.contacts_min)
        + c.decision_points * decision
    )
    flags: list[str] = []
    inputs: dict[str, InputValue] = {
        "contacts": len(contacts),
        "contacts_touched_180d": touched,
        "champion_engaged": "yes" if champion else "no",
        "decision_maker_engaged": "yes" if decision else "no",
    }
    left = [
        k
        for k in contacts
        if "champion" in k.roles
        and k.left_on is not None
        and 0 <= _days(as_of, k.left_on) <= c.champion_left_days
    ]
    if left:
        s = min(s, c.champion_left_cap)
        flags.append("champion_left")
        inputs["champion_left_days_ago"] = min(_days(as_of, k.left_on) for k in left if k.left_on)
    return ComponentScore("relationship", s, "ok", (), inputs, tuple(flags))


# --- value -----------------------------------------------------------------------------------


def score_value(inp: HealthInput, as_of: date, cfg: ScoringConfig) -> ComponentScore:
    """4.3 value: onboarding milestones on time while onboarding, else success criteria."""
    c = cfg.value
    sig: ValueSignals | None = inp.value
    if sig is None:
        return ComponentScore("value", None, "missing")
    if sig.onboarding:
        due = [m for m in sig.milestones if m.due_on <= as_of]
        on_time = sum(1 for m in due if m.done_on is not None and m.done_on <= m.due_on)
        late = sum(1 for m in due if m.done_on is not None and m.done_on > m.due_on)
        overdue = [m for m in due if m.done_on is None and _days(as_of, m.due_on) > c.overdue_days]
        inputs: dict[str, InputValue] = {
            "milestones_due": len(due),
            "milestones_on_time": on_time,
            "milestones_late": late,
            "milestones_overdue": len(overdue),
        }
        value = 100.0 if not due else 100.0 * (on_time + c.late_credit * late) / len(due)
        flags = ("onboarding_overdue",) if overdue else ()
        if overdue:
            inputs["most_overdue_days"] = max(_days(as_of, m.due_on) for m in overdue)
        return ComponentScore("value", value, "ok", (), inputs, flags)
    assessed = sig.criteria_met + sig.criteria_partly_met + sig.criteria_not_met
    inputs = {
        "criteria_met": sig.criteria_met,
        "criteria_partly_met": sig.criteria_partly_met,
        "criteria_assessed": assessed,
    }
    if assessed <= 0:
        return ComponentScore("value", None, "missing", (), inputs)
    value = 100.0 * (sig.criteria_met + c.partly_met_credit * sig.criteria_partly_met) / assessed
    return ComponentScore("value", value, "ok", (), inputs)


# --- payment ---------------------------------------------------------------------------------


def score_payment(inp: HealthInput, as_of: date, cfg: ScoringConfig) -> ComponentScore:
    """4.3 payment: the largest days overdue of an open invoice, in steps."""
    c = cfg.payment
    sig: PaymentSignals | None = inp.payment
    if sig is None:
        return ComponentScore("payment", None, "missing")
    age = _days(as_of, sig.observed_on)
    if age > cfg.max_age_days.billing:
        return ComponentScore(
            "payment", None, "stale", inputs={"observed_days_ago": age}, flags=("stale_billing",)
        )
    d = max([0, *(_days(as_of, due) for due in sig.open_invoice_due_on)])
    if d == 0:
        value = 100.0
    elif d <= c.mid_days:
        value = c.mid_points
    elif d <= c.late_days:
        value = c.late_points
    else:
        value = 0.0
    flags = ("payment_overdue",) if d > c.late_days else ()
    return ComponentScore("payment", value, "ok", (), {"max_days_overdue": d}, flags)


SCORERS = {
    "usage": score_usage,
    "engagement": score_engagement,
    "sentiment": score_sentiment,
    "support": score_support,
    "relationship": score_relationship,
    "value": score_value,
    "payment": score_payment,
}


def tier_cadence(tier: Tier, cfg: ScoringConfig) -> int:
    return cfg.service.cadence_days.of(tier)
