"""``crmsync crm check`` for HubSpot: read what the account offers (the I/O half).

One ``GET /crm/v3/properties/<object>`` per mapped object (crm-api.md B§7): the property names,
and ``modificationMetadata.readOnlyValue`` for what crmsync may write back. A 404 means the
object type does not exist; a 403 that the app lacks its scope (reported as missing, like a
404, since the fix is the app's scopes). The daily budget comes from the
``X-HubSpot-RateLimit-Daily*`` headers of those calls (B§8): private apps get them, OAuth apps
have no daily cap and none. HubSpot versions its API by path (CRM v3, associations v4) and has
no bulk export, so those checks have nothing to read. Must not import ``app.sync``/``app.db``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from app.crm.check import FieldFacts, OrgFacts
from app.crm.hubspot.client import HubSpotClient
from app.errors import ErrorCategory, UpstreamError

API_VERSION = "CRM v3, associations v4"


def _properties(client: HubSpotClient, object_name: str) -> dict[str, FieldFacts] | None:
    api = client._hs.crm.properties.core_api
    try:
        body = client._call(
            "properties",
            functools.partial(
                api.get_all,
                object_name,
                _request_timeout=client._timeout,
                _preload_content=False,
            ),
            object_name,
        )
    except UpstreamError as exc:
        if exc.category is ErrorCategory.NOT_FOUND or exc.status == 403:
            return None
        raise
    out: dict[str, FieldFacts] = {}
    for prop in body.get("results") or []:
        meta = prop.get("modificationMetadata")
        read_only = bool(meta.get("readOnlyValue")) if isinstance(meta, Mapping) else False
        name = str(prop["name"])
        out[name] = FieldFacts(name, not read_only and not prop.get("calculated"))
    return out


def read_org(client: HubSpotClient, object_names: Sequence[str]) -> OrgFacts:
    """What the account offers to this app, for :func:`app.crm.check.findings`."""
    objects = {name: _properties(client, name) for name in object_names}
    budget = client.budget
    return OrgFacts(
        crm="hubspot",
        api_version=API_VERSION,
        api_versions=None,
        daily_max=budget.max,
        daily_used=budget.used,
        bulk=None,
        objects=objects,
    )
