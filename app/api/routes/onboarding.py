"""Onboarding plans (domain.md 7): read them, mark their tasks, close them by hand.

* ``GET /api/v1/onboarding?status=&csm=&overdue=&order=&limit=&cursor=``: plans, keyset
  paginated (``next_cursor``), each with its tasks, due dates and progress. ``status`` is
  ``active``, ``completed`` (exit criteria met) or ``closed`` (by hand), repeatable; ``csm`` a CSM
  id or e-mail; ``overdue=true`` the active full plans past ``onboarding.max_days``. ``order``:
  ``id`` (the default, as before) or ``due``: by ``next_due_on``, the earliest due date of the
  plan's open tasks, then id, plans without an open task last; so the plans with late tasks
  come first across all pages, the most overdue first (the console's onboarding page).
* ``GET /api/v1/onboarding/{id}``: one plan.
* ``PATCH /api/v1/onboarding/tasks/{id}`` ``{"status": "done" | "skipped" | "open", "note":
  "..."}``: marks a task. When the plan's exit criteria (7.4) then hold, the plan is
  ``completed`` and the account enters ``adoption`` (pushed to the CRM with the next push); the
  answer says so (``"adoption": true``).
* ``POST /api/v1/onboarding/{id}/close`` ``{"reason": "..."}``: a CSM closes onboarding by hand
  with a reason (7.4); the account enters ``adoption``.

Progress and ``overdue`` are computed on read for today (UTC). Bad input answers 422 naming the
field (``{"detail": [{"loc": ["body", "status"], ...}]}``); an unknown plan or task 404.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, StringConstraints

from app.api.auth import PrincipalDep, needs
from app.api.deps import SessionDep, SettingsDep
from app.api.paging import decode_cursor, decode_key_cursor, encode_cursor, encode_key_cursor
from app.api.routes.accounts import _invalid, _json
from app.core.access import Role
from app.db.audit import record_audit
from app.db.models import OnboardingTask
from app.db.onboarding_store import (
    NotFound,
    PlanOrder,
    PlanView,
    close_plan,
    csm_ids_for,
    list_plans,
    plan_view,
    set_task_status,
)

router = APIRouter(prefix="/api/v1/onboarding", tags=["onboarding"])

PlanStatusIn = Literal["active", "completed", "closed"]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]


class TaskPatch(BaseModel):
    """A task marked done or skipped (or open again), with a note."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["done", "skipped", "open"]
    note: Note | None = None


