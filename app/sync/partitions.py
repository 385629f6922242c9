"""Partitions of a backfill: half-open stamp ranges that cover it exactly. Pure, no I/O.

A partitioned backfill (``docs/adr/0008-partitioned-backfill.md``) splits one object's backfill
into ``n`` ranges of the modification stamp (Salesforce ``SystemModstamp``, HubSpot
``hs_lastmodifieddate``) that different workers read at once, each as its own child run with its
own lease (``sync:<crm>:<object>:p<i>``) and its own checkpoint (``sync_cursors`` stream
``backfill:p<i>``)::

    [since, b1)  [b1, b2)  ...  [b(n-1), None)

* The first partition starts at the backfill's ``since`` (None: everything), the last has no
  upper bound, so together they read exactly what one unpartitioned backfill reads, whatever
  the counts said: a record lies in exactly one range (``lower <= stamp < upper``), and the
  boundaries are whole seconds (Salesforce stamps have 1 s precision and SOQL datetime
  literals have none finer; HubSpot's millisecond stamps sit inside them).
* A record modified while the backfill runs gets a stamp after the plan's time, so it moves
  into the last (open) partition or out of every closed one; it can be read twice (its old
  version by its old partition, the new one by the last), and the upsert on the CRM id with the
  stale-replay check (ADR 0001) keeps one row, the newest.
* Boundaries are placed by record count, not by time, so skewed data (a mass update that
  stamped half the org in one hour) still splits evenly: :func:`plan_partitions` bisects the
  time axis with a ``count(t)`` callable (records in ``[since, t)``, one CRM count call each),
  stopping within ``tolerance`` of the target or at one second. The probe count is bounded.

Nothing here reads a clock, a CRM or a database: the caller passes ``count`` and ``until``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.crm.base import ReadFrom

#: Where the bisection starts when the backfill has no ``since``: before any CRM record.
FLOOR = datetime(1990, 1, 1, tzinfo=UTC)
#: At most this many partitions (and child runs, leases and streams) per backfill.
MAX_PARTITIONS = 16
#: Probes (count calls) per boundary at most; 40 halvings of 37 years is far below a second.
MAX_PROBES = 40

KIND_PREFIX = "backfill:p"
STREAM_PREFIX = "backfill:p"


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count``: records with ``lower <= stamp < upper`` (None: open)."""

    index: int
    count: int
    lower: datetime | None
    upper: datetime | None

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition index {self.index} outside 0..{self.count - 1}")
        for name in ("lower", "upper"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"partition {name} must be timezone-aware")
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"empty partition [{self.lower}, {self.upper})")

    @property
    def kind(self) -> str:
        """The ``sync_runs.kind`` of its child runs (``backfill:p0``): one (kind, CRM, object)
        per partition, so the queue's dedupe, the sweeper and abandoned-run repair keep apart
        the partitions of one object."""
        return f"{KIND_PREFIX}{self.index}"

    @property
    def stream(self) -> str:
        """Its checkpoint: the ``sync_cursors`` stream ``backfill:p<i>``."""
        return f"{STREAM_PREFIX}{self.index}"

    @property
    def reads_deletes(self) -> bool:
        """Only the first partition lists deletes the change stream does not show (HubSpot's
        archived list is not ordered by stamp, so it cannot be split; it is read once)."""
        return self.index == 0

    def contains(self, stamp: datetime) -> bool:
        return (self.lower is None or stamp >= self.lower) and (
            self.upper is None or stamp < self.upper
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "count": self.count,
            "lower": self.lower.isoformat() if self.lower is not None else None,
            "upper": self.upper.isoformat() if self.upper is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Partition:
        return cls(
            int(data["index"]),
            int(data["count"]),
            _time(data.get("lower")),
            _time(data.get("upper")),
        )


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def is_partition_kind(kind: str) -> bool:
    return kind.startswith(KIND_PREFIX) and kind[len(KIND_PREFIX) :].isdigit()


def stream_index(stream: str) -> int | None:
    """The partition index of checkpoint stream ``backfill:p<i>`` (None: not a partition's, or
    an index no plan makes)."""
    digits = stream[len(STREAM_PREFIX) :] if stream.startswith(STREAM_PREFIX) else ""
    if not digits.isdigit() or str(int(digits)) != digits:
        return None
    index = int(digits)
    return index if index < MAX_PARTITIONS else None


def _second(value: datetime) -> datetime:
    """``value`` floored to a whole second (UTC)."""
    return value.astimezone(UTC).replace(microsecond=0)


def from_bounds(since: datetime | None, bounds: Sequence[datetime]) -> list[Partition]:
    """The partitions cut at ``bounds`` (strictly increasing, after ``since``)."""
    edges: list[datetime | None] = [since, *bounds, None]
    n = len(bounds) + 1
    return [Partition(i, n, edges[i], edges[i + 1]) for i in range(n)]


def plan_partitions(
    n: int,
    *,
    since: datetime | None,
    until: datetime,
    count: Callable[[datetime], int],
    tolerance: float = 0.02,
    min_records: int = 1,
) -> list[Partition]:
    """Up to ``n`` partitions of the backfill from ``since``, balanced by record count.

    ``count(t)``: how many records have ``since <= stamp < t`` (a CRM count call).
    ``until``: the plan's time; boundaries lie in ``(since, until]``, the last partition stays
    open after it. Fewer partitions come back when the records cannot be split further (fewer
    than ``n * min_records`` records, or a single second holding most of them): a boundary that
    would repeat its predecessor is dropped, never an empty range made.
    """
    if not 1 <= n <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}, got {n}")
    if until.tzinfo is None or (since is not None and since.tzinfo is None):
        raise ValueError("since and until must be timezone-aware")
    low = _second(since) if since is not None else FLOOR
    if since is not None and low < since:
        low += timedelta(seconds=1)  # a boundary must lie strictly after since
    high = _second(until) + timedelta(seconds=1)
    if n == 1 or high <= low:
        return from_bounds(since, [])
    total = count(high)
    if total < max(1, n * min_records):
        return from_bounds(since, [])
    slack = max(0, int(total * tolerance / n))
    bounds: list[datetime] = []
    start = low
    for k in range(1, n):
        target = total * k // n
        found, below = _bisect(count, start, high, total, target, slack)
        if found <= start or below >= total:
            break  # nothing would be left for the partitions after it
        bounds.append(found)
        start = found
    return from_bounds(since, bounds)


