"""Push preview: what ``crmsync push`` would write, and a button that starts it.

* ``GET /console/push?crm=salesforce[&object=Account]``: ``GET /api/v1/push/preview``
  (:func:`app.api.routes.push.preview`, i.e. :func:`app.wiring.push.run_push` with ``dry_run``):
  per object the records with each field's old -> new value and why, and ``planned_calls``, the
  exact number of API calls the push will make without faults. No CRM call.
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
#: Records listed per object (the counts and the call count cover all of them).
SHOWN = 100


def _preview(
    request: Request, settings: SettingsDep, crm: str | None, objects: list[str]
) -> Answer | None:
    if crm is None:
        return None
    return call_api(
        preview,
        request=request,
        settings=settings,
        crm=crm,
        object_name=objects or None,
        limit=SHOWN,
    )


def _page(
    request: Request,
    user: Any,
    settings: SettingsDep,
    crm: str | None,
    objects: list[str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    answer = _preview(request, settings, crm, objects)
    errors = dict(errors or {})
    if answer is not None and not answer.ok:
        errors.update(answer.errors or {"form": answer.message})
        status_code = max(status_code, answer.status)
    if crm is not None and crm not in CRMS:
        errors.setdefault("crm", f"unknown CRM {crm!r}: salesforce or hubspot")
    return render(
        request,
        "push_preview/page.html",
        {
            "crm": crm,
            "objects": objects,
            "crms": [c for c in CRMS if c in settings.enabled_crms] or list(CRMS),
            "preview": answer.body if answer is not None and answer.ok else None,
            "errors": errors,
            "shown": SHOWN,
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
    return _page(request, user, settings, crm, objects)


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
