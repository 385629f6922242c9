"""HubSpot emulator package: ``build_emulator(ctx)`` returns the ``CrmEmulator`` for HubSpot.

Modules: ``schema`` (types, properties, value rules), ``store`` (SQLite tables ``hs_*``),
``search`` (search body -> SQL), ``ratelimit`` (HubSpot's own limits), ``emulator`` (write paths,
seed, the CrmEmulator surface), ``routes`` (HTTP). Imports nothing from the engine nor from
``crmsync_sandbox.salesforce``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crmsync_sandbox.hubspot.emulator import HubSpotEmulator

if TYPE_CHECKING:
    from crmsync_sandbox.context import SandboxContext

__all__ = ["HubSpotEmulator", "build_emulator"]


def build_emulator(ctx: SandboxContext) -> HubSpotEmulator:
    """The HubSpot emulator over ``ctx`` (creates its ``hs_*`` tables if missing)."""
    return HubSpotEmulator(ctx)
