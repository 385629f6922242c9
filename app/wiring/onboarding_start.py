"""Starting onboarding for won opportunities, exactly once each (domain.md 6-8), a batch at a time.

Called by :mod:`app.wiring.closed_won` once the opportunities, their accounts and their handover
notes are stored as the CRM has them now. :func:`start_onboarding_batch` handles the won events
of one worker batch in **one transaction**, which commits every event's work together with its
final inbox state (a kill leaves the whole batch due again, nothing half-done):

0. the events' leases are renewed: the transaction's first write, so on SQLite it holds the
   write lock from here and every read below sees what the commit builds on;
1. the opportunities, their existing plans, their accounts (``SELECT ... FOR UPDATE`` in id
   order on PostgreSQL), the handover notes and the CSM loads are read **once** for the batch;
2. then each event in id order, in memory, as it would run alone after the ones before it:

   a. the plan already exists for this opportunity (a duplicate, a retry, won -> lost -> won),
      or an earlier event of this batch starts it: nothing more, the event is ``done``;
   b. the deal's kind (7.3, :func:`app.domain.onboarding.classify_deal`): a renewal starts no
      onboarding and only moves ``renewal_on`` a term on (stamped: the push writes it back);
   c. the tier at close (the account's, else computed from its ARR and this deal, 3.3);
   d. the handover (6.2-6.3): the CRM's handover note of the opportunity (else of the account)
      plus the deal's own fields, its completeness for the tier, and crmsync's handover note on
      the account (``origin = cs``, ``title``/``body`` stamped, so the push creates it in the
      CRM and stores its CRM id: the next pull updates that row instead of adding a second);
   e. the CSM (8.3) with :func:`app.db.csm_store.assign_account_csm` on the batch's
      :class:`~app.db.csm_store.CsmLoads` (the loads read once and kept current as the batch
      assigns, so each choice is the one a transaction of its own would make); ``csm_email``
      and ``onboarding_status`` stamped; ``lifecycle_stage`` becomes ``onboarding`` (new
      business and winback);
   f. the plan (7.2 / 7.3, :func:`app.domain.onboarding.build_plan`) with its tasks, the
      ``handover_complete`` task for the sales rep listing what is missing.

   An event that raises here has its account's columns put back and fails alone (retried);
3. the writes, set-based: the handover notes, the plans and their tasks
   (:func:`app.db.onboarding_store.create_plans_once`: ``INSERT .. ON CONFLICT
   (opportunity_id) DO NOTHING``), the account events, the changed accounts, and every event's
   final state (:func:`app.db.inbox_store.finish_many`).

A plan another transaction stored meanwhile (it cannot happen on SQLite, whose write lock the
batch holds from step 0; on PostgreSQL a concurrent batch with the same opportunity) or any other
database error in step 3 rolls the batch back, and its events are redone one per transaction
(batches of one; a lone event that meets a conflict looks once more and finds the winner's plan,
``done``). So one bad event never fails the others, and the unique ``opportunity_id`` keeps one
plan per opportunity whatever runs concurrently.
"""

from __future__ import annotations

import uuid
from calendar import monthrange
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, insert, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.types import CrmName
from app.db.base import utcnow
from app.db.cs_writes import stamp_cs_change
from app.db.csm_store import CsmLoads, assign_account_csm
from app.db.enums import InboxStatus
from app.db.inbox_store import finish_many, renew_lease
from app.db.models import (
    Account,
    AccountEvent,
    HandoverNote,
    OnboardingPlan,
    Opportunity,
)
from app.db.onboarding_store import PlanRequest, create_plans_once
from app.domain.config import ScoringConfig
from app.domain.handover import (
    DealFacts,
    HandoverCheck,
    HandoverFacts,
    check_handover,
    handover_note_body,
    handover_note_title,
)
from app.domain.lifecycle import LIFECYCLE_STAGE_ENTERED
from app.domain.onboarding import PlanDecision, build_plan, classify_deal, services_sold
from app.domain.tier import ClosedWonDeal, TierInput, compute_tier
from app.domain.values import Tier
from app.logging import get_logger
from app.mappers.handover import STRUCTURED_COLUMNS
from app.mappers.spec import MappingSet
from app.wiring.webhook_processing import EventView, HandlerResult, ProcessingContext

__all__ = ["ONBOARDING_STARTED", "start_onboarding", "start_onboarding_batch"]

log = get_logger("crmsync.webhooks")

