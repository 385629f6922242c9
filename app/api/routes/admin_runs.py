"""``GET /api/v1/sync/runs`` and ``GET /api/v1/sync/runs/{id}``: sync runs, for viewers.

Lists are newest first, filtered by ``crm``, ``object``, ``kind`` and ``status``, with a cursor
(``next_cursor`` back as ``cursor`` with the same filters). One run answers its live counts,
API calls, rate and ETA (from the expected total when the CRM gave one), parameters, cursors
and open errors (:mod:`app.db.run_views`). Triggering and cancelling runs is
``app/api/routes/runs_control.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from app.api.auth import needs
from app.api.deps import SessionDep
from app.api.paging import decode_cursor, encode_cursor, invalid
from app.core.access import Role
from app.core.runs import RunStatus, SyncKind
from app.db.models import SyncRun
from app.db.run_views import RunFilters, list_runs, run_detail, run_dict

router = APIRouter(prefix="/api/v1/sync/runs", tags=["runs"])

CRMS = ("salesforce", "hubspot", "cs")
KINDS = tuple(k.value for k in SyncKind)
STATUSES = tuple(s.value for s in RunStatus)


def check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> Any:
    """None when ``value`` is allowed (or absent), else the 422 naming ``name``."""
    if value is None or value in allowed:
        return None
    return invalid(name, f"unknown {name} {value!r}; expected one of {', '.join(allowed)}", value)


@router.get("", summary="Sync runs, newest first", **needs(Role.VIEWER))
def get_runs(
    session: SessionDep,
    crm: Annotated[str | None, Query(max_length=16, description=" | ".join(CRMS))] = None,
    object_name: Annotated[
        str | None, Query(alias="object", max_length=32, description="e.g. Account, companies")
    ] = None,
    kind: Annotated[str | None, Query(max_length=16, description=" | ".join(KINDS))] = None,
    status: Annotated[str | None, Query(max_length=16, description=" | ".join(STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    for name, value, allowed in (("crm", crm, CRMS), ("kind", kind, KINDS)):
        refused = check_choice(name, value, allowed)
        if refused is not None:
            return refused
    refused = check_choice("status", status, STATUSES)
    if refused is not None:
        return refused
    filters = RunFilters(crm=crm, object=object_name, kind=kind, status=status)
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor, filters.as_dict())
        except ValueError as exc:
            return invalid("cursor", str(exc), cursor)
    rows = list_runs(session, filters, before_id=before, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id, filters.as_dict()) if len(rows) > limit else None
    return {"items": [run_dict(r) for r in page], "next_cursor": next_cursor}


@router.get(
    "/{run_id}",
    summary="One run: live counts, API calls, rate, ETA, cursors, open errors",
    **needs(Role.VIEWER),
)
def get_run(run_id: Annotated[int, Path(ge=1)], session: SessionDep) -> dict[str, Any]:
    run = session.get(SyncRun, run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"sync run {run_id} not found")
    return run_detail(session, run)
