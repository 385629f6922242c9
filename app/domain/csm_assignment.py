"""CSM assignment (domain.md 8.2-8.3): who owns an account at close, and why.

Deterministic: the same CSMs with the same loads give the same choice, whatever order they come
in. The caller reads the CSMs and computes each one's current load with :func:`load_units`
(units of their *other* accounts: the account being assigned is not counted), and writes the
choice; this module only decides.

Steps (8.3):

1. ``tech``: the pool owner (``assignment.pool_owner.tech``, else the lowest-id active pool
   user serving tech); no capacity check.
2. Continuity: the account's current CSM, if active and serving the tier, stays.
3. A pre-assigned CSM (by e-mail) who is active is taken, even over capacity (``over_capacity``).
4. Else candidates: active, not out of office, not a pool user, serving the tier, matching
   region / language when ``assignment.match_region`` / ``match_language`` are on, with
   ``load + units <= capacity`` (and the optional ARR ceiling). Lowest utilisation after the
   assignment wins; ties: fewest new onboardings in the last 30 days, then the lowest id.
5. No candidate: the tier's fallback owner, flag ``csm_capacity_exceeded``.
6. ``key``: a backup CSM too, a different person, by the same rules with
   ``assignment.backup_units`` (2).
7. A CSM deactivated: :func:`reassign_accounts` puts each account they own or back up through
   steps 4-6 again (their own row counts as inactive, so continuity cannot keep them), one
   account after the other with the loads updated as it goes, and names the
   ``announce_csm_change`` task each account gets.

Units (8.2): key 10, high 3, low 1, tech 0, times ``assignment.onboarding_factor`` (1.5) while
the account is onboarding; a backup counts ``backup_units`` without the factor (ours).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from app.domain.config import DEFAULT_CONFIG, ScoringConfig
from app.domain.values import Tier

Reason = Literal["pool", "continuity", "preassigned", "capacity", "fallback", "none"]

CAPACITY_EXCEEDED = "csm_capacity_exceeded"
OVER_CAPACITY = "over_capacity"
PREASSIGNED_UNAVAILABLE = "preassigned_csm_unavailable"
NO_POOL_OWNER = "no_pool_owner"
NO_FALLBACK_OWNER = "no_fallback_owner"
NO_BACKUP = "no_backup_csm"


@dataclass(frozen=True)
class CsmCandidate:
    """One CSM (or pool user) as the assignment sees them."""

    id: int
    email: str
    name: str = ""
    tiers: tuple[str, ...] = ()
    capacity_units: float = 100
    load_units: float = 0  # 8.2: units of their other accounts (see load_units)
    active: bool = True
    out_of_office_until: date | None = None  # away through this day
    region: str | None = None
    language: str | None = None
    is_pool: bool = False
    recent_onboardings: int = 0  # new onboardings in the last assignment.recent_onboarding_days
    arr: Decimal = Decimal(0)  # ARR of their accounts, for assignment.max_arr_per_csm

    def serves(self, tier: Tier) -> bool:
        return tier in self.tiers

    def available_on(self, day: date) -> bool:
        return self.active and (self.out_of_office_until is None or self.out_of_office_until < day)


@dataclass(frozen=True)
class AssignmentRequest:
    tier: Tier
    today: date
    current_csm_id: int | None = None
    current_backup_csm_id: int | None = None
    preassigned_email: str | None = None
    region: str | None = None
    language: str | None = None
    arr: Decimal | None = None
    onboarding: bool = True  # the account enters (or is in) onboarding: units x factor


@dataclass(frozen=True)
class Choice:
    csm_id: int | None  # None: an owner that is not a CSM row (a configured e-mail) or nobody
    email: str | None
    reason: Reason
    units: float
    utilisation_after: float | None  # (load + units) / capacity of the chosen CSM
    flags: tuple[str, ...]
    detail: str


@dataclass(frozen=True)
class Assignment:
    csm: Choice
    backup: Choice | None  # key accounts only (8.3 step 6)

    @property
    def flags(self) -> tuple[str, ...]:
        seen: list[str] = []
        for flag in (*self.csm.flags, *(self.backup.flags if self.backup else ())):
            if flag not in seen:
                seen.append(flag)
        return tuple(seen)


@dataclass(frozen=True)
class LoadItem:
    """One account a CSM carries: its tier, whether it is onboarding, whether as backup."""

    tier: Tier
    onboarding: bool = False
    backup: bool = False


def account_units(tier: Tier, *, onboarding: bool, cfg: ScoringConfig = DEFAULT_CONFIG) -> float:
    """8.2: the tier's units, x ``onboarding_factor`` while onboarding."""
    units = float(cfg.assignment.units.of(tier))
    return units * cfg.assignment.onboarding_factor if onboarding else units


