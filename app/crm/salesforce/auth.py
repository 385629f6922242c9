"""Salesforce access tokens: the OAuth grants orgs use, posted to ``/services/oauth2/token``.

simple-salesforce does the data calls in direct mode (``session_id`` + ``instance_url``), but
its own logins cannot serve crmsync: none of them sends the refresh-token grant, and each builds
the token URL as ``https://{domain}.salesforce.com`` (crm-api.md A.1.1), which no emulator and
no non-``salesforce.com`` login host can answer. So this module makes the one token request
itself, with the JWT assertion built exactly as simple-salesforce builds it (PyJWT, RS256,
``iss``/``sub``/``aud``/``exp`` 3 minutes ahead), and hands the token and the answer's
``instance_url`` (the org's My Domain, never the login host) to the library.

A refusal (400 ``{"error","error_description"}``) is raised as simple-salesforce's own
:class:`SalesforceAuthenticationFailed`, so the adapter's one classification table turns it
into an ``auth`` error (exit 2) and a dead login host into a transient one (exit 1). Tokens are
held only in :class:`SalesforceToken`, whose ``repr`` hides them; nothing here logs them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.util import exception_handler

from app.auth_modes import SalesforceAuth, jwt_audience
from app.errors import ConfigError
from app.logging import get_logger
from app.settings import Settings

CRM = "salesforce"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME = timedelta(minutes=3)  # Salesforce refuses an ``exp`` further ahead

# The settings a refusal of each flow points at (the error message names them).
CREDENTIAL_SETTINGS: dict[SalesforceAuth, str] = {
    "jwt": "CRMSYNC_SALESFORCE_CLIENT_ID/CRMSYNC_SALESFORCE_USERNAME/"
    "CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE (JWT bearer: is the user pre-approved and the "
    "certificate uploaded to the app?)",
    "refresh_token": "CRMSYNC_SALESFORCE_REFRESH_TOKEN (with CRMSYNC_SALESFORCE_CLIENT_ID/"
    "CRMSYNC_SALESFORCE_CLIENT_SECRET)",
    "client_credentials": "CRMSYNC_SALESFORCE_CLIENT_ID/CRMSYNC_SALESFORCE_CLIENT_SECRET",
    "session": "CRMSYNC_SALESFORCE_ACCESS_TOKEN",
}

log = get_logger(__name__)


@dataclass(frozen=True)
class SalesforceToken:
    """An access token and the instance it is for; the token never shows in ``repr``."""

    access_token: str = field(repr=False)
    instance_url: str


class TokenCache:
    """One Salesforce token shared by several clients of one process (the webhook worker's
    reads and its write-back pushes): fetched once, then reused until a call gets 401 with it
    (:meth:`reject`) or it is older than ``max_age_seconds`` (Salesforce's session timeout is
    not in the token answer; 30 minutes is under every setting an org can choose but 15).

    Without it every client (one per push) logs in again: a token request per write-back push.
    Thread-safe; a fetch happens under the lock, so concurrent clients wait for one token.
    """

    def __init__(
        self, max_age_seconds: float = 1800.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._token: SalesforceToken | None = None
        self._fetched_at = 0.0
        self.fetches = 0

    def get(self, fetch: Callable[[], SalesforceToken]) -> tuple[SalesforceToken, bool]:
        """The cached token, or a new one from ``fetch``; True when ``fetch`` was called."""
        with self._lock:
            fresh = self._clock() - self._fetched_at < self.max_age_seconds
            if self._token is not None and fresh:
                return self._token, False
            token = fetch()
            self._token = token
            self._fetched_at = self._clock()
            self.fetches += 1
            return token, True

    def reject(self, access_token: str) -> None:
        """A call got 401 with ``access_token``: forget it (unless a newer one replaced it)."""
        with self._lock:
            if self._token is not None and self._token.access_token == access_token:
                self._token = None


def build_assertion(
    *, client_id: str, username: str, audience: str, private_key: bytes, now: datetime
) -> str:
    """The signed JWT of the bearer flow (claims as simple-salesforce's ``SalesforceLogin``)."""
    claims = {
        "iss": client_id,
        "sub": username,
        "aud": audience,
        "exp": int((now + JWT_LIFETIME).timestamp()),
    }
    return jwt.encode(claims, private_key, algorithm="RS256")


def token_form(settings: Settings, mode: SalesforceAuth, now: datetime) -> dict[str, str]:
    """The form body of the token request for ``mode`` (reads the private key file)."""
    client_id = settings.salesforce_client_id or ""
    secret = settings.salesforce_client_secret
    if mode == "jwt":
        login_url = settings.salesforce_token_url_base or ""
        key_file = settings.salesforce_private_key_file
        assert key_file is not None  # settings refuse the jwt flow without it
        try:
            key = key_file.read_bytes()
            assertion = build_assertion(
                client_id=client_id,
                username=settings.salesforce_username or "",
                audience=jwt_audience(login_url),
                private_key=key,
                now=now,
            )
        except (OSError, ValueError, TypeError, jwt.PyJWTError) as exc:
            # Unreadable, not PEM, or not an RSA key: the file is wrong, not the CRM.
            raise ConfigError(
                f"CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE {key_file} cannot sign the JWT "
                f"({type(exc).__name__}); point it at the PEM private key (RSA) whose "
                "certificate is uploaded to the connected app",
                crm=CRM,
            ) from None
        return {"grant_type": JWT_GRANT, "assertion": assertion}
    if mode == "refresh_token":
        assert settings.salesforce_refresh_token is not None
        form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "refresh_token": settings.salesforce_refresh_token.get_secret_value(),
        }
        if secret is not None:
            form["client_secret"] = secret.get_secret_value()
        return form
    if mode == "client_credentials":
        assert secret is not None
        return {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret.get_secret_value(),
        }
    raise ConfigError(
        "CRMSYNC_SALESFORCE_AUTH=session cannot fetch a token: the session id in "
        "CRMSYNC_SALESFORCE_ACCESS_TOKEN is used as it is",
        crm=CRM,
    )