ONBOARDING_STARTED = "onboarding_started"  # account_events.kind
_TIERS: tuple[Tier, ...] = ("key", "high", "low", "tech")
#: The account's column attributes, saved before an event changes it and put back if it fails.
_ACCOUNT_COLUMNS: tuple[str, ...] = tuple(a.key for a in sa_inspect(Account).column_attrs)

_EVENTS = cast(Table, AccountEvent.__table__)

#: One won event and the CRM id of its opportunity.
WonEvent = tuple[EventView, str]


class _Conflict(Exception):
    """A plan of this batch was stored by another transaction after the batch looked."""


def start_onboarding(
    context: ProcessingContext,
    event: EventView,
    crm: CrmName,
    mappings: MappingSet,
    opportunity_crm_id: str,
) -> HandlerResult:
    """Start (once) what one won opportunity starts: a batch of one."""
    outcome = start_onboarding_batch(context, [(event, opportunity_crm_id)], crm, mappings)
    result = outcome[event.id]
    if isinstance(result, Exception):
        raise result
    return result


def start_onboarding_batch(
    context: ProcessingContext, items: Sequence[WonEvent], crm: CrmName, mappings: MappingSet
) -> dict[int, HandlerResult | Exception]:
    """Each event's result, or the exception that fails it (see the module docstring)."""
    if not items:
        return {}
    failure: Exception | None = None
    for _attempt in range(1 if len(items) > 1 else 2):
        try:
            return _run_batch(context, items, crm, mappings)
        except Exception as exc:
            failure = exc
            if not isinstance(exc, _Conflict | IntegrityError):
                break
    assert failure is not None
    if len(items) == 1:
        return {items[0][0].id: failure}
    log.warning(
        "webhooks.batch.one_by_one",
        events=len(items),
        error=f"{type(failure).__name__}: {failure}",
    )
    out: dict[int, HandlerResult | Exception] = {}
    for item in items:
        out.update(start_onboarding_batch(context, [item], crm, mappings))
    return out


@dataclass
class _Started:
    """One event's onboarding, decided in memory; written with the batch once ids are known."""

    event: EventView
    account: Account
    opportunity: Opportunity
    decision: PlanDecision
    note: HandoverNote
    csm_id: int | None
    assignees: dict[str, str | None]
    notice_at: datetime | None
    summary: dict[str, Any]  # the onboarding_started payload, without the plan id
    text: str  # the event's note after "plan N"
    account_events: list[dict[str, Any]] = field(default_factory=list)  # before the started one


@dataclass
class _Batch:
    """What the batch read once: its opportunities, their plans and accounts, the CRM handover
    notes (newest first) and the CSM loads."""

    opportunities: dict[str, Opportunity]
    plans: dict[int, int]  # opportunity id -> plan id
    accounts: dict[int, Account]
    by_opportunity: dict[int, HandoverNote]
    by_account: dict[int, HandoverNote]
    loads: CsmLoads


def _read_batch(
    session: Session, id_column: str, crm_ids: Sequence[str], today: date, cfg: ScoringConfig
) -> _Batch:
    column = getattr(Opportunity, id_column)
    opportunities = {
        str(getattr(o, id_column)): o
        for o in session.scalars(select(Opportunity).where(column.in_(sorted(set(crm_ids)))))
    }
    opportunity_ids = sorted(o.id for o in opportunities.values())
    plans = {
        int(opp): int(plan)
        for opp, plan in session.execute(
            select(OnboardingPlan.opportunity_id, OnboardingPlan.id).where(
                OnboardingPlan.opportunity_id.in_(opportunity_ids)
            )
        )
        if opp is not None
    }
    account_ids = sorted({o.account_id for o in opportunities.values() if o.account_id})
    accounts = {
        a.id: a
        for a in session.scalars(
            select(Account)
            .where(Account.id.in_(account_ids))
            .order_by(Account.id)
            .with_for_update()
        )
    }
    # The CRM's handover notes: of the opportunity (newest), else of the account naming no
    # opportunity; crmsync's own notes (origin = cs) are not a source.
    by_opportunity: dict[int, HandoverNote] = {}
    by_account: dict[int, HandoverNote] = {}
    for note in session.scalars(
        select(HandoverNote)
        .where(
            HandoverNote.origin == "crm",
            HandoverNote.deleted_at.is_(None),
            or_(
                HandoverNote.opportunity_id.in_(opportunity_ids),
                and_(
                    HandoverNote.account_id.in_(account_ids), HandoverNote.opportunity_id.is_(None)
                ),
            ),
        )
        .order_by(HandoverNote.updated_at.desc(), HandoverNote.id.desc())
    ):
        if note.opportunity_id is not None:
            by_opportunity.setdefault(note.opportunity_id, note)
        elif note.account_id is not None:
            by_account.setdefault(note.account_id, note)
    loads = CsmLoads.read(session, today=today, held=list(accounts.values()), cfg=cfg)
    return _Batch(opportunities, plans, accounts, by_opportunity, by_account, loads)


