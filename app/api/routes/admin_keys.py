"""API keys over the API (admin role): list, create (the key is in the answer, once), revoke.

The same functions as ``crmsync keys`` (:mod:`app.db.api_keys`); each write is audited with the
calling key's name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.auth import PrincipalDep, needs
from app.api.deps import SessionDep
from app.api.paging import invalid
from app.core.access import Role
from app.db.api_keys import ApiKeyError, create_key, key_dict, list_keys, revoke_key
from app.db.audit import record_audit

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    role: Role
    expires_days: Annotated[int, Field(ge=1, le=3650)] | None = None


@router.get("", summary="API keys (never the keys themselves)", **needs(Role.ADMIN))
def get_keys(session: SessionDep) -> dict[str, Any]:
    return {"items": [key_dict(k) for k in list_keys(session)]}


@router.post(
    "",
    summary="Create an API key; the answer is the only time the key is shown",
    status_code=201,
    **needs(Role.ADMIN),
)
def post_key(body: KeyIn, session: SessionDep, principal: PrincipalDep) -> Any:
    try:
        row, key = create_key(
            session, name=body.name, role=body.role, expires_in_days=body.expires_days
        )
    except ApiKeyError as exc:
        return invalid("name", str(exc), body.name, where="body")
    record_audit(
        session,
        principal.actor,
        "api_key.create",
        f"api_key:{row.id}",
        {"name": row.name, "role": row.role, "expires_days": body.expires_days},
    )
    session.commit()
    return JSONResponse(status_code=201, content={**key_dict(row), "key": key})


@router.post("/{key_id}/revoke", summary="Revoke an API key", **needs(Role.ADMIN))
def post_revoke(
    key_id: Annotated[int, Path(ge=1)], session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    try:
        row = revoke_key(session, key_id)
    except ApiKeyError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    record_audit(
        session, principal.actor, "api_key.revoke", f"api_key:{row.id}", {"name": row.name}
    )
    session.commit()
    return key_dict(row)
