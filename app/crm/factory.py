"""Build the :class:`~app.crm.base.CrmClient` for a CRM name from settings."""

from __future__ import annotations

from app.crm.base import CrmClient, CrmName
from app.errors import ConfigError
from app.settings import Settings


def build_client(crm: CrmName, settings: Settings) -> CrmClient:
    """A ready client for ``crm``; raises :class:`ConfigError` for an unknown name."""
    if crm == "salesforce":
        from app.crm.salesforce.client import SalesforceClient

        return SalesforceClient(settings)
    if crm == "hubspot":
        from app.crm.hubspot.client import HubSpotClient

        return HubSpotClient(settings)
    raise ConfigError(f"unknown CRM {crm!r}; expected 'salesforce' or 'hubspot'", crm=str(crm))
