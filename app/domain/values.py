"""Names and small arithmetic shared by the domain rules (pure: no I/O, no clock).

``lin`` and ``wmean`` are domain.md 4.3's own helpers; ``round_half_up`` is the rounding every
score uses (Python's ``round`` rounds 72.5 to 72, which would make a score depend on parity).
"""

from __future__ import annotations

import calendar
import dataclasses
import math
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, Literal, TypeVar

Tier = Literal["key", "high", "low", "tech"]
Band = Literal["green", "yellow", "red", "unknown"]
Trend = Literal["up", "flat", "down", "new"]
LoyaltyType = Literal["true", "false", "latent", "none", "unknown"]
RiskLevel = Literal["low", "medium", "high", "critical"]

TIERS: tuple[Tier, ...] = ("tech", "low", "high", "key")  # lowest first: index = rank
RISK_LEVELS: tuple[RiskLevel, ...] = ("low", "medium", "high", "critical")
BAND_RANK: dict[Band, int] = {"red": 0, "yellow": 1, "green": 2}  # unknown has no rank

_T = TypeVar("_T")


class _Factory:
    """The default of a field with a default factory (shown as ``dataclasses`` shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def quick_init(cls: type[_T]) -> type[_T]:
    """A frozen dataclass's ``__init__``, a third cheaper to call: put over
    ``@dataclass(frozen=True)`` on the values a recompute builds for every account.

    The ``__init__`` that ``dataclasses`` writes for a frozen class (Python 3.11) looks
    ``object.__setattr__`` up again for every field; a recompute builds some thirty such values
    per account, and those look-ups were a tenth of its compute. This one does the same
    assignments (same parameters, defaults, default factories and ``__post_init__``) with
    ``object.__setattr__`` looked up once. Everything else stays ``dataclasses``' own: the
    class is still frozen, compared, hashed and printed as before.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"quick_init goes over @dataclass(frozen=True), not on {cls.__name__}")
    namespace: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    args: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only:
            raise TypeError(f"quick_init: {cls.__name__}.{f.name} is not a plain field")
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_FACTORY")
            body.append(f"    if {f.name} is _FACTORY:\n        {f.name} = _factory_{f.name}()")
        else:
            args.append(f.name)
        body.append(f"    _set(self, {f.name!r}, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n" + ("\n".join(body) or "    pass")
    exec(source, namespace)  # as dataclasses itself writes __init__
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = {**cls.__init__.__annotations__}
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses a method assigned by name)
    return cls


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
