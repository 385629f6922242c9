"""Webhook inbox: events by status, an event's headers (credentials masked) and body, replay.

List and replay are ``/api/v1/webhooks/inbox``'s route functions, as the signed-in key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.api.deps import SessionDep
from app.api.routes.admin_inbox import get_inbox, post_replay
from app.console.auth import Operator, Viewer
from app.console.forms import back, opt
from app.console.web import call_api, render
from app.db.inbox_admin import STATUS_FILTERS, EventNotFound, event_dict, event_headers, get_event

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE = 25


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(
    request: Request,
    user: Viewer,
    session: SessionDep,
    status: str | None = None,
    source: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    filters = {"status": opt(status), "source": opt(source)}
    answer = call_api(
        get_inbox,
        session=session,
        status=filters["status"],
        source=filters["source"],
        limit=PAGE,
        cursor=opt(cursor),
    )
    return render(
        request,
        "inbox/list.html",
        {
            "filters": filters,
            "page": answer.body if answer.ok else {"items": [], "next_cursor": None},
            "errors": answer.errors,
            "statuses": STATUS_FILTERS,
            "here": str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        },
        user=user,
        nav="inbox",
        status_code=200 if answer.ok else answer.status,
    )


@router.get("/inbox/{event_id}", response_class=HTMLResponse)
def event_page(
    request: Request, user: Viewer, session: SessionDep, event_id: Annotated[int, Path(ge=1)]
) -> HTMLResponse:
    try:
        event = get_event(session, event_id)
    except EventNotFound as exc:
        return render(request, "not_found.html", {"message": str(exc)}, user=user, status_code=404)
    return render(
        request,
        "inbox/page.html",
        {"ev": event_dict(event), "headers": event_headers(event)},
        user=user,
        nav="inbox",
    )


@router.post("/inbox/{event_id}/replay")
def replay(
    request: Request,
    user: Operator,
    session: SessionDep,
    event_id: Annotated[int, Path(ge=1)],
    next: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    answer = call_api(
        post_replay, event_id=event_id, request=request, session=session, principal=user.principal
    )
    done = f"event {event_id} replayed"
    if answer.ok:
        done += f" ({answer.body.get('processing')})"
    return back(next or f"/console/inbox/{event_id}", answer, done)
