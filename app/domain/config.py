"""Every threshold of the domain rules, with domain.md's defaults (sections 2-5 and 10).

Pure: frozen dataclasses and nothing else. ``app.settings.ScoringSettings`` builds a
:class:`ScoringConfig` from ``CRMSYNC_SCORING__...`` variables and an optional TOML file; the
domain functions take it as an argument and never read settings themselves. Field names follow
domain.md 10's setting names, so ``scoring.usage.dormant_days`` is
``CRMSYNC_SCORING__USAGE__DORMANT_DAYS``. A default marked "ours" in domain.md is ours here too;
docs/domain-rules.md lists each rule with its section, setting and default.

Each dataclass checks its own invariants in ``__post_init__`` (raising ``ValueError``), so a
configuration that would make a rule meaningless (green below yellow, all weights 0) never loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from app.domain.values import RISK_LEVELS, RiskLevel, Tier


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


_TIER_FIELDS = frozenset(("key", "high", "low", "tech"))


@dataclass(frozen=True)
class PerTier:
    """One integer per tier (cadences, prep days, max onboarding days)."""

    key: int
    high: int
    low: int
    tech: int

    def __post_init__(self) -> None:
        _check(min(self.key, self.high, self.low, self.tech) >= 0, "per-tier values must be >= 0")

    def of(self, tier: Tier) -> int:
        if tier not in _TIER_FIELDS:
            raise KeyError(tier)
        value: int = getattr(self, tier)
        return value


# --- health (domain.md 4) --------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """4.2; a weight of 0 disables a component (4.4: not missing, coverage unaffected)."""

    usage: int = 30
    engagement: int = 15
    sentiment: int = 15
    support: int = 10
    relationship: int = 10
    value: int = 10
    payment: int = 10

    def __post_init__(self) -> None:
        values = self.as_dict().values()
        _check(min(values) >= 0, "scoring weights must be >= 0")
        _check(sum(values) > 0, "at least one scoring weight must be > 0")

    def as_dict(self) -> dict[str, int]:
        return {
            "usage": self.usage,
            "engagement": self.engagement,
            "sentiment": self.sentiment,
            "support": self.support,
            "relationship": self.relationship,
            "value": self.value,
            "payment": self.payment,
        }


@dataclass(frozen=True)
class UsageConfig:
    """4.3 usage; the login target and key features are product settings (004:426)."""

    seat_lo: float = 0.20
    seat_hi: float = 0.80
    logins_per_user_week_lo: float = 0.25
    logins_per_user_week_hi: float = 2.0
    weeks_per_30d: float = 4.29
    features_lo: float = 0.0
    features_hi: float = 0.6
    key_features_defined: int | None = None  # product default when a snapshot carries none
    weight_seat: float = 0.40
    weight_freq: float = 0.30
    weight_breadth: float = 0.30
    dormant_days: int = 14
    drop_share: float = 0.30  # "active_users_30d <= 0.70 * prev": a fall of 30 % or more
    drop_min_users: int = 5
    drop_cap: float = 50.0
    grace_days: int = 30

    def __post_init__(self) -> None:
        _check(self.seat_lo < self.seat_hi, "usage.seat_lo must be below usage.seat_hi")
        _check(
            self.logins_per_user_week_lo < self.logins_per_user_week_hi,
            "usage.logins_per_user_week_lo must be below usage.logins_per_user_week_hi",
        )
        _check(self.features_lo < self.features_hi, "usage.features_lo must be below features_hi")
        _check(0 < self.drop_share < 1, "usage.drop_share must be between 0 and 1")
        _check(self.weeks_per_30d > 0, "usage.weeks_per_30d must be > 0")


@dataclass(frozen=True)
class EngagementConfig:
    """4.3 engagement: recency steps in multiples of the tier's cadence (3.4)."""

    recency_full: float = 1.0  # r <= 1: 100
    recency_mid: float = 1.5  # r <= 1.5: 60
    recency_low: float = 2.0  # r <= 2: 30, else 0
    recency_mid_points: float = 60.0
    recency_low_points: float = 30.0
    attend_lo: float = 0.5
    attend_hi: float = 0.9
    attend_min_scheduled: int = 2
    respond_lo: float = 0.2
    respond_hi: float = 0.6
    respond_min_sent: int = 3
    weight_recency: float = 0.60
    weight_attend: float = 0.20
    weight_respond: float = 0.20

    def __post_init__(self) -> None:
        _check(
            0 < self.recency_full <= self.recency_mid <= self.recency_low,
            "engagement recency steps must rise: full <= mid <= low",
        )
        _check(self.attend_lo < self.attend_hi, "engagement.attend_lo must be below attend_hi")
        _check(self.respond_lo < self.respond_hi, "engagement.respond_lo must be below respond_hi")


