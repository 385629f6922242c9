"""The webhook inbox for admins: ``GET /api/v1/webhooks/inbox?status=pending|done|dead|...``
(viewer) and ``POST /api/v1/webhooks/inbox/{id}/replay`` (operator).

Not to be confused with the receivers under ``/webhooks/...`` (no key; the CRM's signature):
these read and repair what they stored. A replay puts the event back to ``received`` (audited)
and hands it to the API's embedded webhook worker when it runs, else the inbox sweep picks it
up (:mod:`app.db.inbox_admin`, :mod:`app.wiring.inbox_replay`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from app.api.auth import PrincipalDep, needs
from app.api.deps import SessionDep
from app.api.paging import decode_cursor, encode_cursor, invalid
from app.core.access import Role
from app.db.inbox_admin import (
    STATUS_FILTERS,
    EventNotFound,
    NotReplayable,
    event_dict,
    get_event,
    list_inbox,
    replay_event,
)
from app.wiring.inbox_replay import hand_over

router = APIRouter(prefix="/api/v1/webhooks/inbox", tags=["webhook inbox"])


@router.get("", summary="Webhook events by status, newest first", **needs(Role.VIEWER))
def get_inbox(
    session: SessionDep,
    status: Annotated[
        str | None,
        Query(
            max_length=16,
            description="pending (received, processing, failed) | "
            + " | ".join(STATUS_FILTERS[1:]),
        ),
    ] = None,
    source: Annotated[str | None, Query(max_length=16, description="e.g. hubspot")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    if status is not None and status not in STATUS_FILTERS:
        message = f"unknown status {status!r}; expected one of {', '.join(STATUS_FILTERS)}"
        return invalid("status", message, status)
    filters = {"status": status, "source": source}
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor, filters)
        except ValueError as exc:
            return invalid("cursor", str(exc), cursor)
    rows = list_inbox(session, status=status, source=source, before_id=before, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id, filters) if len(rows) > limit else None
    return {"items": [event_dict(e) for e in page], "next_cursor": next_cursor}


@router.post(
    "/{event_id}/replay",
    summary="Put a dead (or done) event back in the queue for processing",
    **needs(Role.OPERATOR),
)
def post_replay(
    event_id: Annotated[int, Path(ge=1)],
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> Any:
    try:
        event = replay_event(session, event_id, actor=principal.actor)
    except EventNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except NotReplayable as exc:
        return JSONResponse(status_code=409, content={"detail": str(exc), "reason": "pending"})
    session.close()
    processing = hand_over(getattr(request.app.state, "webhook_runner", None), event.id)
    fresh = get_event(session, event_id)
    return {**event_dict(fresh), "processing": processing}