def _run_batch(
    context: ProcessingContext, items: Sequence[WonEvent], crm: CrmName, mappings: MappingSet
) -> dict[int, HandlerResult | Exception]:
    cfg = context.settings.scoring.config
    now = context.clock()
    today = now.date()
    id_column = mappings.for_table("opportunities").id_column
    account_object = mappings.for_table("accounts").crm_object
    note_object = mappings.for_table("handover_notes").crm_object
    out: dict[int, HandlerResult | Exception] = {}
    finished: list[tuple[int, InboxStatus, str | None]] = []
    started: list[_Started] = []
    repeats: list[tuple[EventView, int]] = []  # a later event of this batch, same opportunity
    with context.session_factory() as session:
        lease = timedelta(seconds=context.settings.webhooks.lease_seconds)
        renew_lease(session, [e.id for e, _ in items], now, lease)
        batch = _read_batch(session, id_column, [c for _, c in items], today, cfg)
        starting: set[int] = set()
        for event, crm_id in items:
            opportunity = batch.opportunities.get(crm_id)
            if opportunity is None:
                out[event.id] = RuntimeError(
                    f"opportunity {crm_id} is not stored (it was just read)"
                )
                continue
            existing = batch.plans.get(opportunity.id)
            if existing is not None:
                text = f"onboarding plan {existing} exists"
                finished.append((event.id, InboxStatus.DONE, text))
                out[event.id] = HandlerResult(InboxStatus.DONE, text)
                continue
            if opportunity.id in starting:
                repeats.append((event, opportunity.id))
                continue
            account = batch.accounts.get(opportunity.account_id or 0)
            if account is None:
                out[event.id] = RuntimeError(
                    f"opportunity {crm_id} has no account in the CS database yet; retried later"
                )
                continue
            saved = {k: getattr(account, k) for k in _ACCOUNT_COLUMNS}
            try:
                step = _decide(
                    context, session, event, crm, account, opportunity, crm_id, batch, now
                )
            except Exception as exc:  # this event fails alone; its account is as it was
                for key, value in saved.items():
                    if getattr(account, key) is not value:
                        setattr(account, key, value)
                out[event.id] = exc
                continue
            if isinstance(step, HandlerResult):  # a renewal
                step.writebacks = {crm: {account_object: [account.id]}}
                finished.append((event.id, step.status, step.note))
                out[event.id] = step
                continue
            started.append(step)
            starting.add(opportunity.id)
            batch.loads.count_plan(step.csm_id, step.decision.started_on)
        plan_of = _write_started(session, started, now)
        for step in started:
            plan_id = plan_of[step.opportunity.id]
            text = f"plan {plan_id} {step.text}"
            finished.append((step.event.id, InboxStatus.DONE, text))
            out[step.event.id] = HandlerResult(
                InboxStatus.DONE,
                text,
                writebacks={crm: {account_object: [step.account.id], note_object: [step.note.id]}},
                new_plan_ids=[plan_id],
            )
        for event, opportunity_id in repeats:
            text = f"onboarding plan {plan_of[opportunity_id]} exists"
            finished.append((event.id, InboxStatus.DONE, text))
            out[event.id] = HandlerResult(InboxStatus.DONE, text)
        session.flush()  # the accounts' changes
        finish_many(session, finished, now)
        session.commit()
    return out


