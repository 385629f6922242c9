"""CSM assignment (domain.md 8.2-8.3): each table row's id names the section it checks."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from app.domain.config import AssignmentConfig, PerTierText, ScoringConfig
from app.domain.csm_assignment import (
    AssignmentRequest,
    CsmCandidate,
    HeldAccount,
    LoadItem,
    Reassignment,
    account_units,
    assign_csm,
    load_units,
    reassign_accounts,
)

TODAY = date(2026, 12, 7)
ALL = ("key", "high", "low")


def csm(id_: int, load: float = 0, **kw: Any) -> CsmCandidate:
    base: dict[str, Any] = {
        "id": id_,
        "email": f"csm{id_}@cs.test",
        "tiers": ALL,
        "load_units": load,
    }
    base.update(kw)
    return CsmCandidate(**base)


def req(tier: Any = "high", **kw: Any) -> AssignmentRequest:
    return AssignmentRequest(tier=tier, today=TODAY, **kw)


FALLBACK = ScoringConfig(
    assignment=AssignmentConfig(
        fallback_owner=PerTierText("lead@cs.test", "lead@cs.test", "lead@cs.test", "lead@cs.test"),
        pool_owner=PerTierText(tech="pool@cs.test"),
    )
)


@pytest.mark.parametrize(
    ("tier", "onboarding", "units"),
    [
        pytest.param("key", False, 10, id="8.2-key-10"),
        pytest.param("high", False, 3, id="8.2-high-3"),
        pytest.param("low", False, 1, id="8.2-low-1"),
        pytest.param("tech", False, 0, id="8.2-tech-0-pool"),
        pytest.param("key", True, 15, id="8.2-key-onboarding-x1.5"),
        pytest.param("high", True, 4.5, id="8.2-high-onboarding-x1.5"),
    ],
)
def test_units(tier: Any, onboarding: bool, units: float) -> None:
    assert account_units(tier, onboarding=onboarding) == units


def test_load_sums_units_and_backups() -> None:
    """8.2 / 8.3 step 6: a CSM's load; a backup counts 2 units."""
    items = [LoadItem("key"), LoadItem("high", onboarding=True), LoadItem("key", backup=True)]
    assert load_units(items) == 10 + 4.5 + 2