class TokenFetcher:
    """Fetches Salesforce access tokens for one flow over the adapter's session (one request)."""

    def __init__(
        self,
        settings: Settings,
        session: requests.Session,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        mode = settings.salesforce_auth_mode
        login_url = settings.salesforce_token_url_base
        if mode is None or mode == "session" or not login_url:
            raise ConfigError(f"no Salesforce token flow configured ({mode})", crm=CRM)
        self.mode: SalesforceAuth = mode
        self.login_url = login_url
        self._settings = settings
        self._session = session
        self._clock = clock
        self._timeout = settings.sync.request_timeout_seconds

    def fetch(self) -> SalesforceToken:
        """POST the grant; a refusal raises :class:`SalesforceAuthenticationFailed`."""
        form = token_form(self._settings, self.mode, self._clock())
        response = self._session.post(
            f"{self.login_url}/services/oauth2/token",
            data=form,
            headers={"Accept": "application/json"},
            timeout=self._timeout,
        )
        if response.status_code in (400, 401, 403):
            body = _json(response)
            raise SalesforceAuthenticationFailed(
                body.get("error", response.status_code), body.get("error_description", "")
            )
        if response.status_code >= 300:
            exception_handler(response, name="oauth2/token")
        body = _json(response)
        token = body.get("access_token")
        instance = str(body.get("instance_url") or "").rstrip("/")
        if not token or not instance.startswith("http"):
            raise SalesforceAuthenticationFailed(
                "invalid_response", "token answer without access_token or instance_url"
            )
        log.info("salesforce token issued", grant=self.mode, instance_url=instance)
        return SalesforceToken(access_token=str(token), instance_url=instance)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
