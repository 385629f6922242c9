"""HubSpot OAuth app tokens: refreshed before they expire, and once more on a 401.

An OAuth app's access token lives 30 minutes (``expires_in: 1800``, crm-api.md B.2.1). The
adapter asks for a new one when less than :data:`REFRESH_MARGIN` is left (so a long page never
starts with a token about to die) and, should HubSpot still answer 401, once more before the
call is repeated. The request goes to ``POST {base_url}/oauth/v3/token`` with every value in the
form body: v1 (hubspot-api-client's ``oauth.tokens_api``) is deprecated from 16 February 2027
and put the secrets in the URL, where proxies log them.

It is sent with urllib3, as hubspot-api-client sends everything else, so connection and TLS
failures are the ones :func:`app.crm.hubspot.errors.classify_hubspot` already knows. A refusal
(400 ``BAD_REFRESH_TOKEN``, ``BAD_CLIENT_ID``, ...) is an ``auth`` error naming the settings,
never their values; the tokens live only in :class:`HubSpotToken`, whose ``repr`` hides them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import certifi
import urllib3

from app.errors import Classification, Endpoint, ErrorCategory, UpstreamError, upstream_error
from app.logging import get_logger
from app.settings import Settings

CRM = "hubspot"
TOKEN_PATH = "/oauth/v3/token"
REFRESH_MARGIN = timedelta(minutes=5)
OAUTH_SETTINGS = (
    "CRMSYNC_HUBSPOT_REFRESH_TOKEN (with CRMSYNC_HUBSPOT_CLIENT_ID/CRMSYNC_HUBSPOT_CLIENT_SECRET)"
)

log = get_logger(__name__)


@dataclass(frozen=True)
class HubSpotToken:
    """An access token and when it stops working; the token never shows in ``repr``."""

    access_token: str = field(repr=False)
    expires_at: datetime


def refresh_due(token: HubSpotToken | None, now: datetime, margin: timedelta) -> bool:
    """True when there is no token or less than ``margin`` of its life is left."""
    return token is None or now >= token.expires_at - margin


def classify_token_answer(status: int, body: Any) -> Classification:
    """A failed token request: refused (4xx: the credentials) or the server failing (5xx)."""
    payload = body if isinstance(body, dict) else {}
    code = payload.get("status") or payload.get("error") or payload.get("category")
    message = str(payload.get("message") or payload.get("error_description") or "")[:200]
    if 500 <= status <= 599:
        # HubSpot's side; the refresh is idempotent, so retry it like any other call.
        return Classification(ErrorCategory.TRANSIENT, True, None, None, status, message)
    # 400 BAD_REFRESH_TOKEN (revoked, app uninstalled), BAD_CLIENT_ID/SECRET: a human must fix
    # the settings. The status is left out so the message names the settings (errors.next_step).
    detail = f"OAuth token refresh refused ({message or 'no description'})"
    return Classification(
        ErrorCategory.AUTH, False, None, str(code) if code else None, None, detail
    )


class HubSpotTokenFetcher:
    """Refreshes the OAuth app's access token (one HTTP request per :meth:`fetch`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert settings.hubspot_client_id is not None
        assert settings.hubspot_client_secret is not None
        assert settings.hubspot_refresh_token is not None
        self._settings = settings
        self._clock = clock
        self._refresh_token = settings.hubspot_refresh_token.get_secret_value()
        timeout = settings.sync.request_timeout_seconds
        ca = str(settings.ca_bundle) if settings.ca_bundle is not None else certifi.where()
        self._pool = urllib3.PoolManager(
            ca_certs=ca,
            cert_reqs="CERT_REQUIRED",
            timeout=urllib3.Timeout(connect=min(10.0, timeout), read=timeout),
            retries=False,
        )
        self.url = f"{settings.hubspot_base_url}{TOKEN_PATH}"
        self.endpoint = Endpoint(
            url=settings.hubspot_base_url,
            url_setting="CRMSYNC_HUBSPOT_BASE_URL",
            credential_setting=OAUTH_SETTINGS,
            ca_bundle=str(settings.ca_bundle) if settings.ca_bundle is not None else None,
        )

    def fetch(self) -> HubSpotToken:
        """A new access token; raises :class:`UpstreamError` when HubSpot answers an error
        (urllib3 raises its own exceptions when there is no answer)."""
        settings = self._settings
        assert settings.hubspot_client_secret is not None
        started = self._clock()
        response = self._pool.request(
            "POST",
            self.url,
            fields={
                "grant_type": "refresh_token",
                "client_id": settings.hubspot_client_id or "",
                "client_secret": settings.hubspot_client_secret.get_secret_value(),
                "refresh_token": self._refresh_token,
            },
            encode_multipart=False,
            headers={"Accept": "application/json"},
        )
        try:
            body: Any = json.loads(response.data) if response.data else {}
        except ValueError:
            body = {}
        if response.status >= 300:
            raise self._error(classify_token_answer(response.status, body))
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise self._error(
                Classification(
                    ErrorCategory.FATAL, False, None, None, None, "token answer without a token"
                )
            )
        lifetime = float(body.get("expires_in") or 1800)
        # HubSpot answers the same refresh token; should it send another, use that one next.
        self._refresh_token = str(body.get("refresh_token") or self._refresh_token)
        expires_at = started + timedelta(seconds=lifetime)
        log.info("hubspot token refreshed", expires_in=int(lifetime))
        return HubSpotToken(access_token=str(token), expires_at=expires_at)

    def _error(self, classification: Classification) -> UpstreamError:
        return upstream_error(
            classification, crm=CRM, operation="token refresh", endpoint=self.endpoint
        )

    def close(self) -> None:
        self._pool.clear()
