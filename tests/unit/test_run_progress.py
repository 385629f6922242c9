"""Rate and ETA of a run, from its counters and its clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.run_progress import run_progress

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "finished", "read", "calls", "expected", "rate", "percent", "eta"),
    [
        # running, total known: ETA from the rate so far
        (100, False, 500, 10, 2000, 5.0, 25.0, 300.0),
        # running, total unknown (an incremental pass whose CRM gave no count): no ETA
        (100, False, 500, 10, None, 5.0, None, None),
        # nothing read yet: no rate, so no ETA even with a total
        (10, False, 0, 1, 2000, None, 0.0, None),
        # read everything it expected, still committing: ETA 0
        (50, False, 2000, 3, 2000, 40.0, 100.0, 0.0),
        # more read than expected (records changed meanwhile): capped at 100 %, ETA 0
        (50, False, 2100, 3, 2000, 42.0, 100.0, 0.0),
        # finished: no ETA, rate over its whole life
        (200, True, 1000, 20, 1000, 5.0, 100.0, None),
        # an empty stream
        (2, True, 0, 1, 0, None, 100.0, None),
    ],
)
def test_run_progress(
    elapsed: int,
    finished: bool,
    read: int,
    calls: int,
    expected: int | None,
    rate: float | None,
    percent: float | None,
    eta: float | None,
) -> None:
    end = T0 + timedelta(seconds=elapsed)
    p = run_progress(
        started_at=T0,
        finished_at=end if finished else None,
        now=end if not finished else end + timedelta(hours=1),
        read=read,
        api_calls=calls,
        expected=expected,
    )
    assert p.records_per_second == rate
    assert p.percent == percent
    assert p.eta_seconds == eta
    assert p.elapsed_seconds == elapsed
    if eta is not None:
        assert p.eta_at == end + timedelta(seconds=eta)
    else:
        assert p.eta_at is None
    assert p.api_calls_per_minute == pytest.approx(calls * 60 / elapsed)
