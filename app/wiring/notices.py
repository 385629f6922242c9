"""The new-onboarding notice (optional): one JSON POST per new plan to
``CRMSYNC_WEBHOOKS__NOTICE_URL`` (a chat or ticketing webhook), with httpx.

Sent after the plan's commit (a notice never holds up, or undoes, the plan). Retried on a
connection error, a timeout, 429 and 5xx, with a doubling pause, ``notice_attempts`` times in
all; any other answer (a 4xx: the receiver refuses the message) is not retried. A notice that
still fails is logged at WARNING: the plan is in the database and in ``GET /api/v1/onboarding``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Account, Csm, HandoverNote, OnboardingPlan
from app.logging import get_logger
from app.settings import Settings

__all__ = ["NoticeResult", "notice_message", "post_notice", "send_onboarding_notices"]

log = get_logger("crmsync.notices")


@dataclass(frozen=True)
class NoticeResult:
    plan_id: int
    delivered: bool
    attempts: int
    status: int | None
    error: str | None = None


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
    """One notice per plan in ``plan_ids`` to the configured URL (none when it is unset)."""
    tuning = settings.webhooks
    url = tuning.notice_url
    if not url or not plan_ids:
        return []
    results: list[NoticeResult] = []
    with (
        httpx.Client(timeout=tuning.notice_timeout_seconds, transport=transport) as client,
        factory() as session,
    ):
        for plan_id in plan_ids:
            plan = session.get(OnboardingPlan, plan_id)
            if plan is None:
                continue
            delivered, made, status, error = post_notice(
                client,
                url,
                notice_message(session, plan),
                attempts=tuning.notice_attempts,
                backoff=tuning.notice_backoff_seconds,
                sleep=sleep,
            )
            if not delivered:
                log.warning(
                    "notices.onboarding.failed", plan_id=plan_id, attempts=made, error=error
                )
            results.append(NoticeResult(plan_id, delivered, made, status, error))
    return results
