"""API budgets read from the CRMs' limit headers, for throttling before the CRM refuses.

* Salesforce: ``Sforce-Limit-Info: api-usage=10018/100000`` on every REST response (used/max
  over a rolling 24 h; crm-api.md A§8).
* HubSpot: ``X-HubSpot-RateLimit-Daily`` / ``-Daily-Remaining`` and the burst window
  ``-Max`` / ``-Remaining`` / ``-Interval-Milliseconds`` (B§8; none on search responses).

The objects only record what the CRM said; deciding to slow down is the engine's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_SF_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def header_value(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup (dicts, HTTPHeaderDict, CaseInsensitiveDict)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return str(value)
    lname = name.lower()
    for key, val in headers.items():
        if key.lower() == lname:
            return str(val)
    return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class ApiBudget:
    """Used/max of the daily budget, and the burst window where the CRM reports one."""

    used: int | None = None
    max: int | None = None
    burst_remaining: int | None = None
    burst_max: int | None = None
    burst_interval_ms: int | None = None

    @property
    def remaining(self) -> int | None:
        if self.used is None or self.max is None:
            return None
        return max(0, self.max - self.used)

    @property
    def fraction_used(self) -> float | None:
        if self.used is None or not self.max:
            return None
        return self.used / self.max

    def update_salesforce(self, headers: Mapping[str, str] | None) -> None:
        """Read ``Sforce-Limit-Info`` (absent on some responses: keep the last value)."""
        info = header_value(headers, "Sforce-Limit-Info")
        if info:
            match = _SF_USAGE.search(info)
            if match:
                self.used, self.max = int(match.group(1)), int(match.group(2))

    def update_hubspot(self, headers: Mapping[str, str] | None) -> None:
        """Read HubSpot's ``X-HubSpot-RateLimit-*`` headers (absent on search: keep the last)."""
        daily = _int(header_value(headers, "X-HubSpot-RateLimit-Daily"))
        daily_remaining = _int(header_value(headers, "X-HubSpot-RateLimit-Daily-Remaining"))
        if daily is not None:
            self.max = daily
            if daily_remaining is not None:
                self.used = daily - daily_remaining
        burst_max = _int(header_value(headers, "X-HubSpot-RateLimit-Max"))
        if burst_max is not None:
            self.burst_max = burst_max
        burst_remaining = _int(header_value(headers, "X-HubSpot-RateLimit-Remaining"))
        if burst_remaining is not None:
            self.burst_remaining = burst_remaining
        interval = _int(header_value(headers, "X-HubSpot-RateLimit-Interval-Milliseconds"))
        if interval is not None:
            self.burst_interval_ms = interval


def read_daily_budget(client: object) -> ApiBudget:
    """Ask the CRM for its daily API budget (one call).

    Salesforce: ``GET .../limits/`` ``DailyApiRequests`` (Max, Remaining). HubSpot: the daily
    headers of one properties read (private apps get them; OAuth apps have no daily cap and
    none, so the budget stays unknown).
    """
    from app.crm.hubspot.client import HubSpotClient
    from app.crm.salesforce.client import SalesforceClient

    budget = ApiBudget()
    if isinstance(client, SalesforceClient):
        body = client._call("limits", lambda sf: sf.restful("limits/"), None)
        entry = body.get("DailyApiRequests") if isinstance(body, Mapping) else None
        if isinstance(entry, Mapping):
            maximum, remaining = _int(str(entry.get("Max"))), _int(str(entry.get("Remaining")))
            if maximum is not None and remaining is not None:
                budget.max, budget.used = maximum, maximum - remaining
        return budget
    if isinstance(client, HubSpotClient):
        from app.crm.hubspot.org import read_org

        read_org(client, ["companies"])
        return client.budget
    return budget
