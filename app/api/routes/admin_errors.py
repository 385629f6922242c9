"""Per-record sync errors: list them with their payload (viewer), retry and resolve (operator).

* ``GET /api/v1/sync/errors?crm&object&category&retriable&resolved&direction``: newest first,
  cursor-paginated, each with the failed record's payload.
* ``GET /api/v1/sync/errors/{id}``: one error.
* ``POST /api/v1/sync/errors/{id}/retry``: re-read that record from the CRM and sync it
  (:mod:`app.wiring.error_retry`); 200 with the outcome (``resolved``, ``gone``,
  ``failed_again``, ``skipped``) and the error as it is now; 409 ``busy`` (a pass is running on
  the object) or ``not_retriable``; 502 ``crm_failed``.
* ``POST /api/v1/sync/errors/retry`` ``{crm?, object?, category?, limit?}``: the same for every
  open retriable pull error matching (oldest first, at most ``limit``), one pass per object.
* ``POST /api/v1/sync/errors/{id}/resolve`` ``{comment}``: resolved by hand.

Every retry and resolve is in the audit log with the key's name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.auth import PrincipalDep, needs
from app.api.deps import SessionDep, SettingsDep
from app.api.paging import decode_cursor, encode_cursor, invalid
from app.core.access import Role
from app.db.error_views import (
    AlreadyResolved,
    ErrorFilters,
    ErrorNotFound,
    error_dict,
    get_error,
    list_errors,
    resolve_error,
)
from app.errors import ErrorCategory
from app.wiring.error_retry import retriable_error_ids, retry_errors

router = APIRouter(prefix="/api/v1/sync/errors", tags=["errors"])

CRMS = ("salesforce", "hubspot", "cs")
DIRECTIONS = ("pull", "push")
#: Upstream categories plus the engine's own (a record the CS database refused, a bad field).
CATEGORIES = (
    *(c.value for c in ErrorCategory),
    "database",
    "invalid_field",
    "missing_field",
)
RETRY_STATUS = {"busy": 409, "not_retriable": 409, "crm_failed": 502}


class RetryFilter(BaseModel):
    """Which open retriable pull errors to retry (all when empty)."""

    model_config = ConfigDict(extra="forbid")

    crm: Annotated[str, StringConstraints(max_length=16)] | None = None
    object: Annotated[str, StringConstraints(max_length=32)] | None = None
    category: Annotated[str, StringConstraints(max_length=32)] | None = None
    limit: Annotated[int, Field(ge=1, le=5000)] = 500


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def _choice(name: str, value: str | None, allowed: tuple[str, ...], where: str) -> Any:
    if value is None or value in allowed:
        return None
    message = f"unknown {name} {value!r}; expected one of {', '.join(allowed)}"
    return invalid(name, message, value, where=where)


@router.get("", summary="Sync errors with their payload, newest first", **needs(Role.VIEWER))
def get_errors(
    session: SessionDep,
    crm: Annotated[str | None, Query(max_length=16, description=" | ".join(CRMS))] = None,
    object_name: Annotated[str | None, Query(alias="object", max_length=32)] = None,
    category: Annotated[
        str | None, Query(max_length=32, description=" | ".join(CATEGORIES))
    ] = None,
    retriable: Annotated[bool | None, Query()] = None,
    resolved: Annotated[bool | None, Query(description="false: open errors only")] = None,
    direction: Annotated[str | None, Query(max_length=8, description="pull | push")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    for name, value, allowed in (
        ("crm", crm, CRMS),
        ("category", category, CATEGORIES),
        ("direction", direction, DIRECTIONS),
    ):
        refused = _choice(name, value, allowed, "query")
        if refused is not None:
            return refused
    filters = ErrorFilters(
        crm=crm,
        object=object_name,
        category=category,
        retriable=retriable,
        resolved=resolved,
        direction=direction,
    )
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor, filters.as_dict())
        except ValueError as exc:
            return invalid("cursor", str(exc), cursor)
    rows = list_errors(session, filters, before_id=before, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id, filters.as_dict()) if len(rows) > limit else None
    return {"items": [error_dict(r) for r in page], "next_cursor": next_cursor}


@router.post("/retry", summary="Retry every open retriable error matching", **needs(Role.OPERATOR))
def post_retry_all(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    body: RetryFilter | None = None,
) -> Any:
    wanted = body or RetryFilter()
    for name, value, allowed in (
        ("crm", wanted.crm, CRMS),
        ("category", wanted.category, CATEGORIES),
    ):
        refused = _choice(name, value, allowed, "body")
        if refused is not None:
            return refused
    filters = ErrorFilters(crm=wanted.crm, object=wanted.object, category=wanted.category)
    ids = retriable_error_ids(session, filters, wanted.limit)
    session.close()
    report = retry_errors(
        settings,
        request.app.state.session_factory,
        ids,
        actor=principal.actor,
        action="sync_error.retry_all",
        target="sync_errors",
        audit_detail={"filters": wanted.model_dump()},
    )
    return report.as_dict()


def _error_or_404(session: SessionDep, error_id: int) -> Any:
    try:
        return get_error(session, error_id)
    except ErrorNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


@router.get("/{error_id}", summary="One sync error with its payload", **needs(Role.VIEWER))
def get_one(error_id: Annotated[int, Path(ge=1)], session: SessionDep) -> dict[str, Any]:
    return error_dict(_error_or_404(session, error_id))


@router.post(
    "/{error_id}/retry",
    summary="Re-read the record from the CRM and sync it",
    **needs(Role.OPERATOR),
)
def post_retry(
    error_id: Annotated[int, Path(ge=1)],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Any:
    _error_or_404(session, error_id)
    session.close()
    factory = request.app.state.session_factory
    report = retry_errors(settings, factory, [error_id], actor=principal.actor)
    (outcome,) = report.outcomes
    with factory() as fresh:
        row = error_dict(get_error(fresh, error_id))
    body = {**outcome.as_dict(), "error": row}
    status = RETRY_STATUS.get(outcome.outcome)
    if status is None:
        return body
    return JSONResponse(
        status_code=status,
        content={"detail": outcome.message, "reason": outcome.outcome, **body},
    )


@router.post(
    "/{error_id}/resolve",
    summary="Resolve an error by hand, with a comment",
    **needs(Role.OPERATOR),
)
def post_resolve(
    error_id: Annotated[int, Path(ge=1)],
    body: ResolveIn,
    session: SessionDep,
    principal: PrincipalDep,
) -> Any:
    _error_or_404(session, error_id)
    try:
        row = resolve_error(session, error_id, actor=principal.actor, comment=body.comment)
    except AlreadyResolved as exc:
        return JSONResponse(status_code=409, content={"detail": str(exc), "reason": "resolved"})
    return error_dict(row)