def _write_started(session: Session, started: Sequence[_Started], now: datetime) -> dict[int, int]:
    """The notes, plans, tasks and account events of the batch's new onboardings; returns
    opportunity id -> plan id. Raises :class:`_Conflict` when a plan was there already."""
    if not started:
        return {}
    session.add_all([s.note for s in started])
    session.flush()  # the notes' ids (one multi-row INSERT), and the accounts' changes
    created = create_plans_once(
        session,
        [
            PlanRequest(
                account_id=s.account.id,
                opportunity_id=s.opportunity.id,
                decision=s.decision,
                csm_id=s.csm_id,
                handover_note_id=s.note.id,
                assignees=s.assignees,
                notice_at=s.notice_at,
            )
            for s in started
        ],
    )
    lost = [s.opportunity.id for s, c in zip(started, created, strict=True) if not c.created]
    if lost:
        raise _Conflict(f"opportunities {lost} got their plan from another transaction")
    plan_of: dict[int, int] = {}
    rows: list[dict[str, Any]] = []
    for s, c in zip(started, created, strict=True):
        plan_of[s.opportunity.id] = c.plan_id
        rows.extend(s.account_events)
        rows.append(
            {
                "account_id": s.account.id,
                "kind": ONBOARDING_STARTED,
                "payload": {"plan_id": c.plan_id, **s.summary},
                "occurred_at": now,
            }
        )
    session.connection().execute(insert(_EVENTS), rows)
    return plan_of


def _decide(
    context: ProcessingContext,
    session: Session,
    event: EventView,
    crm: CrmName,
    account: Account,
    opportunity: Opportunity,
    crm_id: str,
    batch: _Batch,
    now: datetime,
) -> _Started | HandlerResult:
    """One event's onboarding, in memory: the account's columns changed, the rest returned."""
    cfg = context.settings.scoring.config
    today = now.date()
    d0 = opportunity.close_on or today
    stage_before = account.lifecycle_stage
    deal_kind = classify_deal(opportunity.type, account_stage=stage_before, cfg=cfg)
    tier, tier_changed = _tier_at_close(account, opportunity, today, cfg)
    if deal_kind == "renewal":
        return _renewal(account, opportunity, now)

    source_note = batch.by_opportunity.get(opportunity.id) or batch.by_account.get(account.id)
    deal = DealFacts(
        name=opportunity.name,
        amount=opportunity.amount,
        currency=opportunity.currency or account.currency,
        term_start_on=opportunity.term_start_on or account.contract_start_on,
        term_months=opportunity.contract_term_months,
        auto_renew=account.auto_renew,
        preassigned_csm_email=opportunity.preassigned_csm_email,
    )
    columns: dict[str, Any] = {}
    if source_note is not None:
        columns = {c: getattr(source_note, c) for c in STRUCTURED_COLUMNS}
    facts = HandoverFacts.from_columns(columns, deal=deal)
    check = check_handover(facts, tier, cfg)
    services = services_sold(facts.services, cfg=cfg)
    decision = build_plan(
        tier,
        deal_kind,
        d0,
        today,
        handover=check if source_note is not None else None,
        services=services,
        deal_name=opportunity.name,
        cfg=cfg,
    )
    onboarding = decision.kind == "full"
    # 8.3 through the store the CSM API uses, on the batch's loads: candidates with their loads
    # (this account left out), the choice written to csm_id / backup_csm_id and stamped.
    assignment = assign_account_csm(
        session,
        account_id=account.id,
        tier=tier,
        today=today,
        preassigned_email=opportunity.preassigned_csm_email,
        onboarding=onboarding,
        apply=True,
        now=now,
        cfg=cfg,
        loads=batch.loads,
    )
    emails = batch.loads.emails
    csm_id = assignment.csm.csm_id
    csm_email = emails.get(csm_id, assignment.csm.email) if csm_id else assignment.csm.email
    backup = assignment.backup
    backup_email = None
    if backup is not None:
        backup_email = emails.get(backup.csm_id, backup.email) if backup.csm_id else backup.email
    note = _handover_note(crm, account, opportunity, facts, check, crm_id, now)

    account_events: list[dict[str, Any]] = []
    changed: list[str] = []
    if tier_changed:
        changed.append("tier")
    if account.csm_email != csm_email:
        account.csm_email = csm_email
        changed.append("csm_email")
    if onboarding:
        if account.onboarding_status != "active":
            account.onboarding_status = "active"
            changed.append("onboarding_status")
        if decision.lifecycle_stage and account.lifecycle_stage != decision.lifecycle_stage:
            account.lifecycle_stage = decision.lifecycle_stage
            account.lifecycle_entered_at = now
            changed.append("lifecycle_stage")
            account_events.append(
                {
                    "account_id": account.id,
                    "kind": LIFECYCLE_STAGE_ENTERED,
                    "payload": {
                        "stage": decision.lifecycle_stage,
                        "entered_on": today.isoformat(),
                        "reason": "winback" if deal_kind == "winback" else "closed-won",
                    },
                    "occurred_at": now,
                }
            )
        if account.customer_since_on is None:
            account.customer_since_on = d0
    flags = [f for f in assignment.flags if f not in (account.flags or [])]
    if flags:
        account.flags = [*(account.flags or []), *flags]
    stamp_cs_change(account, changed, now)
    summary = {
        "opportunity_id": opportunity.id,
        "deal_kind": deal_kind,
        "plan_kind": decision.kind,
        "tier": tier,
        "csm": csm_email,
        "csm_reason": assignment.csm.reason,
        "backup_csm": backup_email,
        "flags": list(assignment.flags),
        "handover_status": note.status,
        "handover_completeness": note.completeness,
    }
    text = (
        f"({decision.kind}, {tier}, {len(decision.tasks)} tasks), CSM "
        f"{csm_email or 'none'} ({assignment.csm.reason}), handover {note.status} "
        f"{note.completeness} %"
    )
    return _Started(
        event=event,
        account=account,
        opportunity=opportunity,
        decision=decision,
        note=note,
        csm_id=csm_id,
        assignees={
            t.owner_role: _assignee(t.owner_role, opportunity, csm_email, backup_email)
            for t in decision.tasks
        },
        notice_at=utcnow() if context.settings.webhooks.notice_url else None,
        summary=summary,
        text=text,
        account_events=account_events,
    )


