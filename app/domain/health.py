"""The health score (domain.md 4): components, coverage, band, caps, trend, loyalty, reasons.

Pure: :func:`compute_health` takes one account's signals (``HealthInput``), the day it is
computed for (``as_of``, never the clock) and a :class:`~app.domain.config.ScoringConfig`, and
returns a frozen :class:`HealthResult` that carries every component's score with the numbers it
read, so the API can show why. Must not import the database, the CRM adapters or the web layer
(import-linter contract "Pure core has no I/O layers").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from app.domain.components import COMPONENTS, SCORERS, ComponentName, ComponentScore
from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.reasons import Reason, build_reasons, flag_rank, join_reasons
from app.domain.signals import HealthInput, SnapshotPoint
from app.domain.values import Band, LoyaltyType, Tier, Trend, quick_init, round_half_up

# Bump when a rule or a default changes what a score means: health_snapshots rows carry it, so
# a trend never compares scores of two different models without the admin knowing.
MODEL_VERSION = "2026.12-1"


@quick_init
@dataclass(frozen=True)
class HealthResult:
    """domain.md 4.9's output fields, plus the components and flags behind them."""

    score: int | None  # None only when no component has data (coverage 0)
    band: Band  # after caps
    uncapped_band: Band
    coverage: int  # 0..100: share of the enabled weight that had data
    components: tuple[ComponentScore, ...]
    flags: tuple[str, ...]
    caps: tuple[str, ...]  # the caps that lowered the band
    reasons: tuple[Reason, ...]
    reasons_text: str  # <= cfg.reasons.max_chars (255)
    trend: Trend
    trend_delta: int | None
    loyalty_type: LoyaltyType
    false_loyalty: bool
    computed_on: date
    model_version: str = MODEL_VERSION

    def component(self, name: str) -> ComponentScore:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)


def band_of(score: int, cfg: ScoringConfig = DEFAULT_CONFIG) -> Band:
    """4.5: green >= 70, yellow >= 40, red below."""
    if score >= cfg.bands.green:
        return "green"
    if score >= cfg.bands.yellow:
        return "yellow"
    return "red"


