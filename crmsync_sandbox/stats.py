"""Call accounting: what the emulators were asked, so tests and benchmarks count calls, not guess.

The fault middleware records every emulated call (crm, route template, status); emulators record
rows written and rate-limit rejections they decide themselves. ``reset()`` clears everything.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

__all__ = ["Stats"]


class Stats:
    """Thread-safe counters, read as one consistent :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str, str]] = Counter()
        self._written: Counter[tuple[str, str]] = Counter()
        self._rate_limited: Counter[tuple[str, str]] = Counter()
        self._faults: Counter[tuple[str, str, str]] = Counter()

    def record_call(self, crm: str, route: str, status: int | str) -> None:
        """One answered request; ``route`` is ``"GET /services/data/{version}/query"``-shaped."""
        with self._lock:
            self._calls[(crm, route, str(status))] += 1

    def record_written(self, crm: str, object_name: str, n: int = 1) -> None:
        """``n`` records created, updated or deleted on ``object_name``."""
        with self._lock:
            self._written[(crm, object_name)] += n

    def record_rate_limited(self, crm: str, route: str) -> None:
        """A request refused by a rate limit (emulated or injected)."""
        with self._lock:
            self._rate_limited[(crm, route)] += 1

    def record_fault(self, crm: str, route: str, kind: str) -> None:
        """A fault the middleware injected (``unavailable``, ``reset``, ``slow``, ...)."""
        with self._lock:
            self._faults[(crm, route, kind)] += 1

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._written.clear()
            self._rate_limited.clear()
            self._faults.clear()

    def calls(self, crm: str | None = None, route: str | None = None) -> int:
        """Total calls, optionally for one CRM and/or one route label."""
        with self._lock:
            return sum(
                n
                for (c, r, _), n in self._calls.items()
                if (crm is None or c == crm) and (route is None or r == route)
            )

    def snapshot(self) -> dict[str, Any]:
        """``{"calls": {crm: {route: {status: n}}}, "calls_total": {crm: n}, "written": {crm:
        {object: n}}, "written_total": {crm: n}, "rate_limited": {crm: {route: n}},
        "rate_limited_total": {crm: n}, "faults": {crm: {route: {kind: n}}}}``."""
        with self._lock:
            calls: dict[str, dict[str, dict[str, int]]] = {}
            calls_total: Counter[str] = Counter()
            for (crm, route, status), n in sorted(self._calls.items()):
                calls.setdefault(crm, {}).setdefault(route, {})[status] = n
                calls_total[crm] += n
            written: dict[str, dict[str, int]] = {}
            written_total: Counter[str] = Counter()
            for (crm, obj), n in sorted(self._written.items()):
                written.setdefault(crm, {})[obj] = n
                written_total[crm] += n
            limited: dict[str, dict[str, int]] = {}
            limited_total: Counter[str] = Counter()
            for (crm, route), n in sorted(self._rate_limited.items()):
                limited.setdefault(crm, {})[route] = n
                limited_total[crm] += n
            faults: dict[str, dict[str, dict[str, int]]] = {}
            for (crm, route, kind), n in sorted(self._faults.items()):
                faults.setdefault(crm, {}).setdefault(route, {})[kind] = n
        return {
            "calls": calls,
            "calls_total": dict(calls_total),
            "written": written,
            "written_total": dict(written_total),
            "rate_limited": limited,
            "rate_limited_total": dict(limited_total),
            "faults": faults,
        }
