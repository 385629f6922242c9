"""Access to ``/api/v1``: an API key on every request, and the role each route declares.

How it is applied, so that no route can forget it: :func:`create_app` mounts every ``/api/v1``
router inside :func:`protected_router`, whose router-level dependency :func:`require_key`

1. takes the key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``;
2. checks it (:func:`app.db.api_keys.authenticate`): a stored key that is not revoked or expired,
   or ``CRMSYNC_ADMIN_BOOTSTRAP_KEY``; otherwise **401**;
3. checks the role the matched route declares with ``**needs(Role.X)`` (kept in the route's
   OpenAPI ``x-crmsync-role``, so the docs show it too); a route that declares none needs
   ``admin`` (fail closed); too low a role is **403**.

Both answers are JSON in the app's error shape, ``{"detail": "<what and the fix>", "reason":
"missing_key|unknown|revoked|expired|role"}`` (403 also gives ``role`` and ``required_role``);
401 carries ``WWW-Authenticate: Bearer``. Routes that need the caller (to write the audit log)
take ``principal: PrincipalDep``; FastAPI runs the check once per request either way.

Webhooks (``/webhooks/...``, signed by the CRM) and probes (``/healthz``, ``/readyz``,
``/metrics``) are not under ``/api/v1`` and need no key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.deps import SessionDep, SettingsDep
from app.core.access import Role, allows
from app.db.api_keys import Principal, Refusal, authenticate

ROLE_EXTRA = "x-crmsync-role"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key: `Authorization: Bearer crmsync_...` (`crmsync keys create`).",
)
_api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same API key in `X-API-Key` instead.",
)


class AccessError(Exception):
    """A request refused by :func:`require_key`: 401 (no valid key) or 403 (role too low)."""

    def __init__(self, status: int, reason: str, detail: str, **extra: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.extra = extra


def needs(role: Role) -> dict[str, Any]:
    """Route keyword arguments declaring the role a route needs:
    ``@router.get("/x", **needs(Role.VIEWER))``."""
    return {"openapi_extra": {ROLE_EXTRA: role.value}}


def route_role(request: Request) -> Role:
    """The role the matched route declares; ``admin`` when it declares none."""
    route = request.scope.get("route")
    extra = getattr(route, "openapi_extra", None) or {}
    declared = extra.get(ROLE_EXTRA)
    return Role(declared) if declared is not None else Role.ADMIN


def require_key(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller, once its key and its role are checked (else :class:`AccessError`)."""
    presented = bearer.credentials if bearer is not None else header
    if not presented:
        raise AccessError(
            401,
            "missing_key",
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>` "
            "(create one with `crmsync keys create`)",
        )
    bootstrap = settings.admin_bootstrap_key
    found = authenticate(
        session,
        presented,
        bootstrap_key=bootstrap.get_secret_value() if bootstrap is not None else None,
    )
    if isinstance(found, Refusal):
        raise AccessError(401, found.reason, found.message)
    need = route_role(request)
    if not allows(found.role, need):
        raise AccessError(
            403,
            "role",
            f"{request.method} {request.url.path} needs the {need.value} role; the key "
            f"{found.name!r} has {found.role.value}",
            role=found.role.value,
            required_role=need.value,
        )
    request.state.principal = found
    return found


PrincipalDep = Annotated[Principal, Depends(require_key)]

_ERROR_BODY = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "detail": {"type": "string"},
                    "reason": {"type": "string"},
                    "role": {"type": "string"},
                    "required_role": {"type": "string"},
                },
                "required": ["detail", "reason"],
            }
        }
    }
}


def protected_router() -> APIRouter:
    """The router every ``/api/v1`` router is included in: the key check on each route."""
    return APIRouter(
        dependencies=[Depends(require_key)],
        responses={
            401: {"description": "No API key, or an unknown, revoked or expired one"} | _ERROR_BODY,
            403: {"description": "The key's role is below the route's"} | _ERROR_BODY,
        },
    )


def install_access_errors(app: FastAPI) -> None:
    """Answer :class:`AccessError` as JSON (``detail``, ``reason``; 401 with the challenge)."""

    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AccessError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            status_code=exc.status,
            content={"detail": exc.detail, "reason": exc.reason, **exc.extra},
            headers=headers,
        )

    app.add_exception_handler(AccessError, handler)
