"""The CSM roster (domain.md 8): ``GET/POST /api/v1/csms``, ``GET/PATCH /api/v1/csms/{id}``.

Reads show each CSM with their current load (8.2: units of the accounts they own and back up,
x 1.5 while onboarding), capacity and utilisation, computed on read. ``POST`` creates a CSM
(201), ``PATCH`` changes the fields given (a CSM is never deleted: set ``active`` false, so the
accounts they owned keep their history). E-mails are stored lower case and unique, like the
Salesforce user and HubSpot owner ids.

``PATCH`` with ``active: false`` on an active CSM reassigns their accounts in the same
transaction (domain.md 8.3 step 7, :func:`app.db.csm_store.reassign_csm_accounts`); after the
answer the new CSMs are pushed to the CRM (:func:`app.wiring.account_writeback.push_accounts`).
The answer lists the reassigned account ids in ``reassigned_account_ids``.

Bad input answers 422 naming the field (``{"detail": [{"loc": ["body", "email"], ...}]}``); a
unique value another CSM holds 409 in the same shape; an unknown CSM 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from app.api.auth import needs
from app.api.deps import SessionDep, SettingsDep
from app.api.paging import decode_cursor, encode_cursor
from app.api.routes.accounts import _invalid, _json
from app.core.access import Role
from app.db.csm_store import (
    CsmConflict,
    CsmFields,
    CsmPatch,
    create_csm,
    csm_candidates,
    csm_dict,
    reassign_csm_accounts,
    update_csm,
)
from app.db.models import Csm
from app.domain.csm_assignment import CsmCandidate
from app.domain.values import Tier

router = APIRouter(prefix="/api/v1/csms", tags=["csms"])


def _out(csm: Csm, load: CsmCandidate | None) -> Any:
    data = csm_dict(csm)
    units = load.load_units if load is not None else 0.0
    data["load_units"] = units
    data["utilisation"] = round(units / csm.capacity_units, 4) if csm.capacity_units else None
    return _json(data)


def _conflict(exc: CsmConflict) -> JSONResponse:
    return JSONResponse(
        status_code=409,
        content={"detail": [{"loc": ["body", exc.field], "msg": str(exc), "type": "conflict"}]},
    )


@router.get("", summary="CSMs with their load and utilisation", **needs(Role.VIEWER))
def list_csms(
    session: SessionDep,
    settings: SettingsDep,
    active: Annotated[bool | None, Query(description="Only active (or inactive) CSMs.")] = None,
    tier: Annotated[Tier | None, Query(description="Only CSMs serving this tier.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    filters = {"active": active, "tier": tier}
    after = 0
    if cursor:
        try:
            after = decode_cursor(cursor, filters)
        except ValueError as exc:
            return _invalid("cursor", str(exc), cursor)
    query = select(Csm).where(Csm.id > after).order_by(Csm.id)
    if active is not None:
        query = query.where(Csm.active.is_(active))
    rows = [c for c in session.scalars(query) if tier is None or tier in (c.tiers or [])]
    page = rows[:limit]
    loads = {
        c.id: c
        for c in csm_candidates(
            session, today=datetime.now(UTC).date(), cfg=settings.scoring.config
        )
    }
    return {
        "items": [_out(c, loads.get(c.id)) for c in page],
        "next_cursor": encode_cursor(page[-1].id, filters) if len(rows) > limit else None,
    }


def _get(session: Any, csm_id: int) -> Csm:
    csm = session.get(Csm, csm_id)
    if csm is None:
        raise HTTPException(status_code=404, detail=f"csm {csm_id} not found")
    assert isinstance(csm, Csm)
    return csm


def _load_of(session: Any, settings: Any, csm_id: int) -> CsmCandidate | None:
    today = datetime.now(UTC).date()
    candidates = csm_candidates(session, today=today, cfg=settings.scoring.config)
    return next((c for c in candidates if c.id == csm_id), None)


@router.get("/{csm_id}", summary="One CSM with their load", **needs(Role.VIEWER))
def get_csm(session: SessionDep, settings: SettingsDep, csm_id: Annotated[int, Path(ge=1)]) -> Any:
    csm = _get(session, csm_id)
    return _out(csm, _load_of(session, settings, csm_id))


@router.post("", status_code=201, summary="Create a CSM", **needs(Role.OPERATOR))
def post_csm(session: SessionDep, settings: SettingsDep, body: CsmFields) -> Any:
    try:
        csm = create_csm(session, body, settings.scoring.config)
    except CsmConflict as exc:
        session.rollback()
        return _conflict(exc)
    session.commit()
    return _out(csm, None)


@router.patch("/{csm_id}", summary="Change a CSM's fields", **needs(Role.OPERATOR))
def patch_csm(
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    background: BackgroundTasks,
    csm_id: Annotated[int, Path(ge=1)],
    body: CsmPatch,
) -> Any:
    csm = _get(session, csm_id)
    was_active = csm.active
    try:
        update_csm(session, csm, body)
    except CsmConflict as exc:
        session.rollback()
        return _conflict(exc)
    reassigned: list[int] = []
    if was_active and not csm.active:
        now = datetime.now(UTC)
        for r in reassign_csm_accounts(
            session, csm_id, today=now.date(), now=now, cfg=settings.scoring.config
        ):
            if r.csm_changed or r.backup_changed:
                reassigned.append(r.account_id)
    session.commit()
    if reassigned:
        from app.wiring.account_writeback import push_accounts

        background.add_task(push_accounts, settings, request.app.state.session_factory, reassigned)
    out = _out(csm, _load_of(session, settings, csm_id))
    out["reassigned_account_ids"] = reassigned
    return out
