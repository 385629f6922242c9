"""Reasons for a health result (domain.md 4.8): up to 3, most severe first, with numbers.

Flags come first in :data:`FLAG_ORDER`; then the components that lost the most points
(``weight * (100 - value) / available weight``, only from ``min_lost_points``); a green account
with no flag gets its strongest components instead. :func:`join_reasons` joins them with "; " and
cuts at a reason boundary so the text fits a Salesforce Text(255) field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.domain.components import ComponentScore, InputValue
from app.domain.config import ScoringConfig
from app.domain.values import Band, quick_init, round_half_up

# 4.8's order. `silent` (4.3 support: reported, not penalised) and `new_account` (4.3 usage
# grace) are ours, placed after the flags that cost points.
FLAG_ORDER: tuple[str, ...] = (
    "false_loyalty",
    "payment_overdue",
    "dormant",
    "champion_left",
    "usage_drop",
    "onboarding_overdue",
    "ticket_spike",
    "detractor",
    "no_touch",
    "silent",
    "insufficient_data",
    "new_account",
    "stale_usage",
    "stale_nps",
    "stale_csat",
    "stale_ces",
    "stale_billing",
)


@quick_init
@dataclass(frozen=True)
class Reason:
    code: str
    text: str


def _n(x: InputValue) -> str:
    """A number for a sentence: ints as ints, floats with one decimal at most."""
    if x is None:
        return "?"
    if isinstance(x, float):
        return str(round_half_up(x)) if abs(x - round(x)) < 0.05 else f"{x:.1f}"
    return str(x)


def _pct(x: InputValue) -> str:
    return "?" if not isinstance(x, int | float) else str(round_half_up(100 * float(x)))


def _role(x: InputValue) -> str:
    return str(x).replace("_", " ") if x else "contact"


class _Facts:
    """Looks up a component's inputs by name: ``facts['usage']['seat_share']``."""

    def __init__(self, components: Sequence[ComponentScore]) -> None:
        self._by: dict[str, ComponentScore] = {c.name: c for c in components}

    def get(self, component: str, key: str) -> InputValue:
        c = self._by.get(component)
        return None if c is None else c.inputs.get(key)

    def value(self, component: str) -> float | None:
        c = self._by.get(component)
        return None if c is None else c.value


def _flag_text(flag: str, f: _Facts, coverage: int, cfg: ScoringConfig) -> str:
    if flag == "false_loyalty":
        share = f.get("usage", "seat_share")
        high = f"{_pct(share)} % seats" if share is not None else f"usage {_n(f.value('usage'))}"
        if f.get("sentiment", "detractor_nps") is not None:
            unhappy = (
                f"{_role(f.get('sentiment', 'detractor_role'))} "
                f"NPS {_n(f.get('sentiment', 'detractor_nps'))}"
            )
        else:
            unhappy = f"sentiment {_n(f.value('sentiment'))}"
        return f"High usage ({high}) but unhappy ({unhappy}): false-loyalty risk"
    if flag in ("payment_overdue",):
        return f"Invoice {_n(f.get('payment', 'max_days_overdue'))} days overdue"
    if flag == "dormant":
        days = f.get("usage", "days_since_login")
        return f"No login for {_n(days)} days" if days is not None else "No login recently"
    if flag == "champion_left":
        return f"Champion left {_n(f.get('relationship', 'champion_left_days_ago'))} days ago"
    if flag == "usage_drop":
        prev = f.get("usage", "prev_active_users_30d")
        now = f.get("usage", "active_users_30d")
        if isinstance(prev, int) and isinstance(now, int) and prev > 0:
            down = round_half_up(100 * (prev - now) / prev)
            return f"Active users down {down} % vs previous 30 days"
        return "Active users down sharply vs previous 30 days"
    if flag == "onboarding_overdue":
        return (
            f"{_n(f.get('value', 'milestones_overdue'))} onboarding milestone(s) overdue, "
            f"up to {_n(f.get('value', 'most_overdue_days'))} days"
        )
    if flag == "ticket_spike":
        return (
            f"{_n(f.get('support', 'tickets_30d'))} tickets in 30 days vs "
            f"{_n(f.get('support', 'mean_monthly_tickets_prior_90d'))} a month before"
        )
    if flag == "detractor":
        return (
            f"Detractor: {_role(f.get('sentiment', 'detractor_role'))} "
            f"NPS {_n(f.get('sentiment', 'detractor_nps'))}"
        )
    if flag == "no_touch":
        cadence = f.get("engagement", "cadence_days")
        days = f.get("engagement", "days_since_two_way_touch")
        if days is None:
            return f"No two-way contact yet (cadence {_n(cadence)})"
        return f"No two-way contact for {_n(days)} days (cadence {_n(cadence)})"
    if flag == "silent":
        return (
            f"No support contact in {cfg.support.silent_days} days and low usage "
            f"({_n(f.value('usage'))})"
        )
    if flag == "insufficient_data":
        return f"Only {coverage} % of the health data available (need {cfg.min_coverage} %)"
    if flag == "new_account":
        return f"New account: usage scored after {cfg.usage.grace_days} days"
    if flag == "stale_usage":
        return f"Usage feed {_n(f.get('usage', 'observed_days_ago'))} days old"
    if flag == "stale_billing":
        return f"Billing feed {_n(f.get('payment', 'observed_days_ago'))} days old"
    if flag == "stale_nps":
        return f"No NPS answer in {cfg.max_age_days.nps} days"
    if flag == "stale_csat":
        return f"No CSAT answer in {cfg.max_age_days.csat} days"
    if flag == "stale_ces":
        return f"No CES answer in {cfg.max_age_days.ces} days"
    return flag.replace("_", " ")


