"""Keys (admin): list, create (the key is shown once, on the answer page), revoke.

``/api/v1/keys``'s route functions as the signed-in key: the same checks and audit entries.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.api.deps import SessionDep
from app.api.routes.admin_keys import KeyIn, get_keys, post_key, post_revoke
from app.console.auth import Admin, ConsoleUser
from app.console.forms import back, opt
from app.console.web import Answer, build, call_api, render
from app.core.access import Role

router = APIRouter(prefix="/console", include_in_schema=False)


def _keys_page(
    request: Request,
    user: ConsoleUser,
    session: SessionDep,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    listing = call_api(get_keys, session=session)
    return render(
        request,
        "keys/page.html",
        {
            "keys": listing.body["items"],
            "values": values or {"role": "viewer"},
            "errors": errors or {},
            "created": created,
            "roles": [r.value for r in Role],
        },
        user=user,
        nav="keys",
        status_code=status_code,
    )


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, user: Admin, session: SessionDep) -> HTMLResponse:
    return _keys_page(request, user, session)


@router.post("/keys", response_class=HTMLResponse)
def create(
    request: Request,
    user: Admin,
    session: SessionDep,
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    expires_days: Annotated[str, Form(max_length=8)] = "",
) -> HTMLResponse:
    values = {"name": name, "role": role, "expires_days": expires_days}
    body = build(KeyIn, {"name": name, "role": role, "expires_days": opt(expires_days)})
    if isinstance(body, Answer):
        return _keys_page(
            request, user, session, values=values, errors=body.errors, status_code=422
        )
    answer = call_api(post_key, body=body, session=session, principal=user.principal)
    if not answer.ok:
        return _keys_page(
            request, user, session, values=values, errors=answer.errors, status_code=answer.status
        )
    return _keys_page(request, user, session, created=answer.body, status_code=201)


@router.post("/keys/{key_id}/revoke")
def revoke(
    user: Admin, session: SessionDep, key_id: Annotated[int, Path(ge=1)]
) -> RedirectResponse:
    answer = call_api(post_revoke, key_id=key_id, session=session, principal=user.principal)
    name = answer.body.get("name") if answer.ok else ""
    return back("/console/keys", answer, f"key {key_id} ({name}) revoked")
