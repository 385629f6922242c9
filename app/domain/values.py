"""Names and small arithmetic shared by the domain rules (pure: no I/O, no clock).

``lin`` and ``wmean`` are domain.md 4.3's own helpers; ``round_half_up`` is the rounding every
score uses (Python's ``round`` rounds 72.5 to 72, which would make a score depend on parity).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from datetime import date
from typing import Literal

Tier = Literal["key", "high", "low", "tech"]
Band = Literal["green", "yellow", "red", "unknown"]
Trend = Literal["up", "flat", "down", "new"]
LoyaltyType = Literal["true", "false", "latent", "none", "unknown"]
RiskLevel = Literal["low", "medium", "high", "critical"]

TIERS: tuple[Tier, ...] = ("tech", "low", "high", "key")  # lowest first: index = rank
RISK_LEVELS: tuple[RiskLevel, ...] = ("low", "medium", "high", "critical")
BAND_RANK: dict[Band, int] = {"red": 0, "yellow": 1, "green": 2}  # unknown has no rank


def tier_rank(tier: Tier) -> int:
    """0 for ``tech`` up to 3 for ``key``."""
    return TIERS.index(tier)


def lin(x: float, lo: float, hi: float) -> float:
    """domain.md 4.3: 0 if x <= lo, 100 if x >= hi, linear in between."""
    if x <= lo:
        return 0.0
    if x >= hi:
        return 100.0
    return 100.0 * (x - lo) / (hi - lo)


def wmean(parts: Iterable[tuple[float | None, float]]) -> float | None:
    """domain.md 4.3: the weighted mean over the parts that have data; ``None`` if none has.

    A part is ``(value, weight)``; a ``None`` value is missing and simply left out (never 0).
    """
    total = 0.0
    weight = 0.0
    for value, w in parts:
        if value is None or w <= 0:
            continue
        total += value * w
        weight += w
    if weight <= 0:
        return None
    return total / weight


def round_half_up(x: float) -> int:
    """72.5 -> 73 (Python's ``round`` gives 72)."""
    return math.floor(x + 0.5)


def clamp(x: float, lo: float = 0.0, hi: float = 100.0) -> float:
    return max(lo, min(hi, x))


def add_months(d: date, months: int) -> date:
    """``d`` plus whole months, the day clamped to the month's end (Jan 31 + 1 = Feb 28/29)."""
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    day = min(d.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)
