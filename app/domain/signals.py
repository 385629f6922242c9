"""The inputs of the health score (domain.md 4.3): one account's signals, as plain values.

Each feed is optional: ``None`` means "no such feed for this account" and makes its component
missing, never 0 (4.3, 4.4). Dates are UTC calendar dates; ``as_of`` is passed to
``compute_health`` and nothing here reads the clock. The recompute job fills these from the
signal tables; the aggregates (counts over 30/90/180 days) are named by their window, and are
taken as of the same ``as_of``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from app.domain.values import Tier, quick_init


@quick_init
@dataclass(frozen=True)
class UsageSignals:
    """The latest usage snapshot (4.3 usage); ``observed_on`` drives staleness (4.4: 7 days)."""

    observed_on: date
    active_users_30d: int
    logins_30d: int
    licensed_seats: int | None = None
    key_features_used_30d: int | None = None
    key_features_defined: int | None = None
    last_login_on: date | None = None
    prev_active_users_30d: int | None = None  # the snapshot ~30 days before, for usage_drop


@quick_init
@dataclass(frozen=True)
class EngagementSignals:
    """Touchpoints (4.3 engagement). ``last_two_way_touch_on`` None: no two-way touch ever."""

    last_two_way_touch_on: date | None = None
    meetings_scheduled_180d: int = 0
    meetings_attended_180d: int = 0
    csm_emails_90d: int = 0
    csm_emails_answered_90d: int = 0


@quick_init
@dataclass(frozen=True)
class NpsAnswer:
    """One NPS answer (0-10). ``contact_key`` None: anonymous, counted on its own."""

    score: int
    responded_on: date
    contact_key: str | None = None
    role: str | None = None  # decision_maker, champion, exec, user, ...


@quick_init
@dataclass(frozen=True)
class SurveyAnswer:
    """One CSAT or CES answer on its own scale (None: the configured default scale)."""

    kind: str  # "csat" | "ces"
    score: float
    responded_on: date
    scale_min: int | None = None
    scale_max: int | None = None


@quick_init
@dataclass(frozen=True)
class SupportSignals:
    """The support feed's aggregates as of ``as_of`` (4.3 support). None on the input: no feed."""

    tickets_30d: int = 0
    tickets_prior_90d: int = 0  # opened 31-120 days ago: the baseline of ticket_spike
    tickets_90d: int = 0
    fcr_90d: float | None = None  # share solved at first contact, of tickets closed in 90 d
    escalations_90d: int = 0
    oldest_open_p1_or_escalation_on: date | None = None  # opened_on of the oldest still open
    last_ticket_on: date | None = None


@quick_init
@dataclass(frozen=True)
class ContactSignal:
    """One synced contact (4.3 relationship). Roles from the handover or CRM contact roles."""

    roles: frozenset[str] = frozenset()
    last_two_way_touch_on: date | None = None
    active: bool = True
    left_on: date | None = None  # when the contact went inactive / left the company


@quick_init
@dataclass(frozen=True)
class Milestone:
    """An onboarding milestone (7.2 task) with its due date and, once done, the day it was."""

    due_on: date
    done_on: date | None = None
    name: str = ""


@quick_init
@dataclass(frozen=True)
class ValueSignals:
    """4.3 value: milestones while onboarding, success criteria afterwards."""

    onboarding: bool = False
    milestones: tuple[Milestone, ...] = ()
    criteria_met: int = 0
    criteria_partly_met: int = 0
    criteria_not_met: int = 0  # assessed = the three together; unassessed ones are left out


@quick_init
@dataclass(frozen=True)
class PaymentSignals:
    """The billing feed (4.3 payment). ``observed_on``: its last delivery (4.4: 30 days)."""

    observed_on: date
    open_invoice_due_on: tuple[date, ...] = ()  # due dates of unpaid invoices


@quick_init
@dataclass(frozen=True)
class SnapshotPoint:
    """A past daily health snapshot, for the trend (4.6)."""

    on: date
    score: int | None


@quick_init
@dataclass(frozen=True)
class HealthInput:
    """Everything the health score reads for one account."""

    tier: Tier
    customer_since_on: date | None = None
    usage: UsageSignals | None = None
    engagement: EngagementSignals | None = None
    nps: tuple[NpsAnswer, ...] = ()
    surveys: tuple[SurveyAnswer, ...] = ()
    support: SupportSignals | None = None
    contacts: tuple[ContactSignal, ...] = ()
    value: ValueSignals | None = None
    payment: PaymentSignals | None = None
    history: tuple[SnapshotPoint, ...] = field(default=())