def load_units(items: Iterable[LoadItem], cfg: ScoringConfig = DEFAULT_CONFIG) -> float:
    """8.2: a CSM's load: the sum of their accounts' units; a backup counts ``backup_units``."""
    total = 0.0
    for item in items:
        if item.backup:
            total += cfg.assignment.backup_units
        else:
            total += account_units(item.tier, onboarding=item.onboarding, cfg=cfg)
    return total


def _exact(x: float) -> Fraction:
    return Fraction(str(x))


def _utilisation(csm: CsmCandidate, units: float) -> float | None:
    if csm.capacity_units <= 0:
        return None
    return float((_exact(csm.load_units) + _exact(units)) / _exact(csm.capacity_units))


def _fits(csm: CsmCandidate, units: float) -> bool:
    return csm.capacity_units > 0 and _exact(csm.load_units) + _exact(units) <= _exact(
        csm.capacity_units
    )


def _by_email(csms: Sequence[CsmCandidate], email: str | None) -> CsmCandidate | None:
    if not email:
        return None
    wanted = email.strip().lower()
    return next((c for c in sorted(csms, key=lambda c: c.id) if c.email.lower() == wanted), None)


def _choice(
    csm: CsmCandidate | None,
    email: str | None,
    reason: Reason,
    units: float,
    flags: Sequence[str],
    detail: str,
) -> Choice:
    if csm is not None and not _fits(csm, units) and reason in ("continuity", "preassigned"):
        flags = (*flags, OVER_CAPACITY)
    return Choice(
        csm_id=csm.id if csm is not None else None,
        email=csm.email if csm is not None else email,
        reason=reason,
        units=units,
        utilisation_after=_utilisation(csm, units) if csm is not None else None,
        flags=tuple(flags),
        detail=detail,
    )


def _candidates(
    req: AssignmentRequest,
    csms: Sequence[CsmCandidate],
    units: float,
    exclude: set[int],
    cfg: ScoringConfig,
) -> list[CsmCandidate]:
    a = cfg.assignment
    found = []
    for c in csms:
        if c.id in exclude or c.is_pool or not c.available_on(req.today) or not c.serves(req.tier):
            continue
        if a.match_region and req.region and c.region and c.region.lower() != req.region.lower():
            continue
        if (
            a.match_language
            and req.language
            and c.language
            and c.language.lower() != req.language.lower()
        ):
            continue
        if not _fits(c, units):
            continue
        if a.max_arr_per_csm is not None and c.arr + (req.arr or 0) > a.max_arr_per_csm:
            continue
        found.append(c)
    return found


def _pick(candidates: list[CsmCandidate], units: float) -> CsmCandidate | None:
    """Lowest utilisation after the assignment; ties: fewest recent onboardings, lowest id."""
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda c: (
            (_exact(c.load_units) + _exact(units)) / _exact(c.capacity_units),
            c.recent_onboardings,
            c.id,
        ),
    )


def _fallback(
    req: AssignmentRequest,
    csms: Sequence[CsmCandidate],
    units: float,
    exclude: set[int],
    cfg: ScoringConfig,
    what: str,
) -> Choice:
    email = cfg.assignment.fallback_owner.of(req.tier)
    owner = _by_email(csms, email)
    if owner is not None and owner.id in exclude:
        return _choice(
            None, None, "none", units, (CAPACITY_EXCEEDED, NO_BACKUP), f"no {what} with capacity"
        )
    if email is None:
        return _choice(
            None,
            None,
            "none",
            units,
            (CAPACITY_EXCEEDED, NO_FALLBACK_OWNER),
            f"no {what} with capacity for {req.tier} and no assignment.fallback_owner.{req.tier}",
        )
    return _choice(
        owner,
        email,
        "fallback",
        units,
        (CAPACITY_EXCEEDED,),
        f"no {what} with capacity for {req.tier}: the fallback owner {email}",
    )