@dataclass(frozen=True)
class SentimentConfig:
    """4.3 sentiment: NPS points, CSAT/CES scaling, who counts twice."""

    weight_nps: float = 0.60
    weight_csat: float = 0.25
    weight_ces: float = 0.15
    promoter_min: int = 9
    passive_min: int = 7
    passive_points: float = 60.0
    detractor_points_per_point: float = 5.0  # detractor 0..6 -> 0..30
    key_roles: tuple[str, ...] = ("decision_maker", "champion", "exec")
    key_role_weight: float = 2.0
    detractor_max: int = 6
    detractor_days: int = 180
    csat_scale_min: int = 1
    csat_scale_max: int = 5
    ces_scale_min: int = 1
    ces_scale_max: int = 7
    # Whether a high CES answer means low effort (the "how easy was it" wording). Ours: 4.3
    # only says the score is oriented so that "very low effort" = 100.
    ces_high_is_low_effort: bool = True

    def __post_init__(self) -> None:
        _check(self.passive_min <= self.promoter_min, "sentiment.passive_min above promoter_min")
        _check(self.csat_scale_min < self.csat_scale_max, "sentiment CSAT scale is empty")
        _check(self.ces_scale_min < self.ces_scale_max, "sentiment CES scale is empty")


@dataclass(frozen=True)
class SupportConfig:
    """4.3 support penalties."""

    p1_age_days: int = 7
    p1_penalty: float = 40.0
    escalation_days: int = 90
    escalation_penalty: float = 20.0
    escalation_penalty_max: float = 40.0
    spike_min_tickets: int = 5
    spike_factor: float = 2.0
    spike_penalty: float = 30.0
    fcr_min_tickets: int = 5
    fcr_floor: float = 0.50
    fcr_penalty: float = 10.0
    silent_days: int = 180  # 4.8 `silent`: reported, never penalised


@dataclass(frozen=True)
class RelationshipConfig:
    """4.3 relationship."""

    champion_points: float = 40.0
    champion_touch_days: int = 90
    contacts_points: float = 30.0
    contacts_min: int = 2
    contacts_touch_days: int = 180
    decision_points: float = 30.0
    decision_touch_days: int = 180
    decision_roles: tuple[str, ...] = ("decision_maker", "exec")
    champion_left_days: int = 90
    champion_left_cap: float = 20.0


@dataclass(frozen=True)
class ValueConfig:
    """4.3 value: onboarding milestones, then success criteria."""

    overdue_days: int = 14
    late_credit: float = 0.5
    partly_met_credit: float = 0.5


@dataclass(frozen=True)
class PaymentConfig:
    """4.3 payment: points by the largest days overdue of an open invoice."""

    mid_days: int = 30  # 1..30 days: 60
    late_days: int = 60  # 31..60 days: 30; above: 0 and flag payment_overdue
    mid_points: float = 60.0
    late_points: float = 30.0

    def __post_init__(self) -> None:
        _check(0 < self.mid_days < self.late_days, "payment.mid_days must be below late_days")


@dataclass(frozen=True)
class MaxAgeConfig:
    """4.4: a signal older than this (days) is missing, with reason ``stale_<signal>``."""

    usage: int = 7
    nps: int = 365
    csat: int = 180
    ces: int = 180
    billing: int = 30


@dataclass(frozen=True)
class BandsConfig:
    """4.5: green >= 70, yellow >= 40, red below."""

    green: int = 70
    yellow: int = 40

    def __post_init__(self) -> None:
        _check(0 <= self.yellow < self.green <= 100, "bands need 0 <= yellow < green <= 100")


@dataclass(frozen=True)
class CapsConfig:
    """4.5: band caps, each switchable; a capped band is at most yellow."""

    false_loyalty: bool = True
    dormant: bool = True
    champion_left: bool = True
    champion_left_tiers: tuple[Tier, ...] = ("key", "high")


