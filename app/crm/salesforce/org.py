"""``crmsync crm check`` for Salesforce: log in and read what the org offers (the I/O half).

Reads, through the adapter's retried and counted calls (so a token refresh works as in a pull):

* ``GET /services/data/``: the API versions the org serves (crm-api.md A§1);
* ``GET .../limits/``: ``DailyApiRequests`` (used/max over a rolling 24 h) and
  ``DailyBulkV2QueryJobs``, whose presence with a positive maximum says Bulk API 2.0 query jobs
  are allowed for this user (A§7, A§8);
* ``GET .../sobjects/<Object>/describe`` per mapped object: field names and ``updateable``
  (A§5). A 404 means the object does not exist or the user cannot see it.

That is ``2 + objects`` calls (plus a login with client credentials). The comparison with the
mappings is pure: :mod:`app.crm.check`. Must not import ``app.sync``/``app.db``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from simple_salesforce.api import Salesforce
from simple_salesforce.util import exception_handler

from app.crm.check import FieldFacts, OrgFacts
from app.crm.salesforce.client import SalesforceClient
from app.errors import ErrorCategory, UpstreamError


def _versions(client: SalesforceClient) -> tuple[str, ...]:
    def fetch(sf: Salesforce) -> Any:
        response = sf.session.get(
            f"https://{sf.sf_instance}/services/data/",
            headers={"Accept": "application/json"},
            timeout=client.settings.sync.request_timeout_seconds,
        )
        if response.status_code >= 300:
            exception_handler(response, name="services/data")
        return response.json()

    body = client._call("versions", fetch, None)
    return tuple(str(v["version"]) for v in body if isinstance(v, Mapping) and "version" in v)


def _describe(client: SalesforceClient, object_name: str) -> dict[str, FieldFacts] | None:
    try:
        body = client._call(
            "describe",
            lambda sf: sf.restful(f"sobjects/{object_name}/describe"),
            object_name,
        )
    except UpstreamError as exc:
        if exc.category is ErrorCategory.NOT_FOUND:
            return None
        raise
    fields = body.get("fields") if isinstance(body, Mapping) else None
    return {
        str(f["name"]): FieldFacts(str(f["name"]), bool(f.get("updateable"))) for f in fields or []
    }


def _pair(limits: Mapping[str, Any], name: str) -> tuple[int | None, int | None]:
    entry = limits.get(name)
    if not isinstance(entry, Mapping):
        return None, None
    try:
        return int(entry["Max"]), int(entry["Remaining"])
    except (KeyError, TypeError, ValueError):
        return None, None


def read_org(client: SalesforceClient, object_names: Sequence[str]) -> OrgFacts:
    """What the org offers to this user, for :func:`app.crm.check.findings`."""
    body = client._call("limits", lambda sf: sf.restful("limits/"), None)
    limits: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    versions = _versions(client)
    daily_max, daily_left = _pair(limits, "DailyApiRequests")
    bulk_max, bulk_left = _pair(limits, "DailyBulkV2QueryJobs")
    return OrgFacts(
        crm="salesforce",
        api_version=client.settings.salesforce_api_version,
        api_versions=versions,
        daily_max=daily_max,
        daily_used=daily_max - daily_left
        if daily_max is not None and daily_left is not None
        else None,
        bulk=bool(bulk_max) and bool(bulk_left),
        objects={name: _describe(client, name) for name in object_names},
    )
