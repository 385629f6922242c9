"""Build the :class:`~app.crm.base.CrmClient` for a CRM name from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.crm.base import CrmClient, CrmName
from app.errors import ConfigError
from app.settings import Settings

if TYPE_CHECKING:
    from app.crm.salesforce.auth import TokenCache


def build_client(
    crm: CrmName, settings: Settings, *, token_cache: TokenCache | None = None
) -> CrmClient:
    """A ready client for ``crm``; raises :class:`ConfigError` for an unknown name.
    ``token_cache``: a Salesforce token shared with other clients (the webhook worker's)."""
    if crm == "salesforce":
        from app.crm.salesforce.client import SalesforceClient

        return SalesforceClient(settings, token_cache=token_cache)
    if crm == "hubspot":
        from app.crm.hubspot.client import HubSpotClient

        return HubSpotClient(settings)
    raise ConfigError(f"unknown CRM {crm!r}; expected 'salesforce' or 'hubspot'", crm=str(crm))
