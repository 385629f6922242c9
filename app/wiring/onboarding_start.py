"""Starting onboarding for a won opportunity, exactly once (domain.md 6-8).

Called by :mod:`app.wiring.closed_won` once the opportunity, its account and its handover notes
are stored as the CRM has them now. In **one transaction**:

1. the plan already exists for this opportunity (a duplicate, a retry, won -> lost -> won):
   nothing more, the event is ``done``;
2. the deal's kind (7.3, :func:`app.domain.onboarding.classify_deal`): a renewal starts no
   onboarding and only moves ``renewal_on`` a term on (stamped: the push writes it back);
3. the tier at close (the account's, else computed from its ARR and this deal, 3.3);
4. the handover (6.2-6.3): the CRM's handover note of the opportunity (else of the account)
   plus the deal's own fields, its completeness for the tier, and crmsync's handover note on the
   account (``origin = cs``, ``title``/``body`` stamped, so the push creates it in the CRM and
   stores its CRM id: the next pull updates that row instead of adding a second one);
5. the CSM (8.3) with :func:`app.db.csm_store.assign_account_csm`, the same store the CSM API
   uses (candidates and loads from :func:`app.db.csm_store.csm_candidates`, the choice written
   to ``csm_id`` / ``backup_csm_id`` and stamped); ``csm_email`` and ``onboarding_status`` on
   the account are stamped too (the push writes them to the CRM); ``lifecycle_stage`` becomes
   ``onboarding`` (new business and winback);
6. the plan (7.2 / 7.3, :func:`app.domain.onboarding.build_plan`) with its tasks, the
   ``handover_complete`` task for the sales rep listing what is missing, stored with
   :func:`app.db.onboarding_store.create_plan_once` (the API's and tests' path too);
7. the inbox event is ``done``.

``create_plan_once`` inserts with ``ON CONFLICT (opportunity_id) DO NOTHING``: a second,
concurrent attempt finds the winner's plan, rolls back what it wrote (note, CSM) and is ``done``
too. On PostgreSQL the account row is locked first (``SELECT ... FOR UPDATE``) so two deals of
one account do not both read the same CSM loads.
"""

from __future__ import annotations

import uuid
from calendar import monthrange
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.types import CrmName
from app.db.base import utcnow
from app.db.cs_writes import stamp_cs_change
from app.db.csm_store import assign_account_csm
from app.db.enums import InboxStatus
from app.db.inbox_store import finish
from app.db.models import (
    Account,
    AccountEvent,
    Csm,
    HandoverNote,
    OnboardingPlan,
    Opportunity,
    WebhookEvent,
)
from app.db.onboarding_store import create_plan_once
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
from app.domain.onboarding import build_plan, classify_deal, services_sold
from app.domain.tier import ClosedWonDeal, TierInput, compute_tier
from app.domain.values import Tier
from app.mappers.handover import STRUCTURED_COLUMNS
from app.mappers.spec import MappingSet
from app.wiring.webhook_processing import EventView, HandlerResult, ProcessingContext

__all__ = ["ONBOARDING_STARTED", "start_onboarding"]

ONBOARDING_STARTED = "onboarding_started"  # account_events.kind
_TIERS: tuple[Tier, ...] = ("key", "high", "low", "tech")


class _AlreadyStarted(Exception):
    def __init__(self, plan_id: int) -> None:
        super().__init__(plan_id)
        self.plan_id = plan_id


def start_onboarding(
    context: ProcessingContext,
    event: EventView,
    crm: CrmName,
    mappings: MappingSet,
    opportunity_crm_id: str,
) -> HandlerResult:
    """Start (once) what a won opportunity starts; see the module docstring."""
    id_column = mappings.for_table("opportunities").id_column
    for attempt in (1, 2):
        with context.session_factory() as session:
            try:
                result = _start(
                    context, session, event, crm, mappings, id_column, opportunity_crm_id
                )
                session.commit()
                return result
            except _AlreadyStarted as done:
                session.rollback()
                return _finish_only(
                    context, session, event, f"onboarding plan {done.plan_id} exists"
                )
            except IntegrityError:
                # A unique row another attempt committed first (the plan's conflict is
                # handled by create_plan_once; this is the belt to its braces): look again.
                session.rollback()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")  # pragma: no cover


def _finish_only(
    context: ProcessingContext, session: Session, event: EventView, note: str
) -> HandlerResult:
    row = session.get(WebhookEvent, event.id)
    if row is not None:
        finish(session, row, InboxStatus.DONE, context.clock(), note)
        session.commit()
    return HandlerResult(InboxStatus.DONE, note)