def _pool(req: AssignmentRequest, csms: Sequence[CsmCandidate], cfg: ScoringConfig) -> Choice:
    email = cfg.assignment.pool_owner.of(req.tier)
    if email is not None:
        owner = _by_email(csms, email)
        return _choice(owner, email, "pool", 0.0, (), f"{req.tier} tier: the pool owner {email}")
    pools = sorted(
        (c for c in csms if c.is_pool and c.active and (not c.tiers or c.serves(req.tier))),
        key=lambda c: c.id,
    )
    if pools:
        return _choice(
            pools[0], None, "pool", 0.0, (), f"{req.tier} tier: the pool user {pools[0].email}"
        )
    fallback = _fallback(req, csms, 0.0, set(), cfg, "pool owner")
    return Choice(
        fallback.csm_id,
        fallback.email,
        fallback.reason,
        0.0,
        fallback.utilisation_after,
        tuple(f for f in (NO_POOL_OWNER, *fallback.flags) if f != CAPACITY_EXCEEDED),
        f"{req.tier} tier: no pool owner configured ({fallback.detail})",
    )


def _primary(req: AssignmentRequest, csms: Sequence[CsmCandidate], cfg: ScoringConfig) -> Choice:
    units = account_units(req.tier, onboarding=req.onboarding, cfg=cfg)
    by_id = {c.id: c for c in csms}
    current = by_id.get(req.current_csm_id) if req.current_csm_id is not None else None
    if current is not None and current.active and current.serves(req.tier) and not current.is_pool:
        return _choice(
            current, None, "continuity", units, (), f"continuity: {current.email} keeps it"
        )
    flags: list[str] = []
    if req.preassigned_email:
        pre = _by_email(csms, req.preassigned_email)
        if pre is not None and pre.active:
            return _choice(pre, None, "preassigned", units, (), f"pre-assigned: {pre.email}")
        flags.append(PREASSIGNED_UNAVAILABLE)
    best = _pick(_candidates(req, csms, units, set(), cfg), units)
    if best is not None:
        util = _utilisation(best, units) or 0.0
        return _choice(
            best,
            None,
            "capacity",
            units,
            flags,
            f"lowest utilisation after assignment: {best.email} at {util:.0%}",
        )
    fallback = _fallback(req, csms, units, set(), cfg, "CSM")
    return Choice(
        fallback.csm_id,
        fallback.email,
        fallback.reason,
        units,
        fallback.utilisation_after,
        (*flags, *fallback.flags),
        fallback.detail,
    )


def _backup(
    req: AssignmentRequest, csms: Sequence[CsmCandidate], primary: Choice, cfg: ScoringConfig
) -> Choice:
    units = float(cfg.assignment.backup_units)
    exclude = {primary.csm_id} if primary.csm_id is not None else set()
    exclude |= {c.id for c in csms if primary.email and c.email.lower() == primary.email.lower()}
    by_id = {c.id: c for c in csms}
    current = by_id.get(req.current_backup_csm_id) if req.current_backup_csm_id else None
    if (
        current is not None
        and current.id not in exclude
        and current.active
        and current.serves(req.tier)
        and not current.is_pool
    ):
        return _choice(
            current, None, "continuity", units, (), f"continuity: backup {current.email} stays"
        )
    best = _pick(_candidates(req, csms, units, exclude, cfg), units)
    if best is not None:
        util = _utilisation(best, units) or 0.0
        return _choice(
            best, None, "capacity", units, (), f"backup: {best.email} at {util:.0%} after"
        )
    return _fallback(req, csms, units, exclude, cfg, "backup CSM")