@dataclass(frozen=True)
class TrendConfig:
    """4.6: compare with the snapshot closest to ``days`` ago, within +/- ``tolerance_days``."""

    days: int = 30
    tolerance_days: int = 7
    delta: int = 5
    keep_days: int = 400


@dataclass(frozen=True)
class LoyaltyConfig:
    """4.7: behaviour high = usage >= 60, attitude high = sentiment >= 60 and no detractor."""

    behaviour_high: float = 60.0
    attitude_high: float = 60.0


@dataclass(frozen=True)
class ReasonsConfig:
    """4.8."""

    max_count: int = 3
    min_lost_points: float = 5.0
    max_chars: int = 255
    strong_count: int = 2

    def __post_init__(self) -> None:
        _check(self.max_count >= 1, "reasons.max_count must be >= 1")
        _check(self.max_chars >= 40, "reasons.max_chars must be >= 40")


# --- tier, service, renewal, lifecycle, onboarding (domain.md 2, 3, 5, 7.4) ---------------


@dataclass(frozen=True)
class TieringConfig:
    """3.2 / 3.3. The EUR 5,000 line is the seeds' (001:439); the others are ours."""

    key_min: int = 100_000
    high_min: int = 25_000
    low_min: int = 5_000
    currency: str = "EUR"
    unknown_arr_tier: Tier = "low"
    potential_weight: float = 0.5
    potential_max_steps: int = 1
    potential_can_make_key: bool = False
    growth_sales_max: float = 0.2
    growth_care_min: float = 0.9
    demote_hysteresis: float = 0.10
    override_days: int = 365
    key_max: int = 20
    key_review_days: int = 365
    deal_term_months: int = 12  # a deal without a term is annual when annualising it

    def __post_init__(self) -> None:
        _check(0 < self.low_min < self.high_min < self.key_min, "tier bands must rise")
        _check(0 <= self.demote_hysteresis < 1, "tiering.demote_hysteresis must be in [0, 1)")
        _check(self.potential_max_steps >= 0, "tiering.potential_max_steps must be >= 0")
        _check(
            0 <= self.growth_sales_max < self.growth_care_min,
            "tiering growth cut-offs: sales_max must be below care_min",
        )

    @cached_property
    def shares(self) -> dict[str, Decimal]:
        """The shares ARR is compared with, as ``Decimal(str(share))`` (ARR is a Decimal),
        converted once per configuration rather than for every account."""
        names = ("potential_weight", "growth_sales_max", "growth_care_min", "demote_hysteresis")
        return {name: Decimal(str(getattr(self, name))) for name in names}

    def lower_bound(self, tier: Tier) -> int:
        return {"key": self.key_min, "high": self.high_min, "low": self.low_min, "tech": 0}[tier]


@dataclass(frozen=True)
class ServiceConfig:
    """3.4: two-way touch cadence per tier (days)."""

    cadence_days: PerTier = field(default_factory=lambda: PerTier(30, 90, 180, 365))


@dataclass(frozen=True)
class RiskMatrix:
    """5.3: per band, the level for > 180, 91-180, 31-90, 0-30 days and overdue."""

    green: tuple[RiskLevel, RiskLevel, RiskLevel, RiskLevel, RiskLevel] = (
        "low",
        "low",
        "low",
        "low",
        "medium",
    )
    yellow: tuple[RiskLevel, RiskLevel, RiskLevel, RiskLevel, RiskLevel] = (
        "low",
        "medium",
        "medium",
        "high",
        "high",
    )
    red: tuple[RiskLevel, RiskLevel, RiskLevel, RiskLevel, RiskLevel] = (
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    )
    unknown: tuple[RiskLevel, RiskLevel, RiskLevel, RiskLevel, RiskLevel] = (
        "low",
        "medium",
        "medium",
        "high",
        "high",
    )

    def __post_init__(self) -> None:
        for row in (self.green, self.yellow, self.red, self.unknown):
            _check(all(level in RISK_LEVELS for level in row), f"unknown risk level in {row}")