@pytest.mark.parametrize(
    ("request_", "csms", "cfg", "csm_id", "email", "reason", "flags"),
    [
        pytest.param(
            req("tech"),
            [csm(1)],
            FALLBACK,
            None,
            "pool@cs.test",
            "pool",
            (),
            id="8.3-1-tech-pool-owner-setting",
        ),
        pytest.param(
            req("tech"),
            [csm(1), csm(7, is_pool=True, tiers=("tech",)), csm(5, is_pool=True, tiers=("tech",))],
            ScoringConfig(),
            5,
            "csm5@cs.test",
            "pool",
            (),
            id="8.3-1-tech-pool-user-lowest-id",
        ),
        pytest.param(
            req("tech"),
            [csm(1, load=1000)],
            ScoringConfig(
                assignment=AssignmentConfig(fallback_owner=PerTierText(tech="lead@cs.test"))
            ),
            None,
            "lead@cs.test",
            "fallback",
            ("no_pool_owner",),
            id="8.3-1-tech-no-pool-owner-fallback",
        ),
        pytest.param(
            req("high", current_csm_id=2),
            [csm(1), csm(2, load=99)],
            ScoringConfig(),
            2,
            "csm2@cs.test",
            "continuity",
            ("over_capacity",),
            id="8.3-2-continuity-even-when-full",
        ),
        pytest.param(
            req("high", current_csm_id=2),
            [csm(1), csm(2, active=False)],
            ScoringConfig(),
            1,
            "csm1@cs.test",
            "capacity",
            (),
            id="8.3-2-inactive-current-csm-not-kept",
        ),
        pytest.param(
            req("key", current_csm_id=2),
            [csm(1), csm(2, tiers=("low",))],
            ScoringConfig(),
            1,
            "csm1@cs.test",
            "capacity",
            (),
            id="8.3-2-current-csm-not-serving-tier-not-kept",
        ),
        pytest.param(
            req("high", preassigned_email="CSM3@cs.test"),
            [csm(1), csm(3, load=100)],
            ScoringConfig(),
            3,
            "csm3@cs.test",
            "preassigned",
            ("over_capacity",),
            id="8.3-3-preassigned-over-capacity-flagged",
        ),
        pytest.param(
            req("high", preassigned_email="csm3@cs.test"),
            [csm(1), csm(3, active=False)],
            ScoringConfig(),
            1,
            "csm1@cs.test",
            "capacity",
            ("preassigned_csm_unavailable",),
            id="8.3-3-preassigned-inactive-falls-to-capacity",
        ),
        pytest.param(
            req("high"),
            [csm(1, load=50), csm(2, load=20), csm(3, load=20, capacity_units=50)],
            ScoringConfig(),
            2,
            "csm2@cs.test",
            "capacity",
            (),
            id="8.3-4-lowest-utilisation-after",
        ),
        pytest.param(
            req("high"),
            [csm(1, load=20, recent_onboardings=3), csm(2, load=20, recent_onboardings=1)],
            ScoringConfig(),
            2,
            "csm2@cs.test",
            "capacity",
            (),
            id="8.3-4-tie-fewest-recent-onboardings",
        ),
        pytest.param(
            req("high"),
            [csm(4, load=20), csm(2, load=20)],
            ScoringConfig(),
            2,
            "csm2@cs.test",
            "capacity",
            (),
            id="8.3-4-tie-lowest-id",
        ),
        pytest.param(
            req("high"),
            [csm(1, load=10, capacity_units=50), csm(2, load=20, capacity_units=100)],
            ScoringConfig(),
            2,
            "csm2@cs.test",
            "capacity",
            (),
            id="8.3-4-part-time-capacity-scaled",
        ),
        pytest.param(
            req("high"),
            [csm(1, load=96), csm(2, load=95.5)],
            ScoringConfig(),
            2,
            "csm2@cs.test",
            "capacity",
            (),
            id="8.2-onboarding-factor-4.5-units-must-fit",
        ),
        pytest.param(
            req("high"),
            [
                csm(1, out_of_office_until=TODAY),
                csm(2, is_pool=True),
                csm(3, tiers=("low",)),
                csm(4, active=False),
                csm(5, load=60),
            ],
            ScoringConfig(),
            5,
            "csm5@cs.test",
            "capacity",
            (),
            id="8.3-4-excludes-away-pool-other-tier-inactive",
        ),
        pytest.param(
            req("high"),
            [csm(1, out_of_office_until=date(2026, 12, 6), load=50), csm(2, load=60)],
            ScoringConfig(),
            1,
            "csm1@cs.test",
            "capacity",
            (),
            id="8.3-4-back-from-leave",
        ),
        pytest.param(
            req("high", region="EU"),
            [csm(1, region="US"), csm(2, region="EU", load=50)],
            ScoringConfig(assignment=AssignmentConfig(match_region=True)),
            2,
            "csm2@cs.test",
            "capacity",
            (),
            id="8.3-4-region-when-configured",
        ),
        pytest.param(
            req("high", region="EU"),
            [csm(1, region="US"), csm(2, region="EU", load=50)],
            ScoringConfig(),
            1,
            "csm1@cs.test",
            "capacity",
            (),
            id="8.3-4-region-ignored-by-default",
        ),
        pytest.param(
            req("high", arr=Decimal(50_000)),
            [csm(1, arr=Decimal(980_000)), csm(2, load=50, arr=Decimal(100_000))],
            ScoringConfig(assignment=AssignmentConfig(max_arr_per_csm=1_000_000)),
            2,
            "csm2@cs.test",
            "capacity",
            (),
            id="8.2-max-arr-per-csm-when-set",
        ),
        pytest.param(
            req("high"),
            [csm(1, load=98), csm(9, email="lead@cs.test", load=500)],
            FALLBACK,
            9,
            "lead@cs.test",
            "fallback",
            ("csm_capacity_exceeded",),
            id="8.3-5-fallback-owner-capacity-exceeded",
        ),
        pytest.param(
            req("high"),
            [csm(1, load=98)],
            ScoringConfig(),
            None,
            None,
            "none",
            ("csm_capacity_exceeded", "no_fallback_owner"),
            id="8.3-5-no-fallback-owner-configured",
        ),
    ],
)
def test_assign_csm(
    request_: AssignmentRequest,
    csms: list[CsmCandidate],
    cfg: ScoringConfig,
    csm_id: int | None,
    email: str | None,
    reason: str,
    flags: tuple[str, ...],
) -> None:
    got = assign_csm(request_, csms, cfg).csm
    assert (got.csm_id, got.email, got.reason, got.flags) == (csm_id, email, reason, flags)
    assert got.detail


