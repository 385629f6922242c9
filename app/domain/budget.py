"""The API budget guard's arithmetic (no I/O): how much of its daily share crmsync has left,
whether a run may start, when spent budget frees again, and what a backfill will cost.

The CRM's daily API limit is shared by every integration of the org; when it runs out, all of
them stop. crmsync takes ``share`` of it (``CRMSYNC_<CRM>__BUDGET_SHARE``) and counts its own
calls over a rolling 24 hours. Table-tested in tests/unit/test_domain_budget.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class BudgetState:
    """One CRM's budget now. ``limit`` None: no daily limit known (nothing to guard)."""

    crm: str
    limit: int | None
    share: float
    used: int  # crmsync's own calls in the last 24 h
    org_used: int | None = None  # the whole org's, when the CRM last said
    limit_source: str | None = None  # "configured", "limits", "headers"

    @property
    def allowed(self) -> int | None:
        """crmsync's share of the daily limit, in calls."""
        return None if self.limit is None else math.floor(self.limit * self.share)

    @property
    def left(self) -> int | None:
        """Calls crmsync may still make: its share minus its use, and never more than the
        org as a whole has left."""
        if self.allowed is None or self.limit is None:
            return None
        left = max(0, self.allowed - self.used)
        if self.org_used is not None:
            left = min(left, max(0, self.limit - self.org_used))
        return left

    def can_spend(self, calls: int) -> bool:
        return self.left is None or calls <= self.left

    def as_dict(self) -> dict[str, object]:
        return {
            "crm": self.crm,
            "daily_limit": self.limit,
            "limit_source": self.limit_source,
            "share": self.share,
            "allowed": self.allowed,
            "used": self.used,
            "left": self.left,
            "org_used": self.org_used,
        }


def used_in_window(usage: Sequence[tuple[datetime, int]], now: datetime) -> int:
    """Calls made in the 24 h before ``now`` (each entry: when, how many)."""
    return sum(calls for at, calls in usage if at > now - WINDOW)


def frees_at(
    usage: Sequence[tuple[datetime, int]], allowed: int, need: int, now: datetime
) -> datetime | None:
    """The earliest time from ``now`` on when ``need`` calls fit in ``allowed`` again, as old
    calls leave the 24 h window; None if they never will (``need`` > ``allowed``)."""
    if need > allowed:
        return None
    live = sorted((at, calls) for at, calls in usage if at > now - WINDOW)
    used = sum(calls for _, calls in live)
    if used + need <= allowed:
        return now
    for at, calls in live:
        used -= calls
        if used + need <= allowed:
            return at + WINDOW
    return now  # pragma: no cover - the loop empties ``used``


def backfill_calls(
    crm: str, expected_rows: int, *, page_size: int, bulk_threshold: int | None = None
) -> int:
    """API calls a backfill of ``expected_rows`` records will make, plus the count call.

    Salesforce: REST pages of ``page_size``, or one Bulk 2.0 job above ``bulk_threshold`` (create,
    a few status polls, the result pages of 50,000-ish rows: counted as 5 + a page per 50,000).
    HubSpot: search pages of ``page_size`` (at most 200).
    """
    if expected_rows <= 0:
        return 1
    if crm == "salesforce" and bulk_threshold is not None and expected_rows > bulk_threshold:
        return 1 + 5 + math.ceil(expected_rows / 50_000)
    return 1 + math.ceil(expected_rows / max(1, page_size))
