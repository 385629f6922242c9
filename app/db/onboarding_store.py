"""Onboarding plans in the CS database: created once per opportunity, read, and moved on.

* :func:`create_plan_once` stores a :class:`~app.domain.onboarding.PlanDecision` for an
  opportunity exactly once. ``onboarding_plans.opportunity_id`` is unique, and the plan row is
  inserted with ``INSERT ... ON CONFLICT (opportunity_id) DO NOTHING RETURNING id``: under
  concurrent calls (two workers handling two deliveries of one event) one insert wins, the other
  finds the winner's plan once it commits (PostgreSQL waits on the conflicting row; SQLite
  serialises writers). The tasks go in the same transaction as the plan, so a plan never exists
  without its tasks, whatever is killed when. The caller commits. :func:`create_plans_once`
  does the same for a batch of opportunities in two statements (the webhook worker's batch).
* :func:`list_plans`, :func:`plan_view`: plans with their tasks and progress for the API;
  listed by id, or by urgency (``order="due"``: the plan's earliest open task first, so the
  plans with late tasks lead, the most overdue first), keyset-paged in both orders.
* :func:`set_task_status`: a task done or skipped with a note; when the plan's exit criteria
  (domain.md 7.4) are then met the plan completes and the account enters ``adoption``, stamped
  as a CS-side write (:func:`app.db.cs_writes.stamp_cs_change`) so the push sends it.
* :func:`close_plan`: a CSM closes onboarding by hand with a reason (7.4).

Progress, the exit criteria and ``overdue`` come from :func:`app.domain.onboarding.plan_progress`
on the day given; nothing about them is stored except the plan's status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Date, and_, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.cs_writes import stamp_cs_change
from app.db.models import Account, AccountEvent, Csm, OnboardingPlan, OnboardingTask, UsageSnapshot
from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.lifecycle import StageEntry
from app.domain.onboarding import PlanDecision, PlanProgress, TaskState, plan_progress
from app.domain.values import TIERS, Tier

PlanStatus = Literal["active", "completed", "closed"]
PLAN_STATUSES: tuple[PlanStatus, ...] = ("active", "completed", "closed")
PlanOrder = Literal["id", "due"]
PLAN_ORDERS: tuple[PlanOrder, ...] = ("id", "due")
#: The ``due`` order's key of a plan without an open task: after every real date.
NO_OPEN_TASK = date(9999, 12, 31)


class NotFound(LookupError):
    """No such plan or task."""


@dataclass(frozen=True)
class PlanCreated:
    plan_id: int
    created: bool  # False: the opportunity already had its plan (a repeated delivery)


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@dataclass(frozen=True)
class PlanRequest:
    """One plan to store once for its opportunity (the arguments of :func:`create_plan_once`)."""

    account_id: int
    opportunity_id: int | None  # None: a plan of no deal (tools, tests), never deduplicated
    decision: PlanDecision
    csm_id: int | None = None
    handover_note_id: int | None = None
    assignees: Mapping[str, str | None] | None = None
    notice_at: datetime | None = None


def create_plan_once(
    session: Session,
    *,
    account_id: int,
    opportunity_id: int,
    decision: PlanDecision,
    csm_id: int | None = None,
    handover_note_id: int | None = None,
    assignees: Mapping[str, str | None] | None = None,
    notice_at: datetime | None = None,
) -> PlanCreated:
    """Store ``decision``'s plan and tasks for ``opportunity_id`` unless it has one already.

    ``assignees`` maps an owner role of 7.2 (``csm``, ``backup_csm``, ``ae``, ...) to the person
    (an e-mail or a CRM user id) its tasks go to. ``notice_at``: the plan's new-onboarding
    notice is due then (the outbox row of ``app.wiring.notices``, written in this same
    transaction, so no notice is lost to a kill after the commit). Runs in the caller's
    transaction; the caller commits. A decision without a plan (a renewal) is refused: there is
    nothing to store.
    """
    request = PlanRequest(
        account_id, opportunity_id, decision, csm_id, handover_note_id, assignees, notice_at
    )
    return create_plans_once(session, [request])[0]


def create_plans_once(session: Session, requests: Sequence[PlanRequest]) -> list[PlanCreated]:
    """:func:`create_plan_once` for many opportunities (one per request): the plans in one
    multi-row ``INSERT .. ON CONFLICT (opportunity_id) DO NOTHING RETURNING``, the tasks of the
    new ones in one more. Returns one :class:`PlanCreated` per request, in order; a request
    whose opportunity already had a plan (or appears twice) gets that plan, ``created=False``."""
    for request in requests:
        if request.decision.kind is None:
            raise ValueError(f"{request.decision.reason}: nothing to store")
    insert = _insert(session)
    table = OnboardingPlan.__table__
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["opportunity_id"])
        .returning(table.c.id, table.c.opportunity_id)
    )
    connection = session.connection()
    # The first request per opportunity is the one that may create its plan.
    first: dict[int, PlanRequest] = {}
    for request in requests:
        if request.opportunity_id is not None:
            first.setdefault(request.opportunity_id, request)
    new: dict[int, int] = {}  # opportunity id -> the plan inserted now
    if first:
        # An executemany with RETURNING: SQLAlchemy sends multi-row INSERTs ("insertmanyvalues")
        # and returns the rows actually inserted (a conflicting one returns nothing).
        rows = [_plan_row(r) for r in first.values()]
        new = {int(opp): int(plan) for plan, opp in connection.execute(statement, rows)}
    missing = [o for o in first if o not in new]
    existing: dict[int, int] = {}
    if missing:
        found = session.execute(
            select(OnboardingPlan.opportunity_id, OnboardingPlan.id).where(
                OnboardingPlan.opportunity_id.in_(missing)
            )
        )
        existing = {int(opp): int(plan) for opp, plan in found if opp is not None}
    out: list[PlanCreated] = []
    tasks: list[dict[str, Any]] = []
    for request in requests:
        opportunity_id = request.opportunity_id
        if opportunity_id is None:  # no deal (a tool's plan): nothing to keep it once by
            plan_id = int(connection.execute(statement, _plan_row(request)).scalar_one())
            out.append(PlanCreated(plan_id, True))
            tasks.extend(_task_rows(plan_id, request))
        elif first[opportunity_id] is request and opportunity_id in new:
            out.append(PlanCreated(new[opportunity_id], True))
            tasks.extend(_task_rows(new[opportunity_id], request))
        else:
            out.append(PlanCreated(new.get(opportunity_id) or existing[opportunity_id], False))
    if tasks:
        connection.execute(insert(OnboardingTask.__table__), tasks)
    return out


def _plan_row(request: PlanRequest) -> dict[str, Any]:
    return {
        "account_id": request.account_id,
        "opportunity_id": request.opportunity_id,
        "handover_note_id": request.handover_note_id,
        "kind": request.decision.kind,
        "tier_at_close": request.decision.tier,
        "started_on": request.decision.started_on,
        "status": "active",
        "csm_id": request.csm_id,
        "notice_status": "pending" if request.notice_at is not None else None,
        "notice_due_at": request.notice_at,
    }


def _task_rows(plan_id: int, request: PlanRequest) -> list[dict[str, Any]]:
    people = dict(request.assignees or {})
    return [
        {
            "plan_id": plan_id,
            "code": t.code,
            "phase": t.phase,
            "title": t.title,
            "owner_role": t.owner_role,
            "assignee": people.get(t.owner_role),
            "automated": t.automated,
            "due_on": t.due_on,
            "status": "open",
            "detail": t.detail,
        }
        for t in request.decision.tasks
    ]


# --------------------------------------------------------------------------------------------
# reads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanView:
    plan: OnboardingPlan
    tasks: tuple[OnboardingTask, ...]
    progress: PlanProgress
    account_name: str | None
    csm_email: str | None
    #: The earliest due date of the plan's open tasks (None: no open task): the ``due``
    #: order's key, with the plan's id (:func:`list_plans`).
    next_due_on: date | None = None

    @property
    def due_key(self) -> tuple[date, int]:
        """Where the plan stands in the ``due`` order (a keyset cursor's position)."""
        return (self.next_due_on or NO_OPEN_TASK, self.plan.id)


def _overdue_clause(today: date, cfg: ScoringConfig) -> ColumnElement[bool]:
    """7.4 in SQL: an active full plan whose D0 is more than max_days ago, per tier."""
    p = OnboardingPlan
    per_tier = [
        and_(
            p.tier_at_close == tier,
            p.started_on < today - timedelta(days=cfg.onboarding.max_days.of(tier)),
        )
        for tier in TIERS
    ]
    return and_(p.status == "active", p.kind == "full", or_(*per_tier))


def _usage(session: Session, account_ids: Sequence[int]) -> dict[int, UsageSnapshot]:
    """Each account's latest usage snapshot (the exit criteria's seat share)."""
    if not account_ids:
        return {}
    latest: dict[int, UsageSnapshot] = {}
    rows = session.scalars(
        select(UsageSnapshot)
        .where(UsageSnapshot.account_id.in_(account_ids))
        .order_by(UsageSnapshot.account_id, UsageSnapshot.observed_on.desc())
    )
    for row in rows:
        latest.setdefault(row.account_id, row)
    return latest


def _progress(
    plan: OnboardingPlan,
    tasks: Sequence[OnboardingTask],
    usage: UsageSnapshot | None,
    today: date,
    cfg: ScoringConfig,
) -> PlanProgress:
    """The domain's progress of one stored plan. Seats as the recompute reads them
    (app.domain.recompute): active users in 30 days / licensed seats; for tech the active
    users of the latest snapshot stand for the weekly active users."""
    share = None
    weekly = None
    if usage is not None:
        seats = usage.licensed_seats
        share = usage.active_users_30d / seats if seats else None
        weekly = usage.active_users_30d
    tier: Tier = plan.tier_at_close if plan.tier_at_close in TIERS else "low"
    return plan_progress(
        [TaskState(t.code, t.status, t.due_on) for t in tasks],  # type: ignore[arg-type]
        kind="expansion" if plan.kind == "expansion" else "full",
        tier=tier,
        started_on=plan.started_on,
        today=today,
        active_seat_share=share,
        weekly_active_users=weekly,
        closed_by_hand=plan.status == "closed",
        cfg=cfg,
    )


def _next_due() -> ColumnElement[date]:
    """The ``due`` order's key in SQL: a plan's earliest open task's due date, or
    :data:`NO_OPEN_TASK` (a correlated ``min`` over the plan's tasks, on their
    ``(plan_id, code)`` unique index). It does not depend on today, so a cursor stays valid
    across days; the plans with late tasks come first because a late task is due before today
    and every other open task is not."""
    t = OnboardingTask
    earliest = (
        select(func.min(t.due_on))
        .where(t.plan_id == OnboardingPlan.id, t.status == "open")
        .correlate(OnboardingPlan)
        .scalar_subquery()
    )
    return func.coalesce(earliest, literal(NO_OPEN_TASK, Date()), type_=Date())


def _views(
    session: Session,
    plans: Sequence[OnboardingPlan],
    today: date,
    cfg: ScoringConfig,
    next_due: Mapping[int, date] | None = None,
) -> list[PlanView]:
    """Plans with their tasks, progress, names; ``next_due``: the ``due`` order's keys as the
    listing query read them (else computed from the tasks, by the same rule)."""
    ids = [p.id for p in plans]
    tasks: dict[int, list[OnboardingTask]] = defaultdict(list)
    if ids:
        for task in session.scalars(
            select(OnboardingTask)
            .where(OnboardingTask.plan_id.in_(ids))
            .order_by(OnboardingTask.due_on, OnboardingTask.id)
        ):
            tasks[task.plan_id].append(task)
    account_ids = sorted({p.account_id for p in plans})
    names = dict(
        session.execute(select(Account.id, Account.name).where(Account.id.in_(account_ids))).all()
    )
    csm_ids = sorted({p.csm_id for p in plans if p.csm_id is not None})
    emails = dict(session.execute(select(Csm.id, Csm.email).where(Csm.id.in_(csm_ids))).all())
    usage = _usage(session, account_ids)
    return [
        PlanView(
            plan=p,
            tasks=tuple(tasks[p.id]),
            progress=_progress(p, tasks[p.id], usage.get(p.account_id), today, cfg),
            account_name=names.get(p.account_id),
            csm_email=emails.get(p.csm_id) if p.csm_id is not None else None,
            next_due_on=_due_on(p.id, tasks[p.id], next_due),
        )
        for p in plans
    ]


def _due_on(
    plan_id: int, tasks: Sequence[OnboardingTask], read: Mapping[int, date] | None
) -> date | None:
    if read is not None and plan_id in read:
        found = read[plan_id]
        return None if found == NO_OPEN_TASK else found
    return min((t.due_on for t in tasks if t.status == "open"), default=None)


def list_plans(
    session: Session,
    *,
    today: date,
    status: Sequence[str] = (),
    csm_ids: Sequence[int] = (),
    overdue: bool | None = None,
    after_id: int = 0,
    limit: int = 50,
    cfg: ScoringConfig = DEFAULT_CONFIG,
    order: PlanOrder = "id",
    after_due: tuple[date, int] | None = None,
) -> list[PlanView]:
    """One page of plans, filtered, with progress.

    ``order="id"``: by id (keyset: ``id > after_id``). ``order="due"``: by the earliest due
    date of each plan's open tasks, then id (keyset: after ``after_due``, a previous page's last
    :attr:`PlanView.due_key`), plans without an open task last. So the plans with late tasks
    come first across all pages, the most overdue first. A plan whose tasks change between two
    pages moves in the order (it may then show twice or not at all), as with any keyset order on
    a changing key; the plans that did not change are each listed exactly once."""
    query = select(OnboardingPlan)
    key = _next_due()
    if order == "due":
        query = query.add_columns(key)
        if after_due is not None:
            at, last_id = after_due
            query = query.where(or_(key > at, and_(key == at, OnboardingPlan.id > last_id)))
        query = query.order_by(key, OnboardingPlan.id)
    else:
        query = query.where(OnboardingPlan.id > after_id).order_by(OnboardingPlan.id)
    if status:
        query = query.where(OnboardingPlan.status.in_(list(status)))
    if csm_ids:
        query = query.where(OnboardingPlan.csm_id.in_(list(csm_ids)))
    if overdue is True:
        query = query.where(_overdue_clause(today, cfg))
    elif overdue is False:
        query = query.where(~_overdue_clause(today, cfg))
    if order != "due":
        plans = list(session.scalars(query.limit(limit)))
        return _views(session, plans, today, cfg)
    rows: list[Any] = list(session.execute(query.limit(limit)).all())
    keys = {row[0].id: row[1] for row in rows}
    return _views(session, [row[0] for row in rows], today, cfg, keys)


def plan_view(
    session: Session, plan_id: int, *, today: date, cfg: ScoringConfig = DEFAULT_CONFIG
) -> PlanView:
    plan = session.get(OnboardingPlan, plan_id)
    if plan is None:
        raise NotFound(f"onboarding plan {plan_id} not found")
    return _views(session, [plan], today, cfg)[0]


def csm_ids_for(session: Session, csm: str) -> list[int]:
    """A ``csm`` filter value: an id, or an e-mail (case-insensitive); [] when unknown."""
    text = csm.strip()
    if text.isdigit():
        return [int(text)]
    found = session.scalars(select(Csm.id).where(Csm.email == text.lower())).all()
    return [int(i) for i in found]


# --------------------------------------------------------------------------------------------
# writes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskChange:
    task: OnboardingTask
    view: PlanView
    changed: bool  # False: the task already had this status and note
    adoption: bool  # the account entered adoption by this change


def _enter_adoption(session: Session, plan: OnboardingPlan, now: datetime, reason: str) -> bool:
    """The account of ``plan`` enters ``adoption`` (domain.md 2, 7.4), unless a later stage
    already followed this onboarding. Stamped as a CS write so the push sends the stage."""
    account = session.get(Account, plan.account_id, with_for_update=True)
    if account is None or account.lifecycle_stage not in (None, "onboarding", "trial"):
        return False
    entry = StageEntry("adoption", now.date(), reason)
    account.lifecycle_stage = entry.stage
    account.lifecycle_entered_at = now
    stamp_cs_change(account, ["lifecycle_stage", "lifecycle_entered_at"], at=now)
    session.add(
        AccountEvent(
            account_id=account.id, kind=entry.kind, payload=entry.payload(), occurred_at=now
        )
    )
    return True


def _finish_if_met(
    session: Session, view: PlanView, now: datetime, cfg: ScoringConfig
) -> tuple[PlanView, bool]:
    plan = view.plan
    if plan.status != "active" or plan.kind != "full" or not view.progress.exit_met:
        return view, False
    plan.status = "completed"
    plan.closed_at = now
    plan.close_reason = "exit criteria met (domain.md 7.4)"
    adoption = _enter_adoption(session, plan, now, "onboarding exit criteria met")
    session.flush()
    return _views(session, [plan], now.date(), cfg)[0], adoption


def set_task_status(
    session: Session,
    task_id: int,
    *,
    status: Literal["done", "skipped", "open"],
    note: str | None,
    now: datetime | None = None,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> TaskChange:
    """Mark a task done, skipped (or open again) with a note, in the caller's transaction.

    Done sets ``done_on`` (the recompute reads it), skipped and open clear it. Then, when the
    plan is a full one still active and 7.4's exit criteria hold, the plan completes and the
    account enters ``adoption``. Repeating the same change changes nothing.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    task = session.get(OnboardingTask, task_id, with_for_update=True)
    if task is None:
        raise NotFound(f"onboarding task {task_id} not found")
    changed = task.status != status or (note is not None and task.note != note)
    if changed:
        if task.status != status:
            task.status = status
            task.done_on = now.date() if status == "done" else None
        if note is not None:
            task.note = note
        task.status_changed_at = now
        session.flush()
    plan = session.get(OnboardingPlan, task.plan_id, with_for_update=True)
    assert plan is not None  # the foreign key
    view = _views(session, [plan], now.date(), cfg)[0]
    view, adoption = _finish_if_met(session, view, now, cfg)
    return TaskChange(task, view, changed, adoption)


def close_plan(
    session: Session,
    plan_id: int,
    *,
    reason: str,
    now: datetime | None = None,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> tuple[PlanView, bool]:
    """7.4: a CSM closes onboarding by hand with a reason; the account enters adoption."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    plan = session.get(OnboardingPlan, plan_id, with_for_update=True)
    if plan is None:
        raise NotFound(f"onboarding plan {plan_id} not found")
    adoption = False
    if plan.status == "active":
        plan.status = "closed"
        plan.closed_at = now
        plan.close_reason = reason
        if plan.kind == "full":
            adoption = _enter_adoption(session, plan, now, f"onboarding closed by hand: {reason}")
        session.flush()
    return _views(session, [plan], now.date(), cfg)[0], adoption


__all__ = [
    "PLAN_ORDERS",
    "PLAN_STATUSES",
    "NotFound",
    "PlanCreated",
    "PlanRequest",
    "PlanView",
    "TaskChange",
    "close_plan",
    "create_plan_once",
    "create_plans_once",
    "csm_ids_for",
    "list_plans",
    "plan_view",
    "set_task_status",
]