@dataclass(frozen=True)
class RenewalConfig:
    """5.1-5.4."""

    default_term_months: int = 12
    upcoming_days: int = 180
    in_window_days: int = 90
    near_days: int = 30  # 5.3's "0-30" column
    stale_after_days: int = 60
    risk_matrix: RiskMatrix = field(default_factory=RiskMatrix)
    bump_false_loyalty: bool = True
    bump_champion_left: bool = True
    bump_max_days: int = 180
    prep_start_days: PerTier = field(default_factory=lambda: PerTier(270, 180, 120, 90))

    def __post_init__(self) -> None:
        _check(
            0 <= self.near_days < self.in_window_days < self.upcoming_days,
            "renewal windows must rise: near_days < in_window_days < upcoming_days",
        )
        _check(self.default_term_months >= 1, "renewal.default_term_months must be >= 1")


@dataclass(frozen=True)
class LifecycleConfig:
    """2: adoption exit and which terms enter ``renewal``."""

    adoption_confirm_usage: float = 60.0
    adoption_confirm_snapshots: int = 2
    adoption_max_days: int = 180
    renewal_min_term_months: int = 12


@dataclass(frozen=True)
class PerTierText:
    """One optional text per tier (the pool and fallback owners' e-mails, 8.3)."""

    key: str | None = None
    high: str | None = None
    low: str | None = None
    tech: str | None = None

    def of(self, tier: Tier) -> str | None:
        value = {"key": self.key, "high": self.high, "low": self.low, "tech": self.tech}[tier]
        return value.strip() if value and value.strip() else None


# --- handover (domain.md 6) ------------------------------------------------------------------

_ALL: tuple[Tier, ...] = ("key", "high", "low", "tech")
_KHL: tuple[Tier, ...] = ("key", "high", "low")
_KH: tuple[Tier, ...] = ("key", "high")
_K: tuple[Tier, ...] = ("key",)

#: 6.2's table: field code -> tiers where it is required (R) and where it is optional (O).
HANDOVER_REQUIRED: dict[str, tuple[Tier, ...]] = {
    "sold": _ALL,
    "term": _ALL,
    "services": _KH,
    "primary_contact": _ALL,
    "secondary_contacts": _KH,
    "champion": _KH,
    "decision_maker": _KH,
    "technical_contact": _KHL,
    "executive_sponsor": _K,
    "why_they_bought": _KHL,
    "goals": _KH,
    "success_criteria": _KH,
    "value_expected": (),
    "special_terms": _ALL,
    "fit": _KH,
    "risks": _KH,
    "timeline": _KH,
    "preassigned_csm": (),
}
HANDOVER_OPTIONAL: dict[str, tuple[Tier, ...]] = {
    "sold": (),
    "term": (),
    "services": ("low",),
    "primary_contact": (),
    "secondary_contacts": ("low",),
    "champion": ("low",),
    "decision_maker": ("low",),
    "technical_contact": ("tech",),
    "executive_sponsor": ("high",),
    "why_they_bought": ("tech",),
    "goals": ("low",),
    "success_criteria": ("low",),
    "value_expected": _KH,
    "special_terms": (),
    "fit": ("low",),
    "risks": ("low",),
    "timeline": ("low",),
    "preassigned_csm": _KH,
}


@dataclass(frozen=True)
class HandoverConfig:
    """6.2 / 6.3: required fields per tier, the fix task's due day, the early stage."""

    required: dict[str, tuple[Tier, ...]] = field(default_factory=lambda: dict(HANDOVER_REQUIRED))
    optional: dict[str, tuple[Tier, ...]] = field(default_factory=lambda: dict(HANDOVER_OPTIONAL))
    fix_due_days: int = 2
    # None: the stage just before closed-won in the CRM's pipeline (ours, 6.3).
    early_stage: str | None = None

    def __post_init__(self) -> None:
        _check(self.fix_due_days >= 0, "handover.fix_due_days must be >= 0")
        _check(
            set(self.required) == set(HANDOVER_REQUIRED),
            "handover.required must name each field of domain.md 6.2",
        )


# --- onboarding (domain.md 7) ----------------------------------------------------------------


