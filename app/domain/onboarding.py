"""Onboarding plans (domain.md 7): which closed-won starts what, the tasks and their due dates,
progress, the exit criteria and the overdue flag.

* :func:`classify_deal` reads the opportunity's type and the account's stage before the close:
  new business, winback (a churned account), expansion or renewal (7.3).
* :func:`build_plan` turns a close into a :class:`PlanDecision`: the tier's full plan (7.2) for
  new business and winback, the short expansion plan (7.3), or no plan for a renewal. Due dates
  are D0 + the task's offset, moved off weekends to Monday, and a late plan's past dates become
  the processing date + 1 (then off the weekend again).
* :func:`plan_progress` says how far a stored plan is, whether 7.4's exit criteria are met (the
  account then moves to ``adoption``) and whether it is past ``onboarding.max_days``.

Why pure: the webhook path, a replay and the API compute the same plan and the same progress;
the plan's offsets, owners and conditions are settings (``scoring.onboarding.plans``), so a
deployment tunes them without code. The plan uses the tier at close and is not rewritten when
the tier changes later (3.3 step 9, ``onboarding.replan_on_tier_change`` = false).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from app.domain.config import DEFAULT_CONFIG, ScoringConfig, TaskTemplate
from app.domain.handover import HandoverCheck, handover_task_text
from app.domain.lifecycle import OnboardingProgress, onboarding_exit_met
from app.domain.values import Tier

DealKind = Literal["new_business", "winback", "expansion", "renewal"]
PlanKind = Literal["full", "expansion"]
Service = Literal["integrations", "data_migration"]
TaskStatus = Literal["open", "done", "skipped"]
Moved = Literal["", "weekend", "late"]

TASK_STATUSES: tuple[TaskStatus, ...] = ("open", "done", "skipped")
#: 7.4: the tasks whose completion the exit criteria ask for.
EXIT_TASKS: tuple[str, ...] = ("go_live", "first_value", "admin_training", "onboarding_csat")
#: Stages of an account that already is a customer (for a new-business deal, see classify_deal).
_CUSTOMER_STAGES = frozenset({"onboarding", "adoption", "steady", "renewal", "expansion"})

_TYPE_WORDS: Mapping[str, DealKind] = {
    "newbusiness": "new_business",
    "new": "new_business",
    "renewal": "renewal",
    "renew": "renewal",
    "expansion": "expansion",
    "existingbusiness": "expansion",  # HubSpot's dealtype for an existing customer
    "upsell": "expansion",
    "crosssell": "expansion",
    "addon": "expansion",
    "winback": "winback",
}


def classify_deal(
    opportunity_type: str | None,
    *,
    account_stage: str | None = None,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> DealKind:
    """7.3: what a closed-won opportunity is.

    ``account_stage`` is the account's lifecycle stage *before* this close. Any won deal on a
    ``churned`` account except a renewal is a winback (full plan of its tier). An unknown or
    empty type is new business. With ``onboarding.new_business_on_customer_is_expansion`` on, a
    new-business deal on an account that is a customer is an expansion.
    """
    word = "".join(ch for ch in (opportunity_type or "").lower() if ch.isalnum())
    kind: DealKind = _TYPE_WORDS.get(word, "new_business")
    if kind == "renewal":
        return kind
    if account_stage == "churned":
        return "winback"
    if (
        kind == "new_business"
        and cfg.onboarding.new_business_on_customer_is_expansion
        and account_stage in _CUSTOMER_STAGES
    ):
        return "expansion"
    return kind


def services_sold(
    services: Iterable[str],
    *,
    integrations_needed: bool = False,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> frozenset[Service]:
    """7.2 tasks 9-10: which of the two conditional services the handover says were sold.

    A service line matches by its words (``onboarding.integration_words`` /
    ``migration_words``, case-insensitive); "none" matches nothing. ``integrations_needed``
    is 7.2's "or needed" for task 9 (the caller's judgement, e.g. a risk about integrations).
    """
    found: set[Service] = {"integrations"} if integrations_needed else set()
    for line in services:
        text = line.lower()
        if any(word in text for word in cfg.onboarding.integration_words):
            found.add("integrations")
        if any(word in text for word in cfg.onboarding.migration_words):
            found.add("data_migration")
    return frozenset(found)


@dataclass(frozen=True)
class PlannedTask:
    code: str
    number: int
    phase: str
    title: str
    owner_role: str
    automated: bool
    offset_days: int
    due_on: date
    moved: Moved = ""  # why ``due_on`` is not D0 + offset
    detail: str | None = None  # handover_complete: the missing fields (6.3)


@dataclass(frozen=True)
class PlanDecision:
    """What a closed-won starts. ``kind`` None: no plan (a renewal, 7.3)."""

    deal_kind: DealKind
    tier: Tier
    kind: PlanKind | None
    started_on: date  # D0, the close date
    tasks: tuple[PlannedTask, ...]
    reason: str
    #: The stage the account enters by this close: ``onboarding`` for a full plan (2), None
    #: when the close does not change the stage by itself (expansion, renewal).
    lifecycle_stage: Literal["onboarding"] | None
    overdue_after_on: date | None  # D0 + onboarding.max_days (full plans)

    @property
    def starts_onboarding(self) -> bool:
        return self.kind == "full"


def next_weekday(day: date) -> date:
    """Saturday and Sunday move to Monday (7.2, ours)."""
    weekday = day.weekday()
    return day + timedelta(days=7 - weekday) if weekday >= 5 else day


def due_date(
    d0: date, offset_days: int, processing_on: date, cfg: ScoringConfig = DEFAULT_CONFIG
) -> tuple[date, Moved]:
    """7.2: D0 + offset, off the weekend; a date already past on ``processing_on`` becomes
    ``processing_on`` + 1 (off the weekend too). A task due on the processing day is not late."""
    skip = cfg.onboarding.skip_weekends
    raw = d0 + timedelta(days=offset_days)
    due = next_weekday(raw) if skip else raw
    moved: Moved = "weekend" if due != raw else ""
    if due < processing_on:
        late = processing_on + timedelta(days=1)
        due = next_weekday(late) if skip else late
        moved = "late"
    return due, moved


def _include(
    template: TaskTemplate,
    tier: Tier,
    *,
    handover_incomplete: bool,
    services: frozenset[Service],
) -> bool:
    if tier not in template.tiers:
        return False
    if template.when == "handover_incomplete":
        return handover_incomplete
    if template.when in ("integrations", "data_migration"):
        return template.when in services
    return True


def build_plan(
    tier: Tier,
    deal_kind: DealKind,
    d0: date,
    processing_on: date,
    *,
    handover: HandoverCheck | None,
    services: frozenset[Service] = frozenset(),
    deal_name: str | None = None,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> PlanDecision:
    """The plan a closed-won starts (7.2, 7.3).

    ``tier`` is the tier at close; ``d0`` the close date; ``processing_on`` the day the close is
    handled (a replay or backfill is later than ``d0``). ``handover`` is the completeness check
    (None: no handover was found, so task 1 asks for all of it). Tasks come in due-date order,
    then in the table's order.
    """
    if deal_kind == "renewal":
        return PlanDecision(
            deal_kind,
            tier,
            None,
            d0,
            (),
            "renewal won: no onboarding plan; the renewal fields are updated (7.3)",
            None,
            None,
        )
    full = deal_kind in ("new_business", "winback")
    templates = cfg.onboarding.plans if full else cfg.onboarding.expansion_plans
    incomplete = handover is None or bool(handover.missing)
    if handover is None:
        fix_text: str | None = (
            f"No handover was found{f' for {deal_name}' if deal_name else ''}: write it "
            "(what was sold, contacts, goals, promises; domain.md 6.2)."
        )
    else:
        fix_text = handover_task_text(handover, deal_name)
    tasks: list[PlannedTask] = []
    for code, template in templates.items():
        if not _include(template, tier, handover_incomplete=incomplete, services=services):
            continue
        offset = template.days.of(tier)
        if code == "handover_complete":
            offset = cfg.handover.fix_due_days  # 6.3's setting wins over the table's copy
        due, moved = due_date(d0, offset, processing_on, cfg)
        tasks.append(
            PlannedTask(
                code=code,
                number=template.number,
                phase=template.phase,
                title=template.title,
                owner_role=template.owner,
                automated=tier in template.automated,
                offset_days=offset,
                due_on=due,
                moved=moved,
                detail=fix_text if code == "handover_complete" else None,
            )
        )
    tasks.sort(key=lambda t: (t.due_on, t.number))
    if full:
        reason = (
            "winback: full plan of the tier (7.3)"
            if deal_kind == "winback"
            else (f"new business: the {tier} plan (7.2)")
        )
        max_days = cfg.onboarding.max_days.of(tier)
        return PlanDecision(
            deal_kind,
            tier,
            "full",
            d0,
            tuple(tasks),
            reason,
            "onboarding",
            d0 + timedelta(days=max_days),
        )
    return PlanDecision(
        deal_kind,
        tier,
        "expansion",
        d0,
        tuple(tasks),
        "expansion: kickoff call and training for new users, no full plan (7.3)",
        None,
        None,
    )


@dataclass(frozen=True)
class TaskState:
    """A stored task as :func:`plan_progress` reads it."""

    code: str
    status: TaskStatus
    due_on: date


@dataclass(frozen=True)
class PlanProgress:
    total: int
    done: int
    skipped: int
    open: int
    percent: int  # (done + skipped) / total, rounded down
    late_tasks: tuple[str, ...]  # open tasks past their due date
    overdue: bool  # 7.4: a full plan still open after onboarding.max_days
    overdue_on: date | None  # the first day it counts as overdue
    exit_met: bool  # 7.4 (full plans): the account moves to adoption
    exit_missing: tuple[str, ...]  # which criteria are not met yet
    complete: bool  # every task done or skipped


def plan_progress(
    tasks: Sequence[TaskState],
    *,
    kind: PlanKind,
    tier: Tier,
    started_on: date,
    today: date,
    active_seat_share: float | None = None,
    weekly_active_users: int | None = None,
    closed_by_hand: bool = False,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> PlanProgress:
    """Progress, 7.4's exit criteria and the overdue flag of one plan on ``today``.

    Only ``done`` satisfies an exit criterion: a skipped go-live is not a go-live. The CSAT
    criterion is "sent": its task done (an answer is not required). A CSM who closes onboarding
    by hand (``closed_by_hand``, with a reason) ends it whatever the criteria (7.4).
    """
    done = {t.code for t in tasks if t.status == "done"}
    n_done = sum(1 for t in tasks if t.status == "done")
    n_skipped = sum(1 for t in tasks if t.status == "skipped")
    n_open = len(tasks) - n_done - n_skipped
    percent = math.floor(100 * (n_done + n_skipped) / len(tasks)) if tasks else 100
    late = tuple(t.code for t in tasks if t.status == "open" and t.due_on < today)
    progress = OnboardingProgress(
        go_live_done="go_live" in done,
        first_value_done="first_value" in done,
        admin_training_done="admin_training" in done,
        csat_sent="onboarding_csat" in done,
        active_seat_share=active_seat_share,
        weekly_active_users=weekly_active_users,
        closed_by_hand=closed_by_hand,
    )
    if kind == "full":
        exit_met = onboarding_exit_met(progress, tier, cfg)
        missing = [code for code in EXIT_TASKS if code not in done]
        if tier == "tech":
            if (weekly_active_users or 0) < cfg.onboarding.exit_tech_weekly_active_users:
                missing.append("weekly_active_users")
        elif active_seat_share is None or active_seat_share < cfg.onboarding.exit_active_seat_share:
            missing.append("active_seat_share")
        exit_missing = () if exit_met else tuple(missing)
        overdue_on = started_on + timedelta(days=cfg.onboarding.max_days.of(tier) + 1)
        overdue = not exit_met and today >= overdue_on
    else:
        exit_met, exit_missing, overdue_on, overdue = False, (), None, False
    return PlanProgress(
        total=len(tasks),
        done=n_done,
        skipped=n_skipped,
        open=n_open,
        percent=percent,
        late_tasks=late,
        overdue=overdue,
        overdue_on=overdue_on,
        exit_met=exit_met,
        exit_missing=exit_missing,
        complete=n_open == 0,
    )
