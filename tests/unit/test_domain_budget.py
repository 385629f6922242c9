"""The budget guard's arithmetic (app/domain/budget.py), table-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.budget import BudgetState, backfill_calls, frees_at, used_in_window

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("limit", "share", "used", "org_used", "allowed", "left"),
    [
        (None, 0.5, 10, None, None, None),  # no limit known: nothing to guard
        (1000, 0.3, 0, None, 300, 300),
        (1000, 0.3, 250, None, 300, 50),
        (1000, 0.3, 400, None, 300, 0),  # over (a run overshot): never negative
        (1000, 0.3, 100, 950, 300, 50),  # the org has only 50 left
        (1000, 1.0, 0, 1000, 1000, 0),
        (15, 0.5, 0, None, 7, 7),  # floored
    ],
)
def test_allowed_and_left(
    limit: int | None,
    share: float,
    used: int,
    org_used: int | None,
    allowed: int | None,
    left: int | None,
) -> None:
    state = BudgetState("salesforce", limit, share, used, org_used)
    assert state.allowed == allowed
    assert state.left == left
    assert state.can_spend(left or 0)
    if left is not None:
        assert not state.can_spend(left + 1)


def test_used_in_window_counts_the_last_24_hours_only() -> None:
    usage = [(NOW - 25 * H, 100), (NOW - 24 * H, 50), (NOW - 23 * H, 7), (NOW, 3)]
    assert used_in_window(usage, NOW) == 10


@pytest.mark.parametrize(
    ("usage", "allowed", "need", "expected"),
    [
        ([], 100, 10, NOW),
        ([(NOW - 2 * H, 50)], 100, 10, NOW),
        ([(NOW - 2 * H, 95)], 100, 10, NOW + 22 * H),
        ([(NOW - 20 * H, 40), (NOW - 2 * H, 55)], 100, 10, NOW + 4 * H),
        ([(NOW - 20 * H, 40), (NOW - 2 * H, 55)], 100, 50, NOW + 22 * H),
        ([(NOW - 30 * H, 500)], 100, 10, NOW),  # outside the window already
        ([], 100, 101, None),  # never fits
    ],
)
def test_frees_at(
    usage: list[tuple[datetime, int]], allowed: int, need: int, expected: datetime | None
) -> None:
    assert frees_at(usage, allowed, need, NOW) == expected


@pytest.mark.parametrize(
    ("crm", "rows", "page", "bulk", "calls"),
    [
        ("salesforce", 0, 2000, 10_000, 1),
        ("salesforce", 2000, 2000, 10_000, 2),
        ("salesforce", 2001, 2000, 10_000, 3),
        ("salesforce", 10_001, 2000, 10_000, 7),  # Bulk 2.0: create, polls, one result page
        ("salesforce", 120_000, 2000, 10_000, 9),
        ("hubspot", 1000, 200, None, 6),
    ],
)
def test_backfill_calls(crm: str, rows: int, page: int, bulk: int | None, calls: int) -> None:
    assert backfill_calls(crm, rows, page_size=page, bulk_threshold=bulk) == calls
