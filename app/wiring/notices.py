"""The new-onboarding notice (optional): one JSON POST per new plan to
``CRMSYNC_WEBHOOKS__NOTICE_URL`` (a chat or ticketing webhook), with httpx.

An outbox: the plan is stored with ``notice_status = 'pending'`` in its own transaction
(``create_plan_once(notice_at=...)``); the webhook job sends it right after the commit, and the
sweeper enqueues the ``crmsync.notice`` job (:func:`deliver_notice`) for every pending notice
that is due, so a process killed between the commit and the POST loses no notice. A notice
never holds up, or undoes, the plan.

A round tries ``notice_attempts`` times, on a connection error, a timeout, 429 and 5xx, with a
doubling pause; a 4xx (the receiver refuses the message) ends it ``failed``. A round that
fails otherwise leaves it ``pending`` for the next one, 5 minutes later and doubling, up to
``notice_rounds``; then ``failed``. The state, attempts and last error are on the plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import Account, Csm, HandoverNote, OnboardingPlan
from app.logging import get_logger
from app.settings import Settings

__all__ = [
    "NoticeResult",
    "deliver_notice",
    "notice_message",
    "post_notice",
    "send_onboarding_notices",
]

#: How long a delivery round holds its notice (longer than its tries and pauses take).
CLAIM = timedelta(minutes=2)
#: The pause before the second round; each further round waits twice as long.
RETRY = timedelta(minutes=5)

log = get_logger("crmsync.notices")


@dataclass(frozen=True)
class NoticeResult:
    plan_id: int
    delivered: bool
    attempts: int
    status: int | None
    error: str | None = None
    state: str = "sent"  # the notice's state afterwards: sent, pending (retried later), failed


def notice_message(session: Session, plan: OnboardingPlan) -> dict[str, Any]:
    """The JSON body of one plan's notice: who, what tier, which CSM, how complete the handover
    was, and a ``text`` line for chat tools that show only that."""
    account = session.get(Account, plan.account_id)
    csm = session.get(Csm, plan.csm_id) if plan.csm_id else None
    note = session.get(HandoverNote, plan.handover_note_id) if plan.handover_note_id else None
    name = account.name if account is not None else f"account {plan.account_id}"
    csm_text = f"{csm.name} <{csm.email}>" if csm is not None else "no CSM assigned"
    status = note.status if note is not None else None
    completeness = note.completeness if note is not None else None
    return {
        "event": "onboarding.started",
        "text": (
            f"New onboarding: {name} ({plan.tier_at_close}), CSM {csm_text}, handover "
            f"{status or 'unknown'} ({completeness if completeness is not None else '?'} %)"
        ),
        "plan_id": plan.id,
        "kind": plan.kind,
        "tier": plan.tier_at_close,
        "started_on": plan.started_on.isoformat(),
        "account": {
            "id": plan.account_id,
            "name": name,
            "sf_id": account.sf_id if account is not None else None,
            "hs_id": account.hs_id if account is not None else None,
        },
        "csm": None if csm is None else {"id": csm.id, "name": csm.name, "email": csm.email},
        "handover": {"status": status, "completeness": completeness},
        "tasks": len(plan.tasks),
    }


def post_notice(
    client: httpx.Client,
    url: str,
    message: dict[str, Any],
    *,
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, int, int | None, str | None]:
    """POST ``message``; returns (delivered, attempts made, last status, last error)."""
    status: int | None = None
    error: str | None = None
    for attempt in range(1, attempts + 1):
        try:
            response = client.post(url, json=message)
            status = response.status_code
            if response.is_success:
                return True, attempt, status, None
            error = f"HTTP {status}"
            if status != 429 and status < 500:
                return False, attempt, status, error
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    return False, attempts, status, error


def send_onboarding_notices(
    settings: Settings,
    factory: sessionmaker[Session],
    plan_ids: Sequence[int],
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[NoticeResult]:
    """A delivery round of the pending notice of each plan in ``plan_ids`` that is due (none
    when no URL is set): what the webhook job does right after its commit. A notice another
    worker is sending, or already sent, is left alone."""
    tuning = settings.webhooks
    if not tuning.notice_url or not plan_ids:
        return []
    results: list[NoticeResult] = []
    with httpx.Client(timeout=tuning.notice_timeout_seconds, transport=transport) as client:
        for plan_id in plan_ids:
            result = _deliver(settings, factory, plan_id, client, sleep)
            if result is not None:
                results.append(result)
    return results


def deliver_notice(
    plan_id: int,
    *,
    settings: Settings | None = None,
    factory: sessionmaker[Session] | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The ``crmsync.notice`` job: one delivery round of plan ``plan_id``'s pending notice.

    Returns its state afterwards: ``sent``, ``pending`` (to be retried by the sweeper),
    ``failed``, or ``not_due`` (none pending, not due yet, or another worker holds it).
    """
    if settings is None or factory is None:
        from app.wiring.webhook_processing import default_context

        context = default_context()
        settings, factory = settings or context.settings, factory or context.session_factory
    tuning = settings.webhooks
    with httpx.Client(timeout=tuning.notice_timeout_seconds, transport=transport) as client:
        result = _deliver(settings, factory, plan_id, client, sleep)
    return "not_due" if result is None else result.state


def _deliver(
    settings: Settings,
    factory: sessionmaker[Session],
    plan_id: int,
    client: httpx.Client,
    sleep: Callable[[float], None],
) -> NoticeResult | None:
    """Claim the plan's due pending notice (a conditional UPDATE: of two workers one wins; the
    claim lasts :data:`CLAIM`, so a worker killed mid-POST frees it), POST it, then record the
    outcome: ``sent``; ``failed`` when the receiver refused it (a 4xx other than 429) or the
    rounds are used up; else ``pending`` again, due after a doubling pause. Delivery is at
    least once: a kill between the POST and its record sends it again."""
    tuning = settings.webhooks
    now = utcnow()
    plans = OnboardingPlan
    with factory() as session:
        claimed = session.execute(
            update(plans)
            .where(
                plans.id == plan_id,
                plans.notice_status == "pending",
                or_(plans.notice_due_at.is_(None), plans.notice_due_at <= now),
            )
            .values(notice_due_at=now + CLAIM, notice_attempts=plans.notice_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return None
        plan = session.get(OnboardingPlan, plan_id)
        assert plan is not None
        rounds = plan.notice_attempts
        url = tuning.notice_url
        message = notice_message(session, plan) if url else None
    error: str | None
    if not url or message is None:
        delivered, made, status, error = False, 0, None, "CRMSYNC_WEBHOOKS__NOTICE_URL is not set"
    else:
        delivered, made, status, error = post_notice(
            client,
            url,
            message,
            attempts=tuning.notice_attempts,
            backoff=tuning.notice_backoff_seconds,
            sleep=sleep,
        )
    refused = not url or (status is not None and status != 429 and 400 <= status < 500)
    if delivered:
        state, due = "sent", None
    elif refused or rounds >= tuning.notice_rounds:
        state, due = "failed", None
    else:
        state, due = "pending", utcnow() + RETRY * 2 ** (rounds - 1)
    with factory() as session:
        session.execute(
            update(plans)
            .where(plans.id == plan_id, plans.notice_status == "pending")
            .values(
                notice_status=state, notice_due_at=due, notice_error=(error or None) and error[:255]
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
    if not delivered:
        log.warning(
            "notices.onboarding.failed",
            plan_id=plan_id,
            attempts=made,
            round=rounds,
            state=state,
            error=error,
        )
    return NoticeResult(plan_id, delivered, made, status, error, state)
