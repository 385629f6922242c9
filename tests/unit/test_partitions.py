"""Partitions of a backfill (``app.sync.partitions``): they cover the range exactly, every stamp
in one partition, balanced by count; the read bounds stay inside a partition."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crm.base import ReadFrom
from app.sync.partitions import (
    MAX_PARTITIONS,
    Partition,
    bounded,
    check_cover,
    from_bounds,
    is_partition_kind,
    plan_partitions,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def counter(stamps: Sequence[datetime], since: datetime | None) -> Callable[[datetime], int]:
    """``count(t)`` over ``stamps`` as a CRM answers it: records with since <= stamp < t."""
    ordered = sorted(s for s in stamps if since is None or s >= since)
    calls: list[datetime] = []

    def count(upper: datetime) -> int:
        calls.append(upper)
        assert upper.microsecond == 0, "bounds are whole seconds"
        return bisect.bisect_left(ordered, upper)

    count.calls = calls  # type: ignore[attr-defined]
    return count


def sizes(parts: Sequence[Partition], stamps: Sequence[datetime]) -> list[int]:
    return [sum(1 for s in stamps if p.contains(s)) for p in parts]


@pytest.mark.parametrize(
    ("stamps", "n", "since", "expected_sizes"),
    [
        # evenly spread: equal halves, thirds, quarters
        ([at(i) for i in range(1000)], 2, None, [500, 500]),
        ([at(i) for i in range(900)], 3, None, [300, 300, 300]),
        ([at(i * 7) for i in range(400)], 4, None, [100, 100, 100, 100]),
        # skewed: 900 records in one hour a year after 100 others; still split by count
        (
            [at(i * 86_400 * 3) for i in range(100)] + [at(400 * 86_400 + i) for i in range(900)],
            2,
            None,
            [500, 500],
        ),
        # a since: only what lies after it is counted and split
        ([at(i) for i in range(1000)], 2, at(500), [250, 250]),
        # one second holds everything: it cannot be split, one partition
        ([at(5)] * 300, 3, None, [300]),
        # nothing to read: one partition
        ([], 4, None, [0]),
        # n = 1: one partition, no count call needed
        ([at(i) for i in range(10)], 1, None, [10]),
        # fewer records than partitions: not worth splitting, one partition
        ([at(1), at(2)], 4, None, [2]),
    ],
)
def test_partitions_split_by_count_and_cover_everything(
    stamps: list[datetime], n: int, since: datetime | None, expected_sizes: list[int]
) -> None:
    count = counter(stamps, since)
    until = max(stamps, default=T0) + timedelta(seconds=1)

    parts = plan_partitions(n, since=since, until=until, count=count, tolerance=0.0)

    check_cover(parts, since)
    wanted = [s for s in stamps if since is None or s >= since]
    assert sizes(parts, wanted) == expected_sizes
    assert all(p.count == len(parts) for p in parts)


def test_records_on_a_boundary_stamp_belong_to_the_later_partition_only() -> None:
    # 100 records share the second where the halves meet: they must not be split or doubled.
    stamps = [at(i) for i in range(450)] + [at(450)] * 100 + [at(451 + i) for i in range(450)]
    parts = plan_partitions(2, since=None, until=at(1000), count=counter(stamps, None))

    check_cover(parts, None)
    boundary = parts[1].lower
    assert boundary is not None
    on_boundary = [s for s in stamps if s == boundary]
    assert on_boundary, "the test wants records on the boundary stamp"
    assert all(parts[1].contains(s) and not parts[0].contains(s) for s in on_boundary)
    assert sum(sizes(parts, stamps)) == len(stamps)


def test_planning_costs_a_bounded_number_of_count_calls() -> None:
    stamps = [at(i * 3_600) for i in range(10_000)]  # over a year
    count = counter(stamps, None)
    plan_partitions(4, since=None, until=at(10_000 * 3_600), count=count)
    assert len(count.calls) <= 1 + 3 * 40  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("read_from", "partition", "expected"),
    [
        # a fresh partition reads from its own lower bound, up to its upper
        (ReadFrom(), Partition(1, 2, at(100), None), ReadFrom(lower=at(100))),
        (ReadFrom(), Partition(0, 2, None, at(100)), ReadFrom(upper=at(100))),
        # the lookback of a resumed partition never reaches into the one before it
        (
            ReadFrom(lower=at(90), after=(at(95), "a")),
            Partition(1, 3, at(93), at(200)),
            ReadFrom(lower=at(93), after=(at(95), "a"), upper=at(200)),
        ),
        # inside the partition the engine's lower bound stands
        (
            ReadFrom(lower=at(150), resume={"mode": "bulk"}),
            Partition(1, 3, at(93), at(200)),
            ReadFrom(lower=at(150), resume={"mode": "bulk"}, upper=at(200)),
        ),
    ],
)
def test_reading_stays_inside_the_partition(
    read_from: ReadFrom, partition: Partition, expected: ReadFrom
) -> None:
    assert bounded(read_from, partition) == expected


def test_a_partition_names_its_run_kind_stream_and_round_trips() -> None:
    part = Partition(2, 4, at(10), at(20))
    assert (part.kind, part.stream) == ("backfill:p2", "backfill:p2")
    assert is_partition_kind(part.kind)
    assert not is_partition_kind("backfill")
    assert Partition.from_dict(part.as_dict()) == part
    assert not part.reads_deletes
    assert Partition(0, 4, None, at(1)).reads_deletes


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Partition(2, 2, None, None), "outside"),
        (lambda: Partition(0, 1, at(5), at(5)), "empty"),
        (lambda: Partition(0, 1, datetime(2026, 1, 1), None), "timezone-aware"),
    ],
)
def test_bad_partitions_are_refused(make: Callable[[], Partition], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make()


@pytest.mark.parametrize("n", [0, MAX_PARTITIONS + 1])
def test_the_partition_count_is_bounded(n: int) -> None:
    with pytest.raises(ValueError, match="between 1 and"):
        plan_partitions(n, since=None, until=T0, count=lambda _t: 0)


def test_check_cover_finds_a_gap() -> None:
    parts = from_bounds(None, [at(10), at(20)])
    check_cover(parts, None)
    gap = [parts[0], Partition(1, 3, at(11), at(20)), parts[2]]
    with pytest.raises(ValueError, match="not adjacent"):
        check_cover(gap, None)


offsets = st.lists(st.integers(min_value=0, max_value=5_000_000), max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    offsets=offsets,
    n=st.integers(min_value=1, max_value=MAX_PARTITIONS),
    since_offset=st.one_of(st.none(), st.integers(min_value=0, max_value=5_000_000)),
    micro=st.integers(min_value=0, max_value=999_999),
)
def test_any_plan_covers_the_range_and_puts_each_record_in_one_partition(
    offsets: list[int], n: int, since_offset: int | None, micro: int
) -> None:
    # Stamps with sub-second parts (HubSpot milliseconds) and a since that need not be whole.
    stamps = [at(o) + timedelta(microseconds=micro) for o in offsets]
    since = at(since_offset) + timedelta(microseconds=micro) if since_offset is not None else None
    until = at(5_000_001)
    parts = plan_partitions(n, since=since, until=until, count=counter(stamps, since))

    check_cover(parts, since)
    assert 1 <= len(parts) <= n
    for part in parts[1:]:
        assert part.lower is not None
        assert part.lower.microsecond == 0
    wanted = [s for s in stamps if since is None or s >= since]
    for stamp in wanted:
        assert sum(1 for p in parts if p.contains(stamp)) == 1
    # Balanced: no partition holds more than its share plus the tolerance and one second's
    # records (a second cannot be split).
    if wanted:
        per_second: dict[datetime, int] = {}
        for s in wanted:
            key = s.replace(microsecond=0)
            per_second[key] = per_second.get(key, 0) + 1
        heaviest = max(per_second.values())
        share = len(wanted) / len(parts)
        limit = len(wanted) / n * (1 + 0.02) + heaviest + len(wanted) / n
        assert max(sizes(parts, wanted)) <= max(limit, share)
