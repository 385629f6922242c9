"""crmsync's CRM sandbox: Salesforce and HubSpot emulators over HTTPS on 127.0.0.1.

Start it with ``crmsync sandbox`` or, in tests, ``with Sandbox(SandboxConfig(...)) as sb``.
It is reached only through the real client libraries and never imports crmsync's engine.

The server (uvicorn, starlette, trustme) is imported on first use of :class:`Sandbox`, so that
``crmsync`` commands which never start a sandbox do not pay for it at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmsync_sandbox.context import SandboxConfig, SandboxContext
from crmsync_sandbox.info import HubSpotInfo, SalesforceInfo, SandboxInfo

if TYPE_CHECKING:
    from crmsync_sandbox.server import Sandbox

__all__ = [
    "HubSpotInfo",
    "SalesforceInfo",
    "Sandbox",
    "SandboxConfig",
    "SandboxContext",
    "SandboxInfo",
]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        from crmsync_sandbox.server import Sandbox

        return Sandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