@dataclass(frozen=True)
class TaskTemplate:
    """One row of 7.2: in which tiers' plans it is, its offset from D0 per tier, who owns it.

    ``days`` holds an offset for every tier; only the tiers in ``tiers`` use theirs.
    ``automated`` names the tiers where the task is an automated message or check (7.2 "(auto)").
    ``when`` makes the task conditional: ``handover_incomplete`` (task 1), ``integrations`` and
    ``data_migration`` (tasks 9-10: only when that service was sold).
    """

    number: int
    phase: str
    title: str
    owner: str
    tiers: tuple[Tier, ...]
    days: PerTier
    automated: tuple[Tier, ...] = ()
    when: str | None = None

    def __post_init__(self) -> None:
        _check(
            self.when in (None, "handover_incomplete", "integrations", "data_migration"),
            f"onboarding task {self.title!r}: unknown condition {self.when!r}",
        )


def _t(
    number: int,
    phase: str,
    title: str,
    owner: str,
    days: tuple[int | None, int | None, int | None, int | None],
    automated: tuple[Tier, ...] = (),
    when: str | None = None,
) -> TaskTemplate:
    tiers = tuple(t for t, d in zip(_ALL, days, strict=True) if d is not None)
    per = PerTier(*(d if d is not None else 0 for d in days))
    return TaskTemplate(number, phase, title, owner, tiers, per, automated, when)


#: 7.2's table (all offsets ours): task code -> template. Order is the table's.
ONBOARDING_PLAN: dict[str, TaskTemplate] = {
    "handover_complete": _t(
        1, "handover", "Complete the handover", "ae", (2, 2, 2, 2), when="handover_incomplete"
    ),
    "internal_handover": _t(
        2, "handover", "Internal handover call (AE + CSM)", "ae_csm", (2, 3, None, None)
    ),
    "welcome": _t(3, "handover", "Welcome the customer", "csm", (1, 1, 1, 0), ("low", "tech")),
    "kickoff_meeting": _t(4, "kickoff", "Kickoff meeting", "csm", (7, 7, None, None)),
    "intro_call": _t(5, "kickoff", "Intro call or e-mail", "csm", (None, None, 5, None)),
    "success_plan": _t(
        6,
        "kickoff",
        "Success plan: goals and success criteria",
        "csm_customer",
        (14, 14, 21, None),
    ),
    "provision_accounts": _t(
        7,
        "setup",
        "Provision users and the organisation environment",
        "cs_ops",
        (3, 3, 2, 0),
        ("tech",),
    ),
    "first_admin_login": _t(8, "setup", "First admin login", "customer", (7, 7, 7, 7)),
    "integrations": _t(
        9, "setup", "Integrations", "csm_tech", (30, 30, None, None), when="integrations"
    ),
    "data_migration": _t(
        10, "setup", "Data migration", "tech", (30, 30, 30, None), when="data_migration"
    ),
    "admin_training": _t(11, "training", "Admin training", "trainer", (14, 14, 14, 7), ("tech",)),
    "user_training": _t(12, "training", "User training", "trainer", (30, 21, None, None)),
    "go_live": _t(13, "go_live", "Go-live", "csm", (45, 30, 21, 14), ("tech",)),
    "first_value": _t(
        14, "value", "First value: a success criterion met", "csm", (60, 45, 30, 21), ("tech",)
    ),
    "check_in_week_1": _t(15, "check_in", "Check-in, week 1", "csm", (7, 7, 7, 7), ("tech",)),
    "check_in_day_30": _t(16, "check_in", "Check-in, day 30", "csm", (30, 30, 30, 30), ("tech",)),
    "goal_review_day_60": _t(17, "check_in", "Goal review, day 60", "csm", (60, 60, 60, None)),
    "onboarding_csat": _t(
        18, "close", "Onboarding CSAT survey", "cs_ops", (90, 75, 60, 30), ("tech",)
    ),
    "onboarding_close": _t(
        19, "close", "Onboarding exit review", "csm", (120, 90, 60, 30), ("tech",)
    ),
    "exec_sponsor_intro": _t(20, "key", "Executive sponsor intro", "csm", (14, None, None, None)),
    "backup_csm_intro": _t(21, "key", "Backup CSM intro", "backup_csm", (30, None, None, None)),
    "account_plan": _t(22, "key", "Account plan draft", "csm", (90, None, None, None)),
}

