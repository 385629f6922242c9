"""How fast a sync run goes and when it will end: pure arithmetic on its counters and clock.

The rate is the records read per second of the run's life so far (from ``started_at`` to its
end, or to ``now`` while it runs). The ETA needs to know how many records the run expects:
the CRM says so with its first page (a REST query's ``totalSize``, a search's ``total``) and
the run stores it as ``params["expected"]``. Without it, or before the first record, the ETA
is unknown (None): never guessed. A finished run has no ETA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Progress:
    elapsed_seconds: float
    records_per_second: float | None
    api_calls_per_minute: float | None
    expected: int | None
    remaining: int | None
    percent: float | None
    eta_seconds: float | None
    eta_at: datetime | None


def run_progress(
    *,
    started_at: datetime,
    finished_at: datetime | None,
    now: datetime,
    read: int,
    api_calls: int,
    expected: int | None,
) -> Progress:
    """The progress of a run with ``read`` records and ``api_calls`` so far."""
    end = finished_at if finished_at is not None else now
    elapsed = max((end - started_at).total_seconds(), 0.0)
    rate = read / elapsed if elapsed > 0 and read > 0 else None
    calls = api_calls * 60 / elapsed if elapsed > 0 and api_calls > 0 else None
    known = expected if expected is not None and expected >= 0 else None
    remaining = max(known - read, 0) if known is not None else None
    percent = round(min(read / known, 1.0) * 100, 1) if known else (100.0 if known == 0 else None)
    eta: float | None = None
    eta_at: datetime | None = None
    if finished_at is None and remaining is not None:
        if remaining == 0:
            eta = 0.0
        elif rate is not None:
            eta = remaining / rate
        if eta is not None:
            eta_at = now + timedelta(seconds=eta)
    return Progress(
        elapsed_seconds=round(elapsed, 3),
        records_per_second=round(rate, 2) if rate is not None else None,
        api_calls_per_minute=round(calls, 2) if calls is not None else None,
        expected=known,
        remaining=remaining,
        percent=percent,
        eta_seconds=round(eta, 1) if eta is not None else None,
        eta_at=eta_at,
    )