def test_utilisation_after_assignment() -> None:
    got = assign_csm(req("key"), [csm(1, load=25)]).csm
    assert got.units == 15
    assert got.utilisation_after == pytest.approx(0.40)


def test_order_of_csms_does_not_matter() -> None:
    """8.3: deterministic."""
    csms = [
        csm(1, load=20),
        csm(2, load=20),
        csm(3, load=40),
        csm(4, load=20, recent_onboardings=2),
    ]
    answers = {assign_csm(req("low"), list(p)).csm.csm_id for p in itertools.permutations(csms)}
    assert answers == {1}


@pytest.mark.parametrize(
    ("request_", "csms", "cfg", "backup_id", "reason", "flags"),
    [
        pytest.param(
            req("key"),
            [csm(1), csm(2, load=30)],
            ScoringConfig(),
            2,
            "capacity",
            (),
            id="8.3-6-key-backup-a-different-person",
        ),
        pytest.param(
            req("key", current_csm_id=1, current_backup_csm_id=3),
            [csm(1), csm(2), csm(3, load=99)],
            ScoringConfig(),
            3,
            "continuity",
            ("over_capacity",),
            id="8.3-6-backup-continuity",
        ),
        pytest.param(
            req("key"),
            [csm(1), csm(2, load=98.5)],
            ScoringConfig(),
            None,
            "none",
            ("csm_capacity_exceeded", "no_fallback_owner"),
            id="8.3-6-backup-needs-2-units",
        ),
        pytest.param(
            req("key"),
            [csm(1), csm(2, load=98)],
            ScoringConfig(),
            2,
            "capacity",
            (),
            id="8.3-6-backup-2-units-fit-exactly",
        ),
        pytest.param(
            req("key"),
            [csm(9, email="lead@cs.test")],
            FALLBACK,
            None,
            "none",
            ("csm_capacity_exceeded", "no_backup_csm"),
            id="8.3-6-fallback-is-the-csm-no-backup",
        ),
    ],
)
def test_backup(
    request_: AssignmentRequest,
    csms: list[CsmCandidate],
    cfg: ScoringConfig,
    backup_id: int | None,
    reason: str,
    flags: tuple[str, ...],
) -> None:
    got = assign_csm(request_, csms, cfg)
    assert got.backup is not None
    assert (got.backup.csm_id, got.backup.reason, got.backup.flags) == (backup_id, reason, flags)
    assert got.backup.csm_id is None or got.backup.csm_id != got.csm.csm_id


@pytest.mark.parametrize("tier", ["high", "low", "tech"], ids=lambda t: f"8.3-6-no-backup-for-{t}")
def test_no_backup_below_key(tier: Any) -> None:
    assert assign_csm(req(tier), [csm(1), csm(2)], FALLBACK).backup is None


def test_flags_union() -> None:
    got = assign_csm(req("key"), [csm(1, load=99)])
    assert got.flags == ("csm_capacity_exceeded", "no_fallback_owner")


# --------------------------------------------------------------------------------------------
# 8.3 step 7: a CSM deactivated
# --------------------------------------------------------------------------------------------

LEAVER = 1


def held(account_id: int, tier: Any = "high", **kw: Any) -> HeldAccount:
    base: dict[str, Any] = {"account_id": account_id, "tier": tier, "csm_id": LEAVER}
    base.update(kw)
    return HeldAccount(**base)


def outcome(result: list[Reassignment]) -> list[tuple[int, int | None, int | None, bool, bool]]:
    return [
        (r.account_id, r.csm_id, r.backup_csm_id, r.csm_changed, r.backup_changed) for r in result
    ]


