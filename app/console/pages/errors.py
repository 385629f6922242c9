"""Errors: filter by CRM, object, category, retriable (and open/resolved, direction); each row
opens its payload; retry one, retry all filtered, resolve with a comment.

All of it is ``/api/v1/sync/errors``'s route functions, called as the signed-in key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import SessionDep, SettingsDep
from app.api.routes.admin_errors import (
    CATEGORIES,
    CRMS,
    DIRECTIONS,
    ResolveIn,
    RetryFilter,
    get_errors,
    get_one,
    post_resolve,
    post_retry,
    post_retry_all,
)
from app.console.auth import ConsoleUser, Operator, Viewer
from app.console.forms import back, opt, opt_bool
from app.console.web import Answer, build, call_api, render

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE = 25


@router.get("/errors", response_class=HTMLResponse)
def errors_page(
    request: Request,
    user: Viewer,
    session: SessionDep,
    crm: str | None = None,
    object: str | None = None,
    category: str | None = None,
    retriable: str | None = None,
    resolved: str | None = "false",
    direction: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    filters = {
        "crm": opt(crm),
        "object": opt(object),
        "category": opt(category),
        "retriable": opt(retriable),
        "resolved": opt(resolved),
        "direction": opt(direction),
    }
    errors: dict[str, str] = {}
    flags: dict[str, bool | None] = {}
    for name in ("retriable", "resolved"):
        value = opt_bool(filters[name])
        if isinstance(value, str):
            errors[name] = f"expected true or false, not {value!r}"
            value = None
        flags[name] = value
    answer = call_api(
        get_errors,
        session=session,
        crm=filters["crm"],
        object_name=filters["object"],
        category=filters["category"],
        retriable=flags["retriable"],
        resolved=flags["resolved"],
        direction=filters["direction"],
        limit=PAGE,
        cursor=opt(cursor),
    )
    errors.update(answer.errors)
    return render(
        request,
        "errors/list.html",
        {
            "filters": filters,
            "page": answer.body if answer.ok else {"items": [], "next_cursor": None},
            "errors": errors,
            "choices": {"crm": CRMS, "category": CATEGORIES, "direction": DIRECTIONS},
            "here": str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        },
        user=user,
        nav="errors",
        status_code=200 if answer.ok and not errors else 422,
    )


def _error_page(
    request: Request,
    user: ConsoleUser,
    session: SessionDep,
    error_id: int,
    errors: dict[str, str] | None = None,
    comment: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    answer = call_api(get_one, error_id=error_id, session=session)
    if not answer.ok:
        return render(
            request, "not_found.html", {"message": answer.message}, user=user, status_code=404
        )
    return render(
        request,
        "errors/page.html",
        {"e": answer.body, "errors": errors or {}, "comment": comment},
        user=user,
        nav="errors",
        status_code=status_code,
    )


@router.get("/errors/{error_id}", response_class=HTMLResponse)
def error_page(
    request: Request, user: Viewer, session: SessionDep, error_id: Annotated[int, Path(ge=1)]
) -> HTMLResponse:
    return _error_page(request, user, session, error_id)


@router.post("/errors/retry")
def retry_all(
    request: Request,
    user: Operator,
    session: SessionDep,
    settings: SettingsDep,
    crm: Annotated[str, Form(max_length=16)] = "",
    object: Annotated[str, Form(max_length=32)] = "",
    category: Annotated[str, Form(max_length=32)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console/errors",
) -> RedirectResponse:
    """Retry every open retriable error matching the list's filters (``POST .../retry``)."""
    body = build(RetryFilter, {"crm": opt(crm), "object": opt(object), "category": opt(category)})
    if isinstance(body, Answer):
        return back(next, body, "")
    answer = call_api(
        post_retry_all,
        request=request,
        session=session,
        settings=settings,
        principal=user.principal,
        body=body,
    )
    done = ""
    if answer.ok:
        outcomes = answer.body.get("outcomes") or {}
        summary = ", ".join(f"{n} {k}" for k, n in outcomes.items()) or "nothing to retry"
        done = f"retried {answer.body.get('retried', 0)}: {summary}"
    return back(next, answer, done)


@router.post("/errors/{error_id}/retry")
def retry_one(
    request: Request,
    user: Operator,
    session: SessionDep,
    settings: SettingsDep,
    error_id: Annotated[int, Path(ge=1)],
    next: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    answer = call_api(
        post_retry,
        error_id=error_id,
        request=request,
        session=session,
        settings=settings,
        principal=user.principal,
    )
    body: dict[str, Any] = answer.body if isinstance(answer.body, dict) else {}
    done = f"error {error_id}: {body.get('outcome')}: {body.get('message')}"
    return back(next or f"/console/errors/{error_id}", answer, done)


@router.post("/errors/{error_id}/resolve", response_model=None)
def resolve(
    request: Request,
    user: Operator,
    session: SessionDep,
    error_id: Annotated[int, Path(ge=1)],
    comment: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    body = build(ResolveIn, {"comment": comment})
    if isinstance(body, Answer):
        return _error_page(request, user, session, error_id, body.errors, comment, status_code=422)
    answer = call_api(
        post_resolve, error_id=error_id, body=body, session=session, principal=user.principal
    )
    return back(f"/console/errors/{error_id}", answer, f"error {error_id} resolved")
