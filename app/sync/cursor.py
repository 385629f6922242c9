"""Cursor arithmetic for incremental pulls: pure functions over (stamp, id) positions.

A change stream (one CRM object, one ``stream``: ``changes``, ``deletes`` or ``backfill``) is
read oldest first, ordered by the CRM's modification stamp and then the record id
(``SystemModstamp, Id``; ``hs_lastmodifieddate, hs_object_id``). Where it stands is an
:class:`app.crm.base.Position`: ``at`` and ``id`` of the last record committed, plus the adapter's
``resume`` token (a Bulk job id and locator, a HubSpot search window).

Life of a cursor in one run (the engine does the I/O; everything here is pure)::

    cursor = open_cursor("salesforce", "Account", "changes", stored, started_at=run_start)
    since = query_lower_bound(cursor.watermark, lookback)      # at - lookback (overlap)
    for page in client.iter_changes(..., since=...):
        ...upsert page rows...
        cursor = advance(cursor, page.position)
        store(checkpoint(cursor, run_start, lag))               # same transaction as the rows
    store(finalize(cursor, run_start, lag))                     # after the last page committed

Knobs (all passed in; none is read from a clock or settings here):

``lookback`` (``timedelta``, ``CRMSYNC_SYNC__LOOKBACK_SECONDS``)
    How far behind the stored stamp a new run starts reading. Salesforce commits long
    transactions with stamps older than rows already visible, and HubSpot's search index lags
    (up to ~60 s): re-reading the overlap catches them. Overlap rows already stored come back as
    ``unchanged`` (upserts by CRM id), so the overlap costs reads, never duplicates.
``lag`` (``timedelta``)
    Safety margin for the bookmark itself, like singer-sdk's signpost: the stored ``at`` never
    exceeds ``run_started_at - lag``. Records written while the run was reading (and not yet
    visible to it) therefore fall after the bookmark and are read by the next run.
``run_started_at`` (aware ``datetime``)
    When the run began (before its first query).

Boundary semantics (dlt ``Incremental`` style):

* Order is ``(at, id)``; ids that are all digits (HubSpot) compare as numbers, others as
  strings (Salesforce, whose ``ORDER BY Id`` the adapter uses). ``id=None`` sorts before every id
  at the same stamp, and ``at=None`` (never synced) before everything.
* :func:`is_after` is **strictly** after (an open lower bound): a record equal to the position
  was committed already. Use it to drop the already-committed head when resuming exactly at a
  position; it must not be used to drop the lookback overlap (late rows have older stamps).
* :func:`query_lower_bound` is inclusive (``>=``): ``at - lookback``, or None (read everything).
* :func:`advance` is monotone: the progress never moves backwards, whatever order pages come
  in (the lookback overlap yields pages behind the watermark). The resume token is always the
  newest page's, since it says how to continue the stream being read.
* :func:`checkpoint` is what to store with each committed page: the progress capped as in
  :func:`finalize`, with the resume token kept, so a run killed after any commit restarts from
  the last committed page (via the token, or from ``at``/``id`` minus the lookback) and loses
  nothing; a run killed before a commit re-reads that page, and the upsert makes it idempotent.
* :func:`finalize` is what to store once the stream is exhausted: the capped progress with the
  resume token cleared. A capped position has ``id=None`` (everything at the cap is re-read).
  Neither returns a position behind the stored watermark, nor past the run's start: a
  watermark already past the start (stored by an older version from a future ``--since``) is
  brought back to the cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from app.crm.base import Position

STATE_VERSION = 1


@dataclass(frozen=True)
class StreamCursor:
    """One stream's cursor during a run.

    ``watermark``: the position stored when the run began (``Position()`` if never synced).
    ``progress``: the furthest committed page position of this run (None before the first page).
    ``started_at``: when the run began; the default ``run_started_at`` of finalize/checkpoint.
    """

    crm: str
    object: str
    stream: str
    watermark: Position
    started_at: datetime
    progress: Position | None = None

    @property
    def current(self) -> Position:
        """The furthest position known: the progress, or the watermark before any page."""
        return self.progress if self.progress is not None else self.watermark


def _require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value


def open_cursor(
    crm: str, object: str, stream: str, stored: Position | None, *, started_at: datetime
) -> StreamCursor:
    """A cursor at the start of a run, from the stored position (None: never synced)."""
    _require_aware(started_at, "started_at")
    return StreamCursor(crm, object, stream, stored or Position(), started_at)


def _id_key(record_id: str | None) -> tuple[int, int, str]:
    if record_id is None:
        return (0, 0, "")
    if record_id.isdigit():
        return (1, int(record_id), record_id)
    return (2, 0, record_id)


def position_key(at: datetime | None, record_id: str | None) -> tuple[Any, ...]:
    """Sort key of (stamp, id) in stream order; ``at=None`` sorts first."""
    if at is None:
        return (0, datetime.min.replace(tzinfo=UTC), _id_key(None))
    return (1, _require_aware(at, "at").astimezone(UTC), _id_key(record_id))


def is_after(record_at: datetime, record_id: str | None, position: Position | None) -> bool:
    """Whether a record lies strictly after ``position`` in (stamp, id) order."""
    if position is None or position.at is None:
        return True
    return position_key(record_at, record_id) > position_key(position.at, position.id)


def advance(cursor: StreamCursor, page_position: Position) -> StreamCursor:
    """Record a committed page. Monotone in (at, id); the page's resume token is kept."""
    current = cursor.current
    if position_key(page_position.at, page_position.id) >= position_key(current.at, current.id):
        at, record_id = page_position.at, page_position.id
    else:
        at, record_id = current.at, current.id
    return replace(cursor, progress=Position(at, record_id, dict(page_position.resume)))