def _start(
    context: ProcessingContext,
    session: Session,
    event: EventView,
    crm: CrmName,
    mappings: MappingSet,
    id_column: str,
    crm_id: str,
) -> HandlerResult:
    cfg = context.settings.scoring.config
    now = context.clock()
    today = now.date()
    opportunity = session.scalars(
        select(Opportunity).where(getattr(Opportunity, id_column) == crm_id)
    ).first()
    if opportunity is None:
        raise RuntimeError(f"opportunity {crm_id} is not stored (it was just read)")
    existing = session.scalar(
        select(OnboardingPlan.id).where(OnboardingPlan.opportunity_id == opportunity.id)
    )
    if existing is not None:
        raise _AlreadyStarted(existing)
    if opportunity.account_id is None:
        raise RuntimeError(
            f"opportunity {crm_id} has no account in the CS database yet; retried later"
        )
    account = session.scalars(
        select(Account).where(Account.id == opportunity.account_id).with_for_update()
    ).one()
    d0 = opportunity.close_on or today
    stage_before = account.lifecycle_stage
    deal_kind = classify_deal(opportunity.type, account_stage=stage_before, cfg=cfg)
    account_object = mappings.for_table("accounts").crm_object
    note_object = mappings.for_table("handover_notes").crm_object
    tier, tier_changed = _tier_at_close(account, opportunity, today, cfg)
    if deal_kind == "renewal":
        return _renewal(context, session, event, crm, account, opportunity, account_object, now)

    source_note = _handover_source(session, account, opportunity)
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
    # 8.3 through the store the CSM API uses: candidates with their loads (this account left
    # out), the choice written to csm_id / backup_csm_id and stamped for the push.
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
    )
    csm = session.get(Csm, assignment.csm.csm_id) if assignment.csm.csm_id else None
    backup = assignment.backup
    backup_csm = session.get(Csm, backup.csm_id) if backup and backup.csm_id else None
    csm_email = csm.email if csm is not None else assignment.csm.email
    backup_email = (
        backup_csm.email if backup_csm is not None else (backup.email if backup else None)
    )

    note = _handover_note(crm, account, opportunity, facts, check, crm_id, now)
    session.add(note)
    session.flush()
    # The plan and its tasks, once per opportunity (INSERT .. ON CONFLICT DO NOTHING on the
    # unique opportunity_id): a concurrent attempt that lost finds the winner's plan and rolls
    # back everything it wrote here (note, CSM), then finishes the event only.
    created = create_plan_once(
        session,
        account_id=account.id,
        opportunity_id=opportunity.id,
        decision=decision,
        csm_id=csm.id if csm is not None else None,
        handover_note_id=note.id,
        assignees={
            t.owner_role: _assignee(t.owner_role, opportunity, csm_email, backup_email)
            for t in decision.tasks
        },
        notice_at=utcnow() if context.settings.webhooks.notice_url else None,
    )
    if not created.created:
        raise _AlreadyStarted(created.plan_id)
    plan_id = created.plan_id

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
            session.add(
                AccountEvent(
                    account_id=account.id,
                    kind=LIFECYCLE_STAGE_ENTERED,
                    payload={
                        "stage": decision.lifecycle_stage,
                        "entered_on": today.isoformat(),
                        "reason": "winback" if deal_kind == "winback" else "closed-won",
                    },
                    occurred_at=now,
                )
            )
        if account.customer_since_on is None:
            account.customer_since_on = d0
    flags = [f for f in assignment.flags if f not in (account.flags or [])]
    if flags:
        account.flags = [*(account.flags or []), *flags]
    stamp_cs_change(account, changed, now)
    session.add(
        AccountEvent(
            account_id=account.id,
            kind=ONBOARDING_STARTED,
            payload={
                "plan_id": plan_id,
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
            },
            occurred_at=now,
        )
    )
    text = (
        f"plan {plan_id} ({decision.kind}, {tier}, {len(decision.tasks)} tasks), CSM "
        f"{csm_email or 'none'} ({assignment.csm.reason}), handover {note.status} "
        f"{note.completeness} %"
    )
    row = session.get(WebhookEvent, event.id)
    if row is not None:
        finish(session, row, InboxStatus.DONE, now, text)
    return HandlerResult(
        InboxStatus.DONE,
        text,
        writebacks={crm: {account_object: [account.id], note_object: [note.id]}},
        new_plan_ids=[plan_id],
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


def _handover_source(
    session: Session, account: Account, opportunity: Opportunity
) -> HandoverNote | None:
    """The CRM's handover note of the opportunity (newest), else one on the account that names
    no opportunity; crmsync's own notes (``origin = cs``) are not a source."""
    for where in (
        HandoverNote.opportunity_id == opportunity.id,
        (HandoverNote.account_id == account.id) & HandoverNote.opportunity_id.is_(None),
    ):
        found = session.scalars(
            select(HandoverNote)
            .where(where, HandoverNote.origin == "crm", HandoverNote.deleted_at.is_(None))
            .order_by(HandoverNote.updated_at.desc(), HandoverNote.id.desc())
        ).first()
        if found is not None:
            return found
    return None


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


def _renewal(
    context: ProcessingContext,
    session: Session,
    event: EventView,
    crm: CrmName,
    account: Account,
    opportunity: Opportunity,
    account_object: str,
    now: datetime,
) -> HandlerResult:
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
    row = session.get(WebhookEvent, event.id)
    if row is not None:
        finish(session, row, InboxStatus.DONE, now, text)
    return HandlerResult(InboxStatus.DONE, text, writebacks={crm: {account_object: [account.id]}})


def _add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    target_year, target_month = day.year + year, month + 1
    last = monthrange(target_year, target_month)[1]
    return date(target_year, target_month, min(day.day, last))