def _weakest_sub(c: ComponentScore) -> str | None:
    """The sub-score with the lowest value (the first of equals); None if none has a value."""
    weakest: str | None = None
    lowest = 0.0
    for s in c.subscores:
        if s.value is not None and (weakest is None or s.value < lowest):
            weakest, lowest = s.name, s.value
    return weakest


def _component_reason(c: ComponentScore) -> Reason:
    i: Mapping[str, InputValue] = c.inputs
    weakest = _weakest_sub(c)
    if c.name == "usage":
        if weakest == "freq":
            return Reason(
                "low_logins", f"{_n(i.get('logins_per_user_week'))} logins per user a week"
            )
        if weakest == "breadth":
            return Reason(
                "few_features",
                f"{_n(i.get('key_features_used_30d'))} of "
                f"{_n(i.get('key_features_defined'))} key features used",
            )
        return Reason(
            "low_seats",
            f"{_n(i.get('active_users_30d'))} of {_n(i.get('licensed_seats'))} seats active",
        )
    if c.name == "engagement":
        if weakest == "attend":
            return Reason(
                "low_engagement",
                f"{_n(i.get('meetings_attended_180d'))} of "
                f"{_n(i.get('meetings_scheduled_180d'))} meetings attended in 180 days",
            )
        if weakest == "respond":
            return Reason(
                "low_engagement",
                f"{_n(i.get('csm_emails_answered_90d'))} of "
                f"{_n(i.get('csm_emails_90d'))} CSM e-mails answered in 90 days",
            )
        days = i.get("days_since_two_way_touch")
        when = f"for {_n(days)} days" if days is not None else "yet"
        return Reason(
            "no_touch", f"No two-way contact {when} (cadence {_n(i.get('cadence_days'))})"
        )
    if c.name == "sentiment":
        if weakest in ("csat", "ces"):
            return Reason("low_csat", f"Satisfaction {_n(c.value)} of 100 (CSAT/CES)")
        return Reason(
            "detractor", f"Low NPS: {_n(c.value)} of 100 over {_n(i.get('nps_answers'))} answers"
        )
    if c.name == "support":
        return Reason(
            "ticket_load",
            f"{_n(i.get('tickets_30d'))} tickets in 30 days, "
            f"{_n(i.get('escalations_90d'))} escalations in 90 days",
        )
    if c.name == "relationship":
        return Reason(
            "single_threaded",
            f"{_n(i.get('contacts_touched_180d'))} contacts reached in 180 days; "
            f"champion engaged: {i.get('champion_engaged')}",
        )
    if c.name == "value":
        if "milestones_due" in i:
            return Reason(
                "goals_unmet",
                f"{_n(i.get('milestones_on_time'))} of {_n(i.get('milestones_due'))} "
                "onboarding milestones on time",
            )
        return Reason(
            "goals_unmet",
            f"{_n(i.get('criteria_met'))} of {_n(i.get('criteria_assessed'))} success criteria met",
        )
    return Reason("payment_late", f"Invoice {_n(i.get('max_days_overdue'))} days overdue")


