"""Onboarding: the plans by CSM with late tasks first, and "Mark done" on a task.

* ``GET /console/onboarding?status=active&csm=&cursor=``: ``GET /api/v1/onboarding?order=due``'s
  page (:func:`app.api.routes.onboarding.list_onboarding`: same filters, same keyset cursor).
  The API orders the plans by their earliest open task's due date, so the plans with late tasks
  come first across all pages (the first page holds the most overdue ones), then the others by
  their next due date, plans with nothing open last. The page groups its plans by CSM (the
  groups with late tasks first), keeping the API's order within each group, and in each plan
  shows the late tasks, then the open ones by due date, then the rest.
* ``POST /console/onboarding/tasks/{id}/done`` (operator, CSRF): ``PATCH
  /api/v1/onboarding/tasks/{id}`` ``{"status": "done"}`` through the same route function, so it
  is validated, applied (exit criteria, adoption) and audited as the signed-in key exactly as
  the API does it; then back to the page it came from with a notice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from app.api.deps import SessionDep, SettingsDep
from app.api.routes.onboarding import TaskPatch, list_onboarding, patch_task
from app.console.auth import Operator, Viewer, safe_next
from app.console.web import Answer, build, call_api, render
from app.db.models import Csm

router = APIRouter(prefix="/console", include_in_schema=False)

#: Plans per page: each shows all its tasks (up to 22, domain.md 7.2).
PAGE_SIZE = 20
STATUSES = ("active", "completed", "closed")


def order_tasks(plan: dict[str, Any]) -> dict[str, Any]:
    """``plan`` with its tasks late first, then open by due date, then done / skipped."""
    tasks = sorted(
        plan["tasks"],
        key=lambda t: (not t["late"], t["status"] != "open", t["due_on"], t["id"]),
    )
    return {**plan, "tasks": tasks}


def group_by_csm(plans: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Plans grouped by their CSM's e-mail (no CSM last), each group in the API's order (late
    first: ``order=due``); groups with late tasks before the others, then by name."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for plan in plans:
        groups[plan.get("csm_email") or ""].append(order_tasks(plan))
    out = list(groups.items())
    out.sort(key=lambda g: (not any(p["progress"]["late_tasks"] for p in g[1]), g[0] == "", g[0]))
    return [(csm or "no CSM", ps) for csm, ps in out]


@router.get("/onboarding", response_class=HTMLResponse)
def onboarding_page(
    request: Request, user: Viewer, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    params = request.query_params
    status = [s for s in params.getlist("status") if s] if "status" in params else ["active"]
    csm = (params.get("csm") or "").strip() or None
    answer = call_api(
        list_onboarding,
        session=session,
        settings=settings,
        status=status or None,
        csm=csm,
        overdue=None,
        limit=PAGE_SIZE,
        cursor=params.get("cursor") or None,
        order="due",
    )
    csms = [
        (int(i), f"{n} ({e})")
        for i, n, e in session.execute(select(Csm.id, Csm.name, Csm.email).order_by(Csm.name))
    ]
    return render(
        request,
        "onboarding/list.html",
        {
            "page": answer.body if answer.ok else None,
            "groups": group_by_csm(answer.body["items"]) if answer.ok else [],
            "errors": answer.errors or ({} if answer.ok else {"form": answer.message}),
            "status": status,
            "statuses": STATUSES,
            "csm": csm or "",
            "csms": csms,
        },
        user=user,
        nav="onboarding",
        status_code=200 if answer.ok else answer.status,
    )


@router.post("/onboarding/tasks/{task_id}/done")
def mark_done(
    request: Request,
    user: Operator,
    session: SessionDep,
    settings: SettingsDep,
    task_id: Annotated[int, Path(ge=1)],
    next_url: Annotated[str | None, Form(alias="next")] = None,
    note: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    body = build(TaskPatch, {"status": "done", "note": (note or "").strip() or None})
    answer = (
        body
        if isinstance(body, Answer)
        else call_api(
            patch_task,
            session=session,
            settings=settings,
            principal=user.principal,
            task_id=task_id,
            body=body,
        )
    )
    if answer.ok:
        task = answer.body["task"]
        message = f"Task done: {task['title']}"
        if answer.body.get("adoption"):
            message += "; onboarding complete, the account entered adoption"
        key = "notice"
    else:
        key, message = "error", f"Task {task_id} not marked done: {answer.message}"
    return RedirectResponse(back_to(next_url, key, message), status_code=303)


def back_to(next_url: str | None, key: str, message: str) -> str:
    """The page the form was on (a console path only), its old notice replaced by this one."""
    parts = urlsplit(safe_next(next_url) if next_url else "/console/onboarding")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("notice", "error")]
    return f"{parts.path}?{urlencode([*query, (key, message)])}"