def assign_csm(
    req: AssignmentRequest,
    csms: Sequence[CsmCandidate],
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> Assignment:
    """8.3: the CSM (and for ``key`` the backup CSM) of an account, with reasons and flags."""
    if req.tier == "tech":
        return Assignment(_pool(req, csms, cfg), None)
    primary = _primary(req, csms, cfg)
    backup = _backup(req, csms, primary, cfg) if req.tier == "key" else None
    return Assignment(primary, backup)


# --------------------------------------------------------------------------------------------
# 8.3 step 7: a CSM deactivated or leaving
# --------------------------------------------------------------------------------------------

ANNOUNCE_CSM_CHANGE = "announce_csm_change"
_TIER_ORDER: dict[str, int] = {"key": 0, "high": 1, "low": 2, "tech": 3}


@dataclass(frozen=True)
class HeldAccount:
    """An account the leaving CSM owns or backs up, as the reassignment sees it."""

    account_id: int
    tier: Tier
    csm_id: int | None
    backup_csm_id: int | None = None
    onboarding: bool = False  # in the ``onboarding`` stage: units x the factor (8.2)
    arr: Decimal | None = None
    region: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Reassignment:
    account_id: int
    assignment: Assignment
    csm_id: int | None  # the CSM row after (None: a configured owner e-mail, or nobody)
    backup_csm_id: int | None  # after: key accounts' backup; None when the leaver backed up
    csm_changed: bool  # the primary CSM is someone else now
    backup_changed: bool  # the backup CSM is someone else (or nobody) now
    announce_on: date  # the ``announce_csm_change`` task's due date (before the switch)


def reassign_accounts(
    leaving_csm_id: int,
    accounts: Sequence[HeldAccount],
    csms: Sequence[CsmCandidate],
    *,
    today: date,
    switch_on: date | None = None,
    cfg: ScoringConfig = DEFAULT_CONFIG,
) -> list[Reassignment]:
    """8.3 step 7: new owners for the accounts of a CSM who is deactivated or leaving.

    ``csms`` carry their loads **without** these accounts (the caller leaves them all out);
    each account is assigned by :func:`assign_csm` (no pre-assigned CSM: that was the sale's
    choice, not this one) and its units are then added to whoever got it, so the next account
    sees the new loads. Order (ours): key first, then high, low, tech, each by account id, so
    the accounts that need the most capacity choose first. The leaving CSM counts as inactive
    from ``today`` whatever their row says. Whoever keeps an account (the other half of a key
    account's pair) keeps it by continuity. ``announce_on`` is the day before ``switch_on``
    (default ``today``: the switch is now), never before ``today`` (domain.md 8.3: tell the
    customer before the switch, 001:465).
    """
    switch = switch_on or today
    announce_on = max(today, switch - timedelta(days=1))
    pool = {
        c.id: (replace(c, active=False) if c.id == leaving_csm_id else c)
        for c in sorted(csms, key=lambda c: c.id)
    }
    out: list[Reassignment] = []
    ordered = sorted(accounts, key=lambda a: (_TIER_ORDER.get(a.tier, 9), a.account_id))
    for account in ordered:
        request = AssignmentRequest(
            tier=account.tier,
            today=today,
            current_csm_id=account.csm_id,
            current_backup_csm_id=account.backup_csm_id,
            region=account.region,
            language=account.language,
            arr=account.arr,
            onboarding=account.onboarding,
        )
        result = assign_csm(request, list(pool.values()), cfg)
        for choice in (result.csm, result.backup):
            if choice is None or choice.csm_id is None or choice.csm_id not in pool:
                continue
            held = pool[choice.csm_id]
            arr = held.arr + (account.arr or 0) if choice is result.csm else held.arr
            pool[held.id] = replace(
                held, load_units=float(_exact(held.load_units) + _exact(choice.units)), arr=arr
            )
        if result.backup is not None:
            new_backup = result.backup.csm_id
        elif account.backup_csm_id == leaving_csm_id:
            new_backup = None  # no longer key: nobody backs it up
        else:
            new_backup = account.backup_csm_id
        out.append(
            Reassignment(
                account_id=account.account_id,
                assignment=result,
                csm_id=result.csm.csm_id,
                backup_csm_id=new_backup,
                csm_changed=result.csm.csm_id != account.csm_id,
                backup_changed=new_backup != account.backup_csm_id,
                announce_on=announce_on,
            )
        )
    return sorted(out, key=lambda r: r.account_id)