def _tier_at_close(
    account: Account, opportunity: Opportunity, today: date, cfg: ScoringConfig
) -> tuple[Tier, bool]:
    """The account's tier; when it has none yet (a new customer), computed now (3.3)."""
    for known in _TIERS:
        if account.tier == known:
            return known, False
    last = (
        ClosedWonDeal(
            opportunity.amount, opportunity.close_on or today, opportunity.contract_term_months
        )
        if opportunity.amount is not None
        else None
    )
    result = compute_tier(
        TierInput(
            arr=account.arr,
            mrr=account.mrr,
            last_deal=last,
            potential_arr=account.potential_arr,
            strategic_account=account.strategic_account,
        ),
        today,
        cfg,
    )
    account.tier = result.tier
    return result.tier, True


def _handover_note(
    crm: CrmName,
    account: Account,
    opportunity: Opportunity,
    facts: HandoverFacts,
    check: HandoverCheck,
    opportunity_crm_id: str,
    now: datetime,
) -> HandoverNote:
    """crmsync's handover note on the account, stamped so the push creates it in the CRM."""
    columns = facts.columns()
    note = HandoverNote(
        account_id=account.id,
        opportunity_id=opportunity.id,
        title=handover_note_title(opportunity.name)[:255],
        body=handover_note_body(
            facts,
            check,
            deal_name=opportunity.name,
            opportunity_crm_id=opportunity_crm_id,
            html_output=crm == "hubspot",
        ),
        completeness=check.completeness,
        status=check.status,
        origin="cs",
        crmsync_id=str(uuid.uuid4()),
        **{k: columns[k] for k in STRUCTURED_COLUMNS},
    )
    if crm == "salesforce":
        note.sf_parent_id = account.sf_id
    else:
        note.hs_company_id = account.hs_id
    stamp_cs_change(note, ["title", "body"], now)
    return note


def _assignee(
    owner_role: str, opportunity: Opportunity, csm: str | None, backup: str | None
) -> str | None:
    role = owner_role.lower()
    if role.startswith("backup"):
        return backup
    if "csm" in role:
        return csm
    if role.startswith("ae") or "sales" in role:
        return opportunity.sales_owner
    return None


def _renewal(account: Account, opportunity: Opportunity, now: datetime) -> HandlerResult:
    """7.3: a renewal won starts no onboarding; the renewal date moves one term on and the
    account is ``steady`` (domain.md 2: renewal closed-won -> steady)."""
    months = opportunity.contract_term_months or 12
    base = account.renewal_on or account.contract_end_on or opportunity.close_on or now.date()
    renewal_on = _add_months(base, months)
    changed: list[str] = []
    if account.renewal_on != renewal_on:
        account.renewal_on = renewal_on
        changed.append("renewal_on")
    if account.lifecycle_stage == "renewal":
        account.lifecycle_stage = "steady"
        account.lifecycle_entered_at = now
        changed.append("lifecycle_stage")
    stamp_cs_change(account, changed, now)
    text = f"renewal won: renewal_on {renewal_on.isoformat()}, no onboarding (7.3)"
    return HandlerResult(InboxStatus.DONE, text)


def _add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    target_year, target_month = day.year + year, month + 1
    last = monthrange(target_year, target_month)[1]
    return date(target_year, target_month, min(day.day, last))