def classify_loyalty(
    usage: float | None,
    sentiment: float | None,
    key_detractor: bool,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> LoyaltyType:
    """4.7, Dick & Basu's quadrant: behaviour = usage, attitude = sentiment without a
    key-role detractor. Missing usage or sentiment: ``unknown``, never a guess."""
    if usage is None or sentiment is None:
        return "unknown"
    behaviour = usage >= cfg.loyalty.behaviour_high
    attitude = sentiment >= cfg.loyalty.attitude_high and not key_detractor
    if behaviour and attitude:
        return "true"
    if behaviour:
        return "false"
    if attitude:
        return "latent"
    return "none"


def compute_trend(
    score: int | None,
    history: Sequence[SnapshotPoint],
    as_of: date,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> tuple[Trend, int | None]:
    """4.6: against the snapshot closest to 30 days ago (23-37 days old); ties go to the older
    one. No such snapshot, or no score on either side: ``new``."""
    t = cfg.trend
    if score is None:
        return "new", None
    candidates = [
        p
        for p in history
        if p.score is not None and abs((as_of - p.on).days - t.days) <= t.tolerance_days
    ]
    if not candidates:
        return "new", None
    best = min(candidates, key=lambda p: (abs((as_of - p.on).days - t.days), p.on))
    assert best.score is not None
    delta = score - best.score
    if delta >= t.delta:
        return "up", delta
    if delta <= -t.delta:
        return "down", delta
    return "flat", delta


def _cap(
    band: Band, flags: Sequence[str], tier: Tier, cfg: ScoringConfig
) -> tuple[Band, tuple[str, ...]]:
    """4.5: each switchable cap holds the band at yellow at most."""
    c = cfg.caps
    applied = []
    if c.false_loyalty and "false_loyalty" in flags:
        applied.append("false_loyalty")
    if c.dormant and "dormant" in flags:
        applied.append("dormant")
    if c.champion_left and "champion_left" in flags and tier in c.champion_left_tiers:
        applied.append("champion_left")
    if applied and band == "green":
        return "yellow", tuple(applied)
    return band, ()


Scorer = Callable[[HealthInput, date, ScoringConfig], ComponentScore]
#: Per configuration (by identity; a configuration is frozen): each component with its weight
#: and scorer, and the enabled weight. A recompute scores every account with one configuration.
_PLANS: dict[int, tuple[ScoringConfig, tuple[tuple[ComponentName, int, Scorer], ...], int]] = {}


# Where compute_health's list holds the components the loyalty and silence rules read: the
# plan scores them in COMPONENTS' order.
_USAGE, _SENTIMENT, _SUPPORT = (COMPONENTS.index(n) for n in ("usage", "sentiment", "support"))


def _plan(cfg: ScoringConfig) -> tuple[tuple[tuple[ComponentName, int, Scorer], ...], int]:
    cached = _PLANS.get(id(cfg))
    if cached is not None and cached[0] is cfg:
        return cached[1], cached[2]
    weights = cfg.weights.as_dict()
    plan = tuple((name, weights[name], SCORERS[name]) for name in COMPONENTS)
    enabled = sum(w for _n, w, _s in plan if w > 0)
    if len(_PLANS) > 16:  # configurations are few; tests make many, keep it bounded
        _PLANS.clear()
    _PLANS[id(cfg)] = (cfg, plan, enabled)
    return plan, enabled


def compute_health(
    inp: HealthInput, as_of: date, cfg: ScoringConfig = DEFAULT_CONFIG
) -> HealthResult:
    """One account's health on ``as_of`` (domain.md 4.3-4.8)."""
    plan, enabled = _plan(cfg)
    components: list[ComponentScore] = []
    avail_weight = 0
    weighted: float = 0  # sum of weight x value over the components with data, in their order
    flags: list[str] = []
    for name, weight, scorer in plan:
        if weight <= 0:  # 4.4: disabled is not missing
            components.append(ComponentScore(name, None, "disabled"))
            continue
        c = scorer(inp, as_of, cfg)
        # The scorer's own new instance, given its weight in place: a recompute scores every
        # account, and building each component twice cost a tenth of it.
        object.__setattr__(c, "weight", weight)
        components.append(c)
        if c.value is not None:
            avail_weight += weight
            weighted += weight * c.value
        for f in c.flags:
            if f not in flags:
                flags.append(f)

    coverage_exact = 100.0 * avail_weight / enabled
    coverage = round_half_up(coverage_exact)
    score = round_half_up(weighted / avail_weight) if avail_weight else None

    usage = components[_USAGE].value
    sentiment = components[_SENTIMENT].value
    loyalty = classify_loyalty(usage, sentiment, "detractor" in flags, cfg)
    false_loyalty = loyalty == "false"
    if false_loyalty:
        flags.insert(0, "false_loyalty")
    if (
        components[_SUPPORT].inputs.get("silent") == "yes"
        and usage is not None
        and usage < cfg.loyalty.behaviour_high
    ):
        flags.append("silent")
    insufficient = score is None or coverage_exact < cfg.min_coverage
    if insufficient:
        flags.append("insufficient_data")

    uncapped: Band = "unknown" if insufficient or score is None else band_of(score, cfg)
    band, caps = _cap(uncapped, flags, inp.tier, cfg)
    trend, delta = compute_trend(score, inp.history, as_of, cfg)
    reasons = build_reasons(components, flags, band, coverage, cfg)
    return HealthResult(
        score=score,
        band=band,
        uncapped_band=uncapped,
        coverage=coverage,
        components=tuple(components),
        flags=tuple(sorted(flags, key=flag_rank)),
        caps=caps,
        reasons=reasons,
        reasons_text=join_reasons(reasons, cfg.reasons.max_chars),
        trend=trend,
        trend_delta=delta,
        loyalty_type=loyalty,
        false_loyalty=false_loyalty,
        computed_on=as_of,
    )
