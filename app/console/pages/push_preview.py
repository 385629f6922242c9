"""Push preview: what ``crmsync push`` would write, and a button that starts it.

* ``GET /console/push?crm=salesforce[&object=Account][&page=N]``: ``GET /api/v1/push/preview``
  (:func:`app.api.routes.push.preview`, i.e. :func:`app.wiring.push.run_push` with ``dry_run``):
  per object the records with each field's old -> new value and why, and ``planned_calls``, the
  exact number of API calls the whole push will make without faults. No CRM call. The records
  are server-paginated (:data:`PAGE_SIZE` per object a page, the API's ``limit`` / ``offset``):
  the counts and the call count on every page are the whole push's, only the list is a page.
* ``POST /console/push`` (operator, CSRF) ``crm``, ``object``: ``POST /api/v1/sync/runs``
  ``{"kind": "push", ...}`` through the same route function (:func:`trigger_run`): queued runs
  that a worker picks up, audited as the signed-in key; then the run's page.

The preview is not a promise: the push plans again when it runs, so a change made in between is
written too (and its own call count is the run's ``planned_calls``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.api.deps import SessionDep, SettingsDep, app_jobs
from app.api.routes.push import preview
from app.api.routes.runs_control import RunRequest, trigger_run
from app.console.auth import Operator, Viewer
from app.console.web import Answer, build, call_api, render

router = APIRouter(prefix="/console", include_in_schema=False)

CRMS = ("salesforce", "hubspot")
#: Records listed per object on a page (the counts and the call count cover all of them).
PAGE_SIZE = 50


def page_number(raw: str | None) -> tuple[int, str | None]:
    """The ``page`` query parameter (1-based) and, when it is not a page number, the field
    error to show next to it (the first page is shown then)."""
    if raw is None or raw == "":
        return 1, None
    if raw.isdigit() and 1 <= int(raw) <= 200_000:
        return int(raw), None
    return 1, f"page is a whole number from 1, not {raw[:20]!r}"


def pages(body: dict[str, Any] | None) -> int:
    """How many pages the longest object's records fill (at least 1)."""
    longest = max((o["planned_records"] for o in (body or {}).get("objects", [])), default=0)
    return max(1, -(-longest // PAGE_SIZE))


def _preview(
    request: Request, settings: SettingsDep, crm: str | None, objects: list[str], page: int
) -> Answer | None:
    if crm is None:
        return None
    return call_api(
        preview,
        request=request,
        settings=settings,
        crm=crm,
        object_name=objects or None,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )


def _page(
    request: Request,
    user: Any,
    settings: SettingsDep,
    crm: str | None,
    objects: list[str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    page: int = 1,
) -> HTMLResponse:
    answer = _preview(request, settings, crm, objects, page)
    errors = dict(errors or {})
    if answer is not None and not answer.ok:
        errors.update(answer.errors or {"form": answer.message})
        status_code = max(status_code, answer.status)
    if crm is not None and crm not in CRMS:
        errors.setdefault("crm", f"unknown CRM {crm!r}: salesforce or hubspot")
    body = answer.body if answer is not None and answer.ok else None
    return render(
        request,
        "push_preview/page.html",
        {
            "crm": crm,
            "objects": objects,
            "crms": [c for c in CRMS if c in settings.enabled_crms] or list(CRMS),
            "preview": body,
            "errors": errors,
            "page": page,
            "pages": pages(body),
            "page_size": PAGE_SIZE,
        },
        user=user,
        nav="push",
        status_code=status_code,
    )


@router.get("/push", response_class=HTMLResponse)
def push_page(request: Request, user: Viewer, settings: SettingsDep) -> HTMLResponse:
    crm = request.query_params.get("crm") or None
    if crm is None and len(settings.enabled_crms) == 1:
        crm = next(iter(settings.enabled_crms))
    objects = [o for o in request.query_params.getlist("object") if o]
    page, problem = page_number(request.query_params.get("page"))
    errors = {"page": problem} if problem else None
    return _page(request, user, settings, crm, objects, errors, 422 if problem else 200, page=page)


@router.post("/push", response_class=HTMLResponse, response_model=None)
def confirm_push(
    request: Request,
    user: Operator,
    session: SessionDep,
    settings: SettingsDep,
    crm: Annotated[str, Form()] = "",
    object_name: Annotated[str, Form(alias="object")] = "",
) -> HTMLResponse | RedirectResponse:
    body = build(RunRequest, {"kind": "push", "crm": crm or None, "object": object_name or None})
    answer = (
        body
        if isinstance(body, Answer)
        else call_api(
            trigger_run,
            body=body,
            session=session,
            settings=settings,
            jobs=app_jobs(request.app),
            principal=user.principal,
        )
    )
    if not answer.ok:
        objects = [object_name] if object_name else []
        return _page(
            request,
            user,
            settings,
            crm or None,
            objects,
            errors=answer.errors or {"form": answer.message},
            status_code=answer.status,
        )
    ids = answer.body["run_ids"]
    message = f"Push queued as run{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
    if not answer.body.get("enqueued", True):
        message += " (the job queue is unreachable: the sweeper will start it)"
    # the first run's page (console-admin's runs page: live progress, cancel)
    return RedirectResponse(
        f"/console/runs/{ids[0]}?{urlencode({'notice': message})}", status_code=303
    )