def _bisect(
    count: Callable[[datetime], int],
    low: datetime,
    high: datetime,
    total: int,
    target: int,
    slack: int,
) -> tuple[datetime, int]:
    """The first whole second ``t`` in ``(low, high]`` with ``count(t) >= target - slack``
    (stopping early at one within ``slack`` of ``target``), and ``count(t)``."""
    lo, hi, hi_count = low, high, total  # count(lo) < target - slack <= count(hi)
    for _ in range(MAX_PROBES):
        if hi - lo <= timedelta(seconds=1):
            break
        mid = _second(lo + (hi - lo) / 2)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        seen = count(mid)
        if abs(seen - target) <= slack:
            return mid, seen
        if seen < target:
            lo = mid
        else:
            hi, hi_count = mid, seen
    return hi, hi_count


def bounded(read_from: ReadFrom, partition: Partition) -> ReadFrom:
    """``read_from`` kept inside ``partition``: the lower bound never before the partition's
    (the lookback of a resumed partition must not re-read its neighbour), the partition's upper
    bound added."""
    lower = read_from.lower
    if partition.lower is not None and (lower is None or lower < partition.lower):
        lower = partition.lower
    return ReadFrom(
        lower=lower, after=read_from.after, resume=read_from.resume, upper=partition.upper
    )


def check_cover(partitions: Sequence[Partition], since: datetime | None) -> None:
    """Raise ``ValueError`` unless ``partitions`` cover ``[since, +inf)`` exactly, in order."""
    if not partitions:
        raise ValueError("no partitions")
    if partitions[0].lower != since or partitions[-1].upper is not None:
        raise ValueError("partitions do not span the backfill")
    for i, (a, b) in enumerate(itertools.pairwise(partitions)):
        if a.upper is None or a.upper != b.lower:
            raise ValueError(f"partitions {i} and {i + 1} are not adjacent")
    if [p.index for p in partitions] != list(range(len(partitions))):
        raise ValueError("partition indexes are not 0..n-1")
