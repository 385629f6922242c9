"""Runs: the list (filters, the API's cursor), a run's page (live counts, rate, ETA as a
progress bar while it runs; cancel), and "New backfill" (CRM, object, since), which shows the
API-call estimate and the budget check before it starts anything.

List, run, trigger and cancel are the ``/api/v1/sync/runs`` route functions; the estimate is
:func:`app.wiring.budget.estimate_backfill`, what the CLI and the job check against.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from app.api.deps import SessionDep, SettingsDep, app_jobs
from app.api.routes.admin_runs import CRMS, KINDS, STATUSES, get_run, get_runs
from app.api.routes.runs_control import RunRequest, cancel_run, plan_run, trigger_run
from app.console.auth import ConsoleUser, Operator, Viewer
from app.console.forms import back, opt, since_value
from app.console.web import Answer, build, call_api, read_response, render
from app.settings import Settings

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE = 25
ACTIVE = ("queued", "running", "cancelling")
#: A running run's panel reloads this often (seconds).
LIVE_SECONDS = 2


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    user: Viewer,
    session: SessionDep,
    crm: str | None = None,
    object: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    filters = {"crm": opt(crm), "object": opt(object), "kind": opt(kind), "status": opt(status)}
    answer = call_api(
        get_runs,
        session=session,
        crm=filters["crm"],
        object_name=filters["object"],
        kind=filters["kind"],
        status=filters["status"],
        limit=PAGE,
        cursor=opt(cursor),
    )
    return render(
        request,
        "runs/list.html",
        {
            "filters": filters,
            "page": answer.body if answer.ok else {"items": [], "next_cursor": None},
            "errors": answer.errors,
            "choices": {"crm": CRMS, "kind": KINDS, "status": STATUSES},
        },
        user=user,
        nav="runs",
        status_code=200 if answer.ok else answer.status,
    )


def _run_context(session: SessionDep, run_id: int) -> dict[str, Any] | Answer:
    answer = call_api(get_run, run_id=run_id, session=session)
    if not answer.ok:
        return answer
    return {"run": answer.body, "active": answer.body["status"] in ACTIVE, "live": LIVE_SECONDS}


@router.get("/runs/new", response_class=HTMLResponse)
def new_backfill(request: Request, user: Operator, settings: SettingsDep) -> HTMLResponse:
    return _backfill_form(request, user, settings, {}, {})


def _backfill_form(
    request: Request,
    user: ConsoleUser,
    settings: Settings,
    values: dict[str, Any],
    errors: dict[str, str],
    estimate: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "runs/new.html",
        {
            "values": values,
            "errors": errors,
            "crms": settings.enabled_crms,
            "estimate": estimate,
        },
        user=user,
        nav="runs",
        status_code=status_code,
    )


def _backfill_request(values: dict[str, Any], settings: Settings) -> RunRequest | Answer:
    """The API's request for this form, checked as ``POST /api/v1/sync/runs`` checks it."""
    body = build(
        RunRequest,
        {
            "kind": "backfill",
            "crm": opt(values.get("crm")),
            "object": opt(values.get("object")),
            "since": since_value(values.get("since")),
            "allow_over_budget": values.get("allow_over_budget") == "true",
        },
    )
    if isinstance(body, Answer):
        return body
    assert isinstance(body, RunRequest)
    planned = plan_run(body, settings)
    if isinstance(planned, JSONResponse):
        return read_response(planned)
    return body


@router.post("/runs/new/estimate", response_class=HTMLResponse)
def estimate(
    request: Request,
    user: Operator,
    settings: SettingsDep,
    crm: Annotated[str, Form(max_length=16)] = "",
    object: Annotated[str, Form(max_length=32)] = "",
    since: Annotated[str, Form(max_length=40)] = "",
) -> HTMLResponse:
    """Step 1: the API-call estimate and the budget check; nothing is started."""
    from app.wiring.budget import estimate_backfill

    values = {"crm": crm, "object": object, "since": since}
    body = _backfill_request(values, settings)
    if isinstance(body, Answer):
        return _backfill_form(request, user, settings, values, body.errors, status_code=422)
    assert body.crm is not None
    try:
        found = estimate_backfill(
            settings,
            request.app.state.session_factory,
            body.crm,
            [body.object] if body.object else None,
            body.since,
        )
    except Exception as exc:  # the CRM did not answer the count: say so next to the CRM
        errors = {"crm": f"could not estimate: {type(exc).__name__}: {exc}"}
        return _backfill_form(request, user, settings, values, errors, status_code=502)
    state = found.state
    result = {
        "calls": found.calls,
        "rows": found.rows,
        "over": found.over,
        "message": found.message() if found.over else None,
        "guarded": settings.budget_guarded(body.crm) and state.limit is not None,
        "allowed": state.allowed,
        "used": state.used,
        "left": state.left,
        "limit": state.limit,
        "share": state.share,
    }
    return _backfill_form(request, user, settings, values, {}, estimate=result)


@router.post("/runs/new", response_model=None)
def start_backfill(
    request: Request,
    user: Operator,
    session: SessionDep,
    settings: SettingsDep,
    crm: Annotated[str, Form(max_length=16)] = "",
    object: Annotated[str, Form(max_length=32)] = "",
    since: Annotated[str, Form(max_length=40)] = "",
    allow_over_budget: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Step 2: ``POST /api/v1/sync/runs`` as the signed-in key; then the run's page."""
    values = {"crm": crm, "object": object, "since": since, "allow_over_budget": allow_over_budget}
    body = _backfill_request(values, settings)
    if isinstance(body, Answer):
        return _backfill_form(request, user, settings, values, body.errors, status_code=422)
    answer = call_api(
        trigger_run,
        body=body,
        session=session,
        settings=settings,
        jobs=app_jobs(request.app),
        principal=user.principal,
    )
    if not answer.ok:
        return _backfill_form(
            request,
            user,
            settings,
            values,
            answer.errors or {"form": answer.message},
            status_code=answer.status,
        )
    ids = answer.body["run_ids"]
    if len(ids) == 1:
        return RedirectResponse(f"/console/runs/{ids[0]}?notice=backfill+queued", status_code=303)
    return RedirectResponse(
        f"/console/runs?crm={body.crm}&kind=backfill&notice={len(ids)}+backfills+queued",
        status_code=303,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request, user: Viewer, session: SessionDep, run_id: Annotated[int, Path(ge=1)]
) -> HTMLResponse:
    context = _run_context(session, run_id)
    if isinstance(context, Answer):
        return render(
            request, "not_found.html", {"message": context.message}, user=user, status_code=404
        )
    return render(request, "runs/page.html", context, user=user, nav="runs")


@router.get("/runs/{run_id}/panel", response_class=HTMLResponse)
def run_panel(
    request: Request, user: Viewer, session: SessionDep, run_id: Annotated[int, Path(ge=1)]
) -> HTMLResponse:
    """The live part of a run's page (htmx polls it while the run is active)."""
    context = _run_context(session, run_id)
    if isinstance(context, Answer):
        return render(request, "not_found.html", {"message": context.message}, status_code=404)
    return render(request, "runs/panel.html", context, user=user)


@router.post("/runs/{run_id}/cancel")
def cancel(
    user: Operator, session: SessionDep, run_id: Annotated[int, Path(ge=1)]
) -> RedirectResponse:
    answer = call_api(cancel_run, session=session, principal=user.principal, run_id=run_id)
    done = f"run {run_id}: {answer.body.get('status')}" if answer.ok else ""
    return back(f"/console/runs/{run_id}", answer, done)
