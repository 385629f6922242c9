"""HubSpot's own rate limits: a rolling burst window, a daily budget, and the search limit.

crm-api.md B.8: non-search calls carry ``X-HubSpot-RateLimit-*`` headers and get a 429
``TEN_SECONDLY_ROLLING`` (burst) or ``DAILY`` body; search is limited separately per second with
no headers and a ``SECONDLY`` 429. Windows use a monotonic clock (real time passes even when the
sandbox clock is frozen); the daily budget resets at midnight UTC of the sandbox clock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """Outcome of one admission: ``policy`` is None when allowed; headers to add either way."""

    policy: str | None
    headers: dict[str, str]


def limit_body(policy: str) -> dict[str, Any]:
    """The documented 429 body of a policy (``TEN_SECONDLY_ROLLING``, ``DAILY``, ``SECONDLY``)."""
    message = {
        "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        "DAILY": "You have reached your daily limit.",
        "SECONDLY": "You have reached your secondly limit.",
    }[policy]
    return {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }


class RateLimiter:
    """Rolling-window admission control for one HubSpot account (thread-safe)."""

    def __init__(
        self,
        *,
        enabled: bool,
        burst_max: int,
        burst_window_ms: int,
        search_per_second: int,
        daily_limit: int,
        today: Callable[[], date],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.burst_max = burst_max
        self.burst_window_ms = burst_window_ms
        self.search_per_second = search_per_second
        self.daily_limit = daily_limit
        self._today = today
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._burst: deque[float] = deque()
        self._search: deque[float] = deque()
        self._day: date | None = None
        self._daily_used = 0

    def reset(self) -> None:
        """Forget every window and the daily count (control API)."""
        with self._lock:
            self._burst.clear()
            self._search.clear()
            self._daily_used = 0
            self._day = None

    def _roll_day(self) -> None:
        today = self._today()
        if self._day != today:
            self._day = today
            self._daily_used = 0

    def _headers(self) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self._daily_used)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.burst_window_ms),
            "X-HubSpot-RateLimit-Max": str(self.burst_max),
            "X-HubSpot-RateLimit-Remaining": str(max(0, self.burst_max - len(self._burst))),
        }

    def admit(self, *, search: bool) -> Verdict:
        """Count one request; say which policy refuses it, if any."""
        if not self.enabled:
            return Verdict(None, {})
        with self._lock:
            now = self._monotonic()
            self._roll_day()
            if search:
                horizon = now - 1.0
                while self._search and self._search[0] <= horizon:
                    self._search.popleft()
                if self._daily_used >= self.daily_limit:
                    return Verdict("DAILY", {})
                if len(self._search) >= self.search_per_second:
                    return Verdict("SECONDLY", {})
                self._search.append(now)
                self._daily_used += 1
                return Verdict(None, {})
            horizon = now - self.burst_window_ms / 1000.0
            while self._burst and self._burst[0] <= horizon:
                self._burst.popleft()
            if self._daily_used >= self.daily_limit:
                return Verdict("DAILY", self._headers())
            if len(self._burst) >= self.burst_max:
                return Verdict("TEN_SECONDLY_ROLLING", self._headers())
            self._burst.append(now)
            self._daily_used += 1
            return Verdict(None, self._headers())

    def current_headers(self) -> dict[str, str]:
        """Headers describing the budget now (for a 429 injected by the core)."""
        with self._lock:
            self._roll_day()
            return self._headers()