#: 7.3: an expansion's tasks (ours): kickoff call D+7, training for new users D+14.
EXPANSION_PLAN: dict[str, TaskTemplate] = {
    "handover_complete": ONBOARDING_PLAN["handover_complete"],
    "expansion_kickoff": _t(2, "kickoff", "Expansion kickoff call", "csm", (7, 7, 7, None)),
    "new_user_training": _t(
        3, "training", "Training for the new users", "trainer", (14, 14, 14, 14), ("tech",)
    ),
}


@dataclass(frozen=True)
class OnboardingConfig:
    """7.2-7.4: the plans, weekends, the exit criteria's seat share and the overdue days."""

    max_days: PerTier = field(default_factory=lambda: PerTier(120, 90, 60, 30))
    exit_active_seat_share: float = 0.5
    exit_tech_weekly_active_users: int = 1
    plans: dict[str, TaskTemplate] = field(default_factory=lambda: dict(ONBOARDING_PLAN))
    expansion_plans: dict[str, TaskTemplate] = field(default_factory=lambda: dict(EXPANSION_PLAN))
    skip_weekends: bool = True
    replan_on_tier_change: bool = False
    # Off: the CRM's deal type decides new business vs expansion. On: a new-business deal on an
    # account already a customer is an expansion (7.3 "existing customer"). Off by default
    # because a pull can make the account a customer before the webhook of its first close is
    # handled. A won deal on a churned account is a winback either way (ours).
    new_business_on_customer_is_expansion: bool = False
    # Words in the handover's "Services sold" that mean task 9 / task 10 applies (ours).
    integration_words: tuple[str, ...] = ("integration", "api", "sso", "connector")
    migration_words: tuple[str, ...] = ("migration", "import")

    def __post_init__(self) -> None:
        _check(0 <= self.exit_active_seat_share <= 1, "onboarding.exit_active_seat_share in 0..1")


# --- CSM assignment (domain.md 8) ------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentConfig:
    """8.2 / 8.3: load units, the onboarding factor, capacity, owners of last resort."""

    units: PerTier = field(default_factory=lambda: PerTier(10, 3, 1, 0))
    onboarding_factor: float = 1.5
    capacity_units: int = 100
    max_arr_per_csm: int | None = None  # off
    backup_units: int = 2
    recent_onboarding_days: int = 30
    match_region: bool = False
    match_language: bool = False
    pool_owner: PerTierText = field(default_factory=PerTierText)
    fallback_owner: PerTierText = field(default_factory=PerTierText)

    def __post_init__(self) -> None:
        _check(self.onboarding_factor >= 1, "assignment.onboarding_factor must be >= 1")
        _check(self.capacity_units > 0, "assignment.capacity_units must be > 0")
        _check(self.backup_units >= 0, "assignment.backup_units must be >= 0")


@dataclass(frozen=True)
class ScoringConfig:
    """All domain thresholds; ``ScoringConfig()`` is domain.md's defaults."""

    weights: Weights = field(default_factory=Weights)
    usage: UsageConfig = field(default_factory=UsageConfig)
    engagement: EngagementConfig = field(default_factory=EngagementConfig)
    sentiment: SentimentConfig = field(default_factory=SentimentConfig)
    support: SupportConfig = field(default_factory=SupportConfig)
    relationship: RelationshipConfig = field(default_factory=RelationshipConfig)
    value: ValueConfig = field(default_factory=ValueConfig)
    payment: PaymentConfig = field(default_factory=PaymentConfig)
    max_age_days: MaxAgeConfig = field(default_factory=MaxAgeConfig)
    min_coverage: int = 50
    bands: BandsConfig = field(default_factory=BandsConfig)
    caps: CapsConfig = field(default_factory=CapsConfig)
    trend: TrendConfig = field(default_factory=TrendConfig)
    loyalty: LoyaltyConfig = field(default_factory=LoyaltyConfig)
    reasons: ReasonsConfig = field(default_factory=ReasonsConfig)
    tiering: TieringConfig = field(default_factory=TieringConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    renewal: RenewalConfig = field(default_factory=RenewalConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    onboarding: OnboardingConfig = field(default_factory=OnboardingConfig)
    handover: HandoverConfig = field(default_factory=HandoverConfig)
    assignment: AssignmentConfig = field(default_factory=AssignmentConfig)

    def __post_init__(self) -> None:
        _check(0 <= self.min_coverage <= 100, "scoring.min_coverage must be in 0..100")


DEFAULT_CONFIG = ScoringConfig()
