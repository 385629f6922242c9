"""HubSpot's OAuth token endpoint for apps (crm-api.md B.2.1), as an installed app uses it.

``POST /oauth/v3/token`` and the date-versioned ``POST /oauth/2026-03/token`` (and the
deprecated ``/oauth/v1/token``, which clients still call until 16 February 2027) take a
form-encoded ``grant_type=refresh_token`` with ``client_id``, ``client_secret`` and
``refresh_token`` in the body, and answer a new access token that lives
``SandboxConfig.hs_token_lifetime_s`` (HubSpot: 1,800 s) on the sandbox clock, with the same
refresh token. Refusals are HubSpot's 400 ``{"status","message"}`` bodies: ``BAD_REFRESH_TOKEN``
(the documented one), ``BAD_CLIENT_ID``, ``BAD_CLIENT_SECRET`` and ``BAD_GRANT_TYPE`` (no public
sample of those three bodies: their wording is ours). The authorization-code step of an install
is not served: the sandbox's app is installed already and its refresh token is printed.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from crmsync_sandbox.context import SandboxContext

JSON_TYPE = "application/json;charset=utf-8"
TOKEN_PATHS = ("/oauth/v3/token", "/oauth/2026-03/token", "/oauth/v1/token")
SCOPES = ["oauth", "crm.objects.companies.read", "crm.objects.deals.read", "crm.schemas.read"]


def _refusal(status: str, message: str) -> Response:
    return JSONResponse(
        {"status": status, "message": message}, status_code=400, media_type=JSON_TYPE
    )


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def oauth_routes(ctx: SandboxContext) -> list[BaseRoute]:
    """The token endpoints of the sandbox's HubSpot app."""

    async def token(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        # v1 also took the values as query parameters; v3 moved them into the body.
        if request.url.path.startswith("/oauth/v1/"):
            form = {**dict(request.query_params), **form}
        cfg = ctx.config
        if form.get("grant_type") != "refresh_token":
            return _refusal(
                "BAD_GRANT_TYPE", "grant_type must be refresh_token (the app is installed)"
            )
        if not _same(form.get("client_id"), cfg.hs_client_id):
            return _refusal("BAD_CLIENT_ID", "missing or unknown client id")
        if not _same(form.get("client_secret"), cfg.hs_client_secret):
            return _refusal("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if not _same(form.get("refresh_token"), cfg.hs_refresh_token):
            return _refusal("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        lifetime = cfg.hs_token_lifetime_s
        return JSONResponse(
            {
                "token_type": "bearer",
                "refresh_token": cfg.hs_refresh_token,
                "hub_id": cfg.hs_portal_id,
                "scopes": SCOPES,
                "access_token": ctx.tokens.issue("hubspot", lifetime=timedelta(seconds=lifetime)),
                "expires_in": lifetime,
            },
            media_type=JSON_TYPE,
        )

    return [Route(path, token, methods=["POST"], name="hs_oauth_token") for path in TOKEN_PATHS]