def _capped(cursor: StreamCursor, run_started_at: datetime | None, lag: timedelta) -> Position:
    start = _require_aware(run_started_at or cursor.started_at, "run_started_at")
    if lag < timedelta(0):
        raise ValueError("lag must not be negative")
    cap = start - lag
    current = cursor.current
    at, record_id = current.at, current.id
    if at is not None and at > cap:
        at, record_id = cap, None
    # Never behind the stored watermark (a previous run may have stored an uncapped position),
    # unless that watermark lies after this run's start: no stamp read so far can be from the
    # future, so such a mark (a backfill --since 2030) is pulled back to the cap, not kept.
    stored = cursor.watermark
    stored_is_past = stored.at is None or stored.at <= start
    if stored_is_past and position_key(at, record_id) < position_key(stored.at, stored.id):
        at, record_id = stored.at, stored.id
    return Position(at, record_id, dict(current.resume))


def checkpoint(cursor: StreamCursor, run_started_at: datetime | None, lag: timedelta) -> Position:
    """The position to store with a committed page: capped progress, resume token kept."""
    return _capped(cursor, run_started_at, lag)


def finalize(cursor: StreamCursor, run_started_at: datetime | None, lag: timedelta) -> Position:
    """The bookmark to store when the stream is done: progress capped at
    ``run_started_at - lag``, never behind the watermark, resume token cleared."""
    position = _capped(cursor, run_started_at, lag)
    return Position(position.at, position.id, {})


def query_lower_bound(position: Position | None, lookback: timedelta) -> datetime | None:
    """The stamp to read from (inclusive): ``at - lookback``; None to read everything."""
    if lookback < timedelta(0):
        raise ValueError("lookback must not be negative")
    if position is None or position.at is None:
        return None
    return _require_aware(position.at, "position.at") - lookback


# --------------------------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------------------------


def to_json(position: Position) -> dict[str, Any]:
    """A JSON-able form (``sync_runs.cursor_from``/``cursor_to``)."""
    return {
        "v": STATE_VERSION,
        "at": position.at.astimezone(UTC).isoformat() if position.at else None,
        "id": position.id,
        "resume": dict(position.resume),
    }


def from_json(data: Mapping[str, Any] | None) -> Position:
    """Read :func:`to_json` output; missing keys read as empty (older states stay readable)."""
    if not data:
        return Position()
    raw_at = data.get("at")
    at = None
    if raw_at:
        at = datetime.fromisoformat(str(raw_at))
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    raw_id = data.get("id")
    resume = data.get("resume") or {}
    return Position(at, str(raw_id) if raw_id is not None else None, dict(resume))


@dataclass(frozen=True)
class CursorColumns:
    """A position as the ``sync_cursors`` columns ``watermark_at``, ``watermark_id``, ``state``."""

    watermark_at: datetime | None
    watermark_id: str | None
    state: dict[str, Any]


def to_columns(position: Position) -> CursorColumns:
    """Split a position into ``sync_cursors`` columns (``state`` holds the resume token)."""
    return CursorColumns(
        position.at, position.id, {"v": STATE_VERSION, "resume": dict(position.resume)}
    )


def from_columns(
    watermark_at: datetime | None, watermark_id: str | None, state: Mapping[str, Any] | None
) -> Position:
    """A position from ``sync_cursors`` columns (naive stamps read as UTC)."""
    at = watermark_at
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    resume = (state or {}).get("resume") or {}
    return Position(at, watermark_id, dict(resume))
