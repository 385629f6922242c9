"""Salesforce's OAuth endpoints as orgs answer them (crm-api.md A.3, A.3.1).

``POST /services/oauth2/token`` (form-encoded) serves the grants integrations use:

* ``client_credentials`` (client id/secret as HTTP Basic or form fields) and ``password``;
* ``refresh_token`` (client id, the secret unless missing is allowed by the app, the token);
* ``urn:ietf:params:oauth:grant-type:jwt-bearer``: an RS256 assertion checked against the
  connected app's certificate (``SandboxConfig.sf_jwt_certificate``): ``iss`` = client id,
  ``sub`` = the integration user, ``aud`` = ``https://login.salesforce.com``,
  ``https://test.salesforce.com`` or the sandbox's login URL, ``exp`` not in the past (3 minutes
  of clock skew, on the sandbox clock).

Refusals are Salesforce's: HTTP 400 ``{"error","error_description"}`` (``invalid_grant``,
``invalid_client_id``, ``invalid_client``, ``unsupported_grant_type``). Every answer names the
org's instance URL, My Domain style (``https://localhost:PORT`` when logging in at
``https://127.0.0.1:PORT``), never the login host, so a client that keeps calling the login host
is caught. ``GET /services/oauth2/userinfo`` answers the user's identity, or 403
``Bad_OAuth_Token`` as Salesforce does for a dead token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import jwt
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from crmsync_sandbox.info import my_domain_url
from crmsync_sandbox.jwtkeys import load_public_key
from crmsync_sandbox.salesforce.http import json_response

if TYPE_CHECKING:
    from crmsync_sandbox.salesforce.emulator import SalesforceEmulator

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANTS = ("client_credentials", "password", "refresh_token", JWT_GRANT)
CLOCK_SKEW_S = 180  # Salesforce allows 3 minutes (Help remoteaccess_oauth_jwt_flow.htm)
GENERIC_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class OAuthRefusal(Exception):
    """A token request Salesforce refuses: HTTP 400 with its ``error`` and description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    def response(self) -> Response:
        return json_response({"error": self.error, "error_description": self.description}, 400)


