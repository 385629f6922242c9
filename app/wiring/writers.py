"""Build the :class:`~app.crm.writes.CrmWriter` of a CRM from settings (the push's adapter).

The writers are the read clients plus writes (same session, token, retry policy and call
counter), tuned by ``CRMSYNC_PUSH__*`` (:class:`app.settings.PushSettings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.crm import usage
from app.crm.base import CrmName
from app.crm.writes import CrmWriter, WriteTuning
from app.errors import ConfigError
from app.settings import Settings

if TYPE_CHECKING:
    from app.crm.salesforce.auth import TokenCache


def write_tuning(settings: Settings) -> WriteTuning:
    """Chunk sizes and the Bulk threshold, as the preview and the writers use them."""
    return settings.push.tuning()


def build_writer(
    settings: Settings, crm: CrmName, *, token_cache: TokenCache | None = None
) -> CrmWriter:
    """A ready writer for ``crm``; raises :class:`ConfigError` for an unknown name. Writers
    serve push runs, which count their calls (:mod:`app.crm.usage`)."""
    if crm == "salesforce":
        from app.crm.salesforce.writer import SalesforceWriter

        return usage.for_runs(
            SalesforceWriter(settings, tuning=write_tuning(settings), token_cache=token_cache)
        )
    if crm == "hubspot":
        from app.crm.hubspot.writer import HubSpotWriter

        return usage.for_runs(HubSpotWriter(settings, tuning=write_tuning(settings)))
    raise ConfigError(f"unknown CRM {crm!r}; expected 'salesforce' or 'hubspot'", crm=str(crm))