def _strong_reason(c: ComponentScore) -> Reason:
    i = c.inputs
    if c.name == "usage":
        share = i.get("seat_share")
        if share is not None:
            return Reason("strong_usage", f"Strong usage: {_pct(share)} % of seats active")
        return Reason("strong_usage", f"Strong usage ({_n(c.value)} of 100)")
    if c.name == "engagement":
        days = i.get("days_since_two_way_touch")
        if days is not None:
            return Reason("engaged", f"Two-way contact {_n(days)} days ago")
        return Reason("engaged", f"Engaged ({_n(c.value)} of 100)")
    if c.name == "sentiment":
        return Reason("promoter", f"Happy customer: sentiment {_n(c.value)} of 100")
    if c.name == "support":
        return Reason(
            "calm_support", f"Calm support: {_n(i.get('tickets_30d'))} tickets in 30 days"
        )
    if c.name == "relationship":
        return Reason(
            "multi_threaded", f"{_n(i.get('contacts_touched_180d'))} contacts reached in 180 days"
        )
    if c.name == "value":
        return Reason("goals_met", f"Value delivered ({_n(c.value)} of 100)")
    return Reason("pays_on_time", "Invoices paid on time")


def build_reasons(
    components: Sequence[ComponentScore],
    flags: Sequence[str],
    band: Band,
    coverage: int,
    cfg: ScoringConfig,
) -> tuple[Reason, ...]:
    """The ordered reasons (at most ``cfg.reasons.max_count``), each text with its numbers."""
    rc = cfg.reasons
    reasons: list[Reason] = []
    # FLAG_ORDER's flags in its order, then any other flag alphabetically (each once).
    ordered = sorted(set(flags), key=flag_rank) if flags else []
    if ordered:  # a third of the accounts have no flag
        facts = _Facts(components)
        for flag in ordered:
            reasons.append(Reason(flag, _flag_text(flag, facts, coverage, cfg)))
    available = [(i, c) for i, c in enumerate(components) if c.value is not None and c.weight > 0]
    avail_weight = sum(c.weight for _i, c in available)
    if band == "green" and not ordered:
        strongest = sorted(available, key=lambda t: (-(t[1].value or 0.0), -t[1].weight, t[0]))
        reasons.extend(_strong_reason(c) for _i, c in strongest[: rc.strong_count])
    elif avail_weight > 0:
        # Most points lost first, then in component order (the index: never a tie).
        lost = sorted(
            (-c.weight * (100.0 - (c.value or 0.0)) / avail_weight, i, c)
            for i, (_index, c) in enumerate(available)
        )
        codes = {r.code for r in reasons}
        for minus_points, _, c in lost:
            if -minus_points < rc.min_lost_points:
                break
            if any(f in flags for f in c.flags):
                continue  # its own flag (dormant, payment_overdue, ...) already says why
            reason = _component_reason(c)
            if reason.code not in codes:
                reasons.append(reason)
                codes.add(reason.code)
    limit = rc.max_chars
    return tuple(
        r if len(r.text) <= limit else Reason(r.code, r.text[:limit])
        for r in reasons[: rc.max_count]
    )


_FLAG_RANK: dict[str, int] = {flag: i for i, flag in enumerate(FLAG_ORDER)}


def flag_rank(flag: str) -> tuple[int, str]:
    """Sort key: the flags of :data:`FLAG_ORDER` in its order, then any other alphabetically."""
    return (_FLAG_RANK.get(flag, len(FLAG_ORDER)), flag)


def join_reasons(reasons: Sequence[Reason], max_chars: int = 255) -> str:
    """Texts joined with "; ", cut at a reason boundary to fit ``max_chars``."""
    out = ""
    for r in reasons:
        text = r.text[:max_chars]
        candidate = text if not out else f"{out}; {text}"
        if len(candidate) > max_chars:
            break
        out = candidate
    return out
