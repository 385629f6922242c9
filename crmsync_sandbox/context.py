"""Shared state of one running sandbox, and the contract between its core and the CRM emulators.

The core (server, clock, stats, faults, tokens, webhook outbox, seed) lives beside this module;
each CRM emulator lives in its own package (``crmsync_sandbox.salesforce``,
``crmsync_sandbox.hubspot``) and implements :class:`CrmEmulator`. Emulators receive a
:class:`SandboxContext` and use only what it offers; they never import each other.

The sandbox must not import crmsync's engine (``app.sync``, ``app.crm``, ``app.db``, ...): it is
reached only over HTTPS, through the real client libraries.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from crmsync_sandbox.clock import Clock
    from crmsync_sandbox.faults import Faults
    from crmsync_sandbox.seed import SeedPlan
    from crmsync_sandbox.stats import Stats
    from crmsync_sandbox.tokens import Tokens
    from crmsync_sandbox.webhooks import WebhookOutbox

CrmName = Literal["salesforce", "hubspot"]


@dataclass
class SandboxConfig:
    """Everything a sandbox is started with; the CLI flags map one to one onto these fields."""

    seed: int = 42
    accounts: int = 50
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port chosen at start
    state_dir: Path | None = None  # None = state in memory only

    sf_api_version: str = "59.0"
    sf_access_token: str = "00DSANDBOX000001!sandbox-session-token"
    sf_client_id: str = "sandbox-client-id"
    sf_client_secret: str = "sandbox-client-secret"
    sf_organization_id: str = "00D000000000001AAA"
    # OAuth (crm-api.md A.3.1): the integration user the JWT bearer flow logs in as, the refresh
    # token of a web-server install, and the certificate uploaded to the connected app (PEM
    # certificate or public key; None = a key pair generated under the sandbox's own dir).
    sf_username: str = "integration@crmsync-sandbox.example"
    sf_refresh_token: str = "5Aep861sandbox.refresh.token.000001"
    sf_jwt_certificate: Path | None = None
    sf_daily_api_limit: int = 1_000_000
    sf_custom_fields: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # object -> {name: type}

    hs_access_token: str = "pat-na1-sandbox-token"
    hs_app_secret: str = "sandbox-app-secret"
    hs_portal_id: int = 62515
    # OAuth app (crm-api.md B.2.1): its credentials, the refresh token of its install, and the
    # lifetime of the access tokens it issues (HubSpot: 30 minutes).
    hs_client_id: str = "5f0c7a52-0000-4000-8000-sandboxclient"
    hs_client_secret: str = "9b2d1e44-0000-4000-8000-sandboxsecret"
    hs_refresh_token: str = "na1-5a1e-0000-4000-8000-sandboxrefresh"
    hs_token_lifetime_s: int = 1800
    hs_rate_limits: bool = True
    hs_burst_max: int = 190  # requests per rolling window
    hs_burst_window_ms: int = 10_000
    hs_search_per_second: int = 5
    hs_daily_limit: int = 1_000_000
    hs_search_index_lag_ms: int = 0
    hs_custom_properties: dict[str, dict[str, str]] = field(default_factory=dict)

    webhook_url_hubspot: str | None = None
    webhook_url_salesforce: str | None = None
    emit_seed_webhooks: bool = False

    # Added by the core (defaults keep existing callers unchanged).
    hs_app_id: int = 3001  # appId in HubSpot webhook events
    faults: list[str] = field(default_factory=list)  # route faults, CLI syntax 'GLOB:k=v,...'
    fault_seed: int | None = None  # RNG seed of route faults; None = ``seed``
    webhook_backoff_base_s: float = 1.0  # first redelivery delay; doubles per attempt
    webhook_backoff_cap_s: float = 7200.0  # longest redelivery delay (Salesforce: 2 h)
    webhook_timeout_s: float = 5.0  # a slower receiver counts as failed (HubSpot: 5 s)
    # Field provisioning (``crmsync crm setup``; crmsync_sandbox/salesforce/tooling.py): start the
    # org / portal without crmsync's write-back fields and external ids, and whether the
    # Salesforce integration user may create custom fields ("Customize Application").
    without_writeback_fields: bool = False
    sf_customize_application: bool = True


class CrmEmulator(Protocol):
    """What the core needs from each CRM emulator package."""

    name: CrmName

    def routes(self) -> list[BaseRoute]:
        """Starlette routes, mounted at the server root (paths start ``/services`` or ``/crm``)."""
        ...

    def load_seed(self, plan: SeedPlan) -> None:
        """Write the seed into this emulator's tables (streamed, executemany in chunks)."""
        ...

    def is_seeded(self) -> bool:
        """True when a persisted state dir already holds data (then the seed is not re-applied)."""
        ...

    def rate_limited_response(self) -> Response:
        """The CRM's own 'too many requests' answer (SF: 403 REQUEST_LIMIT_EXCEEDED; HS: 429)."""
        ...

    def unavailable_response(self) -> Response:
        """The CRM's own 503 answer."""
        ...

    def close_won(self, object_id: str) -> None:
        """Move a deal/opportunity to closed-won through the normal write path (emits webhooks)."""
        ...

    def touch(
        self, object_name: str, *, ids: Iterable[str] | None, count: int | None, at: datetime
    ) -> list[str]:
        """Set the modification stamp of chosen records (or the first ``count``) to ``at``.

        Used for 'many records share one timestamp' and 'late commit' scenarios; returns ids.
        """
        ...

    def declare_field(self, object_name: str, field_name: str, field_type: str) -> None:
        """Add a custom field (``Foo__c``) / property at run time."""
        ...

    def read_record(self, object_name: str, object_id: str) -> Mapping[str, Any] | None:
        """Current field values of one record (outbound messages read data at send time)."""
        ...


@dataclass
class SandboxContext:
    """The one object handed to every part of a running sandbox."""

    config: SandboxConfig
    db: sqlite3.Connection
    lock: threading.RLock
    clock: Clock
    stats: Stats
    faults: Faults
    tokens: Tokens
    outbox: WebhookOutbox
    emulators: dict[CrmName, CrmEmulator] = field(default_factory=dict)
    # Added by the core: the server's root URL, ``https://127.0.0.1:PORT`` (no trailing slash),
    # known once the socket is bound (Salesforce's OAuth answer needs it as ``instance_url``).
    base_url: str = ""
    # Called by ``POST /__sandbox/reset`` (after stats are cleared): emulators register their
    # rate-limit window resets here. An emulator method ``reset_rate_limits()`` is called too.
    reset_hooks: list[Callable[[], None]] = field(default_factory=list)