class PlanClose(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


def _task(t: OnboardingTask, today: date) -> dict[str, Any]:
    return {
        "id": t.id,
        "code": t.code,
        "phase": t.phase,
        "title": t.title,
        "detail": t.detail,
        "owner_role": t.owner_role,
        "assignee": t.assignee,
        "automated": t.automated,
        "due_on": t.due_on,
        "status": t.status,
        "done_on": t.done_on,
        "note": t.note,
        "late": t.status == "open" and t.due_on < today,
    }


def _plan(view: PlanView, today: date) -> Any:
    p, pr = view.plan, view.progress
    return _json(
        {
            "id": p.id,
            "account_id": p.account_id,
            "account_name": view.account_name,
            "opportunity_id": p.opportunity_id,
            "handover_note_id": p.handover_note_id,
            "kind": p.kind,
            "tier_at_close": p.tier_at_close,
            "started_on": p.started_on,
            "status": p.status,
            "csm_id": p.csm_id,
            "csm_email": view.csm_email,
            "closed_at": p.closed_at,
            "close_reason": p.close_reason,
            "next_due_on": view.next_due_on,
            "progress": {
                "total": pr.total,
                "done": pr.done,
                "skipped": pr.skipped,
                "open": pr.open,
                "percent": pr.percent,
                "late_tasks": list(pr.late_tasks),
                "overdue": pr.overdue,
                "overdue_on": pr.overdue_on,
                "exit_met": pr.exit_met,
                "exit_missing": list(pr.exit_missing),
            },
            "tasks": [_task(t, today) for t in view.tasks],
        }
    )


def _today() -> date:
    return datetime.now(UTC).date()


@router.get("", summary="Onboarding plans with tasks, due dates and progress", **needs(Role.VIEWER))
def list_onboarding(
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[list[PlanStatusIn] | None, Query(description="Plan status(es).")] = None,
    csm: Annotated[
        str | None, Query(min_length=1, max_length=320, description="A CSM id or e-mail.")
    ] = None,
    overdue: Annotated[
        bool | None, Query(description="Past onboarding.max_days (domain.md 7.4).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    order: Annotated[
        PlanOrder,
        Query(
            description="`id` (default): plans by id. `due`: by `next_due_on`, the earliest "
            "due date of the plan's open tasks, then id; plans without an open task last. So "
            "the plans with late (overdue) tasks come first across all pages, the most overdue "
            "first. Both are keyset-paged with `next_cursor`; a cursor is only valid with the "
            "order and filters it was made with."
        ),
    ] = "id",
) -> Any:
    """Plans with their tasks and progress, keyset-paged (`next_cursor`).

    `order=id` (the default): by id. `order=due`: by `next_due_on`, the earliest due date of
    the plan's open tasks, then id; plans without an open task last. The plans with late
    (overdue) tasks therefore come first across all pages, the most overdue first."""
    filters: dict[str, Any] = {"status": sorted(status or []), "csm": csm, "overdue": overdue}
    if order != "id":  # only when given: cursors made before the order existed stay valid
        filters["order"] = order
    after = 0
    after_due: tuple[date, int] | None = None
    if cursor:
        try:
            if order == "due":
                text, last_id = decode_key_cursor(cursor, filters)
                after_due = (_cursor_date(text), last_id)
            else:
                after = decode_cursor(cursor, filters)
        except ValueError as exc:
            return _invalid("cursor", str(exc), cursor)
    csm_ids: list[int] = []
    if csm is not None:
        csm_ids = csm_ids_for(session, csm)
        if not csm_ids:
            return _invalid("csm", "no CSM with this id or e-mail", csm)
    today = _today()
    views = list_plans(
        session,
        today=today,
        status=status or (),
        csm_ids=csm_ids,
        overdue=overdue,
        after_id=after,
        limit=limit + 1,
        cfg=settings.scoring.config,
        order=order,
        after_due=after_due,
    )
    page = views[:limit]
    next_cursor = None
    if len(views) > limit:
        due, plan_id = page[-1].due_key
        next_cursor = (
            encode_key_cursor((due.isoformat(), plan_id), filters)
            if order == "due"
            else encode_cursor(plan_id, filters)
        )
    return {"items": [_plan(v, today) for v in page], "next_cursor": next_cursor}


def _cursor_date(text: str) -> date:
    """The date of a ``due`` cursor (ValueError when it is none: the cursor is refused)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("not a cursor this API returned") from None


@router.get("/{plan_id}", summary="One onboarding plan", **needs(Role.VIEWER))
def get_onboarding(
    session: SessionDep, settings: SettingsDep, plan_id: Annotated[int, Path(ge=1)]
) -> Any:
    today = _today()
    try:
        view = plan_view(session, plan_id, today=today, cfg=settings.scoring.config)
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return _plan(view, today)


@router.patch(
    "/tasks/{task_id}",
    summary="Mark a task done or skipped, with a note",
    **needs(Role.OPERATOR),
)
def patch_task(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    task_id: Annotated[int, Path(ge=1)],
    body: TaskPatch,
) -> Any:
    """The change is in the audit log as the calling key (the console's "Mark done" too),
    in the same transaction; a repeated change that changes nothing is not logged again."""
    try:
        change = set_task_status(
            session, task_id, status=body.status, note=body.note, cfg=settings.scoring.config
        )
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    if change.changed:
        record_audit(
            session,
            principal.actor,
            "onboarding_task.set",
            f"onboarding_task:{task_id}",
            {
                "status": body.status,
                "note": body.note,
                "plan_id": change.task.plan_id,
                "adoption": change.adoption,
            },
        )
    session.commit()
    today = _today()
    return {
        "task": _json(_task(change.task, today)),
        "plan": _plan(change.view, today),
        "changed": change.changed,
        "adoption": change.adoption,
    }


@router.post(
    "/{plan_id}/close",
    summary="Close onboarding by hand, with a reason",
    **needs(Role.OPERATOR),
)
def post_close(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    plan_id: Annotated[int, Path(ge=1)],
    body: PlanClose,
) -> Any:
    try:
        view, adoption = close_plan(
            session, plan_id, reason=body.reason, cfg=settings.scoring.config
        )
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    record_audit(
        session,
        principal.actor,
        "onboarding_plan.close",
        f"onboarding_plan:{plan_id}",
        {"reason": body.reason, "adoption": adoption},
    )
    session.commit()
    return {"plan": _plan(view, _today()), "adoption": adoption}