class SalesforceOAuth:
    """The token and userinfo endpoints of the Salesforce emulator."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.em = emulator
        self.ctx = emulator.ctx

    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = []
        for path in ("/services/oauth2/token", "/services/oauth2/token/"):
            out.append(Route(path, self.token, methods=["POST"], name="sf_token"))
        for path in ("/services/oauth2/userinfo", "/services/oauth2/userinfo/"):
            out.append(Route(path, self.userinfo, methods=["GET", "POST"], name="sf_userinfo"))
        return out

    # ---- identity -------------------------------------------------------------------------

    def _login_url(self, request: Request) -> str:
        return self.ctx.base_url or f"{request.url.scheme}://{request.url.netloc}"

    def _identity_url(self, request: Request) -> str:
        org = self.ctx.config.sf_organization_id
        return f"{self._login_url(request)}/id/{org}/{self.em.api_user_id}"

    # ---- token ----------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        try:
            grant = self._check(request, form)
        except OAuthRefusal as refusal:
            return refusal.response()
        return json_response(self._answer(request, grant))

    def _check(self, request: Request, form: dict[str, str]) -> str:
        """The grant, once its credentials pass; raises :class:`OAuthRefusal` otherwise."""
        cfg = self.ctx.config
        grant = form.get("grant_type", "")
        if grant not in GRANTS:
            raise OAuthRefusal("unsupported_grant_type", "grant type not supported")
        if grant == JWT_GRANT:
            self._check_assertion(form.get("assertion", ""))
            return grant
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
            except ValueError:
                raise OAuthRefusal("invalid_client", "invalid client credentials") from None
            client_id, _, client_secret = decoded.partition(":")
        if client_id != cfg.sf_client_id:
            raise OAuthRefusal("invalid_client_id", "client identifier invalid")
        # The app's default "Require Secret for Refresh Token Flow": every grant needs it.
        if client_secret is None or not hmac.compare_digest(
            client_secret.encode(), cfg.sf_client_secret.encode()
        ):
            raise OAuthRefusal("invalid_client", "invalid client credentials")
        if grant == "password" and not (form.get("username") and form.get("password")):
            raise OAuthRefusal("invalid_grant", "authentication failure")
        if grant == "refresh_token" and not hmac.compare_digest(
            form.get("refresh_token", "").encode(), cfg.sf_refresh_token.encode()
        ):
            raise OAuthRefusal("invalid_grant", "expired access/refresh token")
        return grant

    def _check_assertion(self, assertion: str) -> None:
        cfg = self.ctx.config
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthRefusal("invalid_grant", "invalid assertion") from None
        if header.get("alg") != "RS256":
            raise OAuthRefusal("invalid_grant", "invalid assertion")
        if claims.get("iss") != cfg.sf_client_id:
            raise OAuthRefusal("invalid_client_id", "client identifier invalid")
        certificate = cfg.sf_jwt_certificate
        if certificate is None or not Path(certificate).is_file():
            raise OAuthRefusal("invalid_grant", "invalid assertion")
        audiences = [*GENERIC_AUDIENCES, self.ctx.base_url]
        try:
            verified = jwt.decode(
                assertion,
                load_public_key(Path(certificate)),  # type: ignore[arg-type]
                algorithms=["RS256"],
                audience=audiences,
                options={"verify_exp": False, "require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            raise OAuthRefusal("invalid_grant", "audience is invalid") from None
        except jwt.PyJWTError:
            raise OAuthRefusal("invalid_grant", "invalid assertion") from None
        try:
            expires = float(verified["exp"])
        except (TypeError, ValueError):
            raise OAuthRefusal("invalid_grant", "invalid assertion") from None
        if expires + CLOCK_SKEW_S < self.ctx.clock.now().timestamp():
            raise OAuthRefusal("invalid_grant", "expired authorization code")
        if verified.get("sub") != cfg.sf_username:
            raise OAuthRefusal("invalid_grant", "user hasn't approved this consumer")

    def _answer(self, request: Request, grant: str) -> dict[str, Any]:
        """Salesforce's 200 answer: no ``expires_in``, no new refresh token (A.3)."""
        cfg = self.ctx.config
        issued_at = str(int(self.ctx.clock.now().timestamp() * 1000))
        identity = self._identity_url(request)
        signature = base64.b64encode(
            hmac.new(
                cfg.sf_client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        answer: dict[str, Any] = {
            "access_token": self.ctx.tokens.issue("salesforce"),
            "scope": "api",
            "instance_url": my_domain_url(self._login_url(request)),
            "id": identity,
            "token_type": "Bearer",
        }
        if grant != JWT_GRANT:  # the bearer answer carries neither (A.3.1)
            answer["signature"] = signature
            answer["issued_at"] = issued_at
        if grant == "client_credentials":
            answer["token_format"] = "opaque"
        return answer

    # ---- userinfo -------------------------------------------------------------------------

    async def userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not self.ctx.tokens.is_valid(
            "salesforce", token.strip()
        ):
            return PlainTextResponse("Bad_OAuth_Token", status_code=403)
        cfg = self.ctx.config
        instance = my_domain_url(self._login_url(request))
        org, user = cfg.sf_organization_id, self.em.api_user_id
        return json_response(
            {
                "sub": self._identity_url(request),
                "user_id": user,
                "organization_id": org,
                "preferred_username": cfg.sf_username,
                "nickname": cfg.sf_username.split("@")[0],
                "name": "Integration User",
                "email": cfg.sf_username,
                "email_verified": True,
                "given_name": "Integration",
                "family_name": "User",
                "zoneinfo": "Etc/UTC",
                "active": True,
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
                "is_app_installed": True,
                "urls": {
                    "rest": f"{instance}/services/data/v{{version}}/",
                    "sobjects": f"{instance}/services/data/v{{version}}/sobjects/",
                    "query": f"{instance}/services/data/v{{version}}/query/",
                    "limits": f"{instance}/services/data/v{{version}}/limits/",
                    "profile": f"{instance}/{user}",
                    "custom_domain": instance,
                },
            }
        )
