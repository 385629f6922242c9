"""Access tokens the emulators accept, and the 'expired session' fault.

Salesforce: the configured session id plus every token issued by the OAuth endpoint are valid;
``expire_all`` rejects all of them (401 ``INVALID_SESSION_ID``) until the client logs in again,
which issues a fresh one. HubSpot private-app tokens are static: ``expire_all`` rejects the
configured token until ``restore``. HubSpot OAuth access tokens are issued with a lifetime
(30 minutes) and stop being valid when the sandbox clock passes it, as HubSpot's do.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from crmsync_sandbox.context import CrmName, SandboxConfig

__all__ = ["Tokens"]


class Tokens:
    """Valid tokens per CRM; thread-safe."""

    def __init__(
        self, config: SandboxConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._expires: dict[str, datetime] = {}  # token -> when it stops being valid
        self._lock = threading.Lock()
        self._static: dict[str, str] = {
            "salesforce": config.sf_access_token,
            "hubspot": config.hs_access_token,
        }
        self._org = config.sf_organization_id[:15]
        self._valid: dict[str, set[str]] = {crm: {tok} for crm, tok in self._static.items()}
        self._issued: dict[str, int] = {"salesforce": 0, "hubspot": 0}

    def static(self, crm: CrmName) -> str:
        """The token configured at start (printed by the CLI, written to the info file)."""
        return self._static[crm]

    def issue(self, crm: CrmName, *, lifetime: timedelta | None = None) -> str:
        """A new valid token (the OAuth endpoints answer with one); with ``lifetime``, it
        expires that long after now on the sandbox clock (HubSpot OAuth: 30 minutes)."""
        if crm == "salesforce":
            token = f"{self._org}!{secrets.token_urlsafe(36)}"
        elif lifetime is not None:
            token = f"CN{secrets.token_urlsafe(96)}"  # OAuth tokens are opaque, up to 300 chars
        else:
            token = f"pat-na1-{secrets.token_hex(16)}"
        with self._lock:
            self._valid[crm].add(token)
            self._issued[crm] += 1
            if lifetime is not None:
                self._expires[token] = self._clock() + lifetime
        return token

    def is_valid(self, crm: CrmName, token: str | None) -> bool:
        """True when ``token`` (without the ``Bearer`` prefix) is accepted right now."""
        if not token:
            return False
        with self._lock:
            if token not in self._valid[crm]:
                return False
            expires = self._expires.get(token)
        return expires is None or self._clock() < expires

    def expire_all(self, crm: CrmName) -> None:
        """Reject every token issued so far, the static one included."""
        with self._lock:
            self._valid[crm].clear()

    def restore(self, crm: CrmName) -> None:
        """Accept the static token again (issued tokens stay expired)."""
        with self._lock:
            self._valid[crm].add(self._static[crm])

    def snapshot(self) -> dict[str, dict[str, object]]:
        with self._lock:
            return {
                crm: {
                    "static_valid": self._static[crm] in self._valid[crm],
                    "valid_count": len(self._valid[crm]),
                    "issued": self._issued[crm],
                }
                for crm in self._static
            }