@pytest.mark.parametrize(
    ("accounts", "csms", "expected"),
    [
        pytest.param(
            [held(10)],
            [csm(1), csm(2, 30), csm(3, 10)],
            [(10, 3, None, True, False)],
            id="8.3.7-lowest-utilisation-takes-it-leaver-excluded",
        ),
        pytest.param(
            [held(10), held(11), held(12)],
            [csm(1), csm(2, 0, capacity_units=6), csm(3, 0, capacity_units=6)],
            [(10, 2, None, True, False), (11, 3, None, True, False), (12, 2, None, True, False)],
            id="8.3.7-loads-updated-as-it-goes",
        ),
        pytest.param(
            [held(10, "high"), held(11, "key")],
            [csm(1), csm(2, 0, capacity_units=10), csm(3, 0, capacity_units=10)],
            # key chooses first: 2 takes the key account (10 units), 3 its backup (2 units);
            # the high account (3) then fits only 3 (2 + 3 <= 10)
            [(10, 3, None, True, False), (11, 2, 3, True, True)],
            id="8.3.7-key-first-with-backup",
        ),
        pytest.param(
            [held(11, "key", csm_id=2, backup_csm_id=LEAVER)],
            [csm(1), csm(2, 50), csm(3, 20), csm(4, 10)],
            [(11, 2, 4, False, True)],
            id="8.3.7-leaver-was-backup-primary-kept-backup-replaced",
        ),
        pytest.param(
            [held(11, "key", backup_csm_id=2)],
            [csm(1), csm(2, 50), csm(3, 20)],
            [(11, 3, 2, True, False)],
            id="8.3.7-leaver-was-primary-backup-kept",
        ),
        pytest.param(
            [held(11, "high", csm_id=2, backup_csm_id=LEAVER)],
            [csm(1), csm(2, 50), csm(3, 20)],
            [(11, 2, None, False, True)],
            id="8.3.7-backup-of-a-no-longer-key-account-dropped",
        ),
        pytest.param(
            [held(10, "high")],
            [csm(1), csm(2, 99)],
            [(10, None, None, True, False)],
            id="8.3.7-no-capacity-fallback-owner-email",
        ),
        pytest.param(
            [held(10, "high")],
            [csm(1), csm(2, 0, active=False), csm(3, 0, out_of_office_until=TODAY), csm(4, 90)],
            [(10, 4, None, True, False)],
            id="8.3.7-inactive-and-away-skipped",
        ),
        pytest.param(
            [held(10, "tech")],
            [csm(1), csm(5, tiers=("tech",), is_pool=True)],
            [(10, None, None, True, False)],
            id="8.3.7-tech-to-pool-owner-email",
        ),
    ],
)
def test_reassign_accounts(accounts: Any, csms: Any, expected: Any) -> None:
    result = reassign_accounts(LEAVER, accounts, csms, today=TODAY, cfg=FALLBACK)
    assert outcome(result) == expected
    assert all(LEAVER not in (r.csm_id, r.backup_csm_id) for r in result)


def test_reassign_fallback_flags_and_email() -> None:
    (r,) = reassign_accounts(LEAVER, [held(10)], [csm(1), csm(2, 99)], today=TODAY, cfg=FALLBACK)
    assert r.assignment.csm.email == "lead@cs.test"
    assert "csm_capacity_exceeded" in r.assignment.flags


def test_reassign_leaver_inactive_even_if_row_says_active() -> None:
    """The row may still say active (the caller reassigns before committing): not kept."""
    (r,) = reassign_accounts(LEAVER, [held(10)], [csm(1, 0), csm(2, 50)], today=TODAY)
    assert r.csm_id == 2
    assert r.assignment.csm.reason == "capacity"


@pytest.mark.parametrize(
    ("switch_on", "announce_on"),
    [
        pytest.param(None, TODAY, id="switch-now-announce-today"),
        pytest.param(date(2026, 12, 21), date(2026, 12, 20), id="switch-later-day-before"),
        pytest.param(date(2026, 12, 1), TODAY, id="switch-past-never-before-today"),
    ],
)
def test_reassign_announce_date(switch_on: date | None, announce_on: date) -> None:
    (r,) = reassign_accounts(LEAVER, [held(10)], [csm(1), csm(2)], today=TODAY, switch_on=switch_on)
    assert r.announce_on == announce_on


def test_reassign_order_of_inputs_does_not_matter() -> None:
    accounts = [held(10), held(11, "key"), held(12, "low"), held(13)]
    csms = [csm(1), csm(2, 5, capacity_units=20), csm(3, 0, capacity_units=20), csm(4, 10)]
    first = outcome(reassign_accounts(LEAVER, accounts, csms, today=TODAY))
    for a, c in itertools.islice(
        zip(itertools.permutations(accounts), itertools.permutations(csms), strict=False), 6
    ):
        assert outcome(reassign_accounts(LEAVER, list(a), list(c), today=TODAY)) == first
