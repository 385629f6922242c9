"""The stream cursor: one typed :class:`CursorState`, its JSON codec, and the pure arithmetic
of an incremental pull over (stamp, id) positions. No I/O.

A change stream (one CRM object, one ``stream``: ``changes`` or ``backfill``) is read oldest
first, ordered by the CRM's modification stamp and then the record id
(:func:`app.crm.base.id_order`). Where it stands is a :class:`CursorState`: ``at`` and ``id`` of
the last record committed, the adapter's ``resume`` token (a query locator, a Bulk job and
locator, a HubSpot search window), and for a backfill the generation it belongs to
(:mod:`app.sync.backfill`).

This module is the one place of the lookback and of the "never move backwards" rule: the
adapters only page (they get a :class:`~app.crm.base.ReadFrom` and report each page's last
(stamp, id)). Life of a cursor in one run (the engine does the I/O)::

    cursor = open_cursor(stored, started_at=run_start)
    start = read_from(stored, lookback)                       # lower = at - lookback
    for page in client.iter_changes(..., start):
        ...upsert page rows...
        cursor = advance(cursor, page.last, page.resume)
        store(checkpoint(cursor, lag))                          # same transaction as the rows
    store(finalize(cursor, lag))                                # after the last page committed

Knobs (all passed in; none is read from a clock or settings here):

``lookback`` (``timedelta``, ``CRMSYNC_SYNC__LOOKBACK_SECONDS``)
    How far behind the stored stamp a new run starts reading. Salesforce commits long
    transactions with stamps older than rows already visible, and HubSpot's search index lags
    (up to ~60 s): re-reading the overlap catches them. Overlap rows already stored come back as
    ``unchanged`` (upserts by CRM id), so the overlap costs reads, never duplicates.
``lag`` (``timedelta``)
    Safety margin for the bookmark itself, like singer-sdk's signpost: the stored ``at`` never
    exceeds ``started_at - lag``. Records written while the run was reading (and not yet
    visible to it) therefore fall after the bookmark and are read by the next run.

Boundary semantics (dlt ``Incremental`` style):

* Order is ``(at, id)`` with :func:`~app.crm.base.id_order`; ``id=None`` sorts before every id
  at the same stamp, and ``at=None`` (never synced) before everything.
* :func:`read_from` is inclusive (``>=``): ``at - lookback``, or None (read everything); it
  carries ``(at, id)`` as ``after`` so an adapter can restart a broken stream by keyset.
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

Stored form (:func:`encode` / :func:`decode`, the only JSON codec of a cursor): ``sync_runs``
keeps it whole in ``cursor_from``/``cursor_to``; ``sync_cursors`` keeps ``at``/``id`` in its
``watermark_at``/``watermark_id`` columns and the rest in ``state``. Keys appear only when they
say something, so the JSON is the one stored before this type existed (no migration)::

    {"at": "<ISO>" | null, "id": "..." | null, "resume": {...}}           # always
    "in_progress": true                                                  # between pages
    "v": 1, "generation": "<ISO>", "since": "<ISO>" | null,              # a backfill's part
    "in_progress": bool, "completed_at": "<ISO>"                         #   of a generation
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from app.crm.base import ReadFrom, StreamKey, id_order

STATE_VERSION = 1


@dataclass(frozen=True)
class CursorState:
    """Where a stream stands, as stored.

    ``at``/``id``: (stamp, id) of the last record committed (None: never synced).
    ``resume``: the adapter's token to continue an interrupted stream (empty: from ``at``).
    ``in_progress``: a pass is between pages (or a backfill object is pending).
    ``generation``/``since``: the backfill generation the state belongs to (its start time
    and ``--since``); None outside backfills and for states written before generations.
    ``completed_at``: when the object finished its backfill generation.
    """

    at: datetime | None = None
    id: str | None = None
    resume: Mapping[str, Any] = field(default_factory=dict)
    in_progress: bool = False
    generation: datetime | None = None
    since: datetime | None = None
    completed_at: datetime | None = None

    @property
    def key(self) -> StreamKey | None:
        """(at, id) when both are known: where a restarted stream continues strictly after."""
        if self.at is None or self.id is None:
            return None
        return (self.at, self.id)

    def mark(self) -> CursorState:
        """Only the position (at, id, resume): what a run reports and a stream starts from."""
        return CursorState(self.at, self.id, dict(self.resume))


def _iso(value: datetime) -> str:
    return _require_aware(value, "cursor time").astimezone(UTC).isoformat()


def _time(value: Any) -> datetime | None:
    """A stored time: ISO text or a datetime; naive values (SQLite) read as UTC."""
    if value is None or value == "":
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def encode(cursor: CursorState) -> dict[str, Any]:
    """The cursor as JSON (see the module docstring for the keys)."""
    data: dict[str, Any] = {
        "at": _iso(cursor.at) if cursor.at is not None else None,
        "id": cursor.id,
        "resume": dict(cursor.resume),
    }
    if cursor.generation is not None:
        data["v"] = STATE_VERSION
        data["generation"] = _iso(cursor.generation)
        data["since"] = _iso(cursor.since) if cursor.since is not None else None
        data["in_progress"] = cursor.in_progress
    elif cursor.in_progress:
        data["in_progress"] = True
    if cursor.completed_at is not None:
        data["completed_at"] = _iso(cursor.completed_at)
    return data


def decode(data: Mapping[str, Any] | None) -> CursorState:
    """Read :func:`encode` output, or any older stored state: missing keys read as empty."""
    if not data:
        return CursorState()
    raw_id = data.get("id")
    return CursorState(
        at=_time(data.get("at")),
        id=str(raw_id) if raw_id is not None else None,
        resume=dict(data.get("resume") or {}),
        in_progress=bool(data.get("in_progress", False)),
        generation=_time(data.get("generation")),
        since=_time(data.get("since")),
        completed_at=_time(data.get("completed_at")),
    )


@dataclass(frozen=True)
class StreamCursor:
    """One stream's cursor during a run.

    ``watermark``: the position stored when the run began (empty if never synced).
    ``progress``: the furthest committed page position of this run (None before the first page).
    ``started_at``: when the run began (before its first query): the bookmark's cap.
    """

    watermark: CursorState
    started_at: datetime
    progress: CursorState | None = None

    @property
    def current(self) -> CursorState:
        """The furthest position known: the progress, or the watermark before any page."""
        return self.progress if self.progress is not None else self.watermark


def _require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value


def open_cursor(stored: CursorState | None, *, started_at: datetime) -> StreamCursor:
    """A cursor at the start of a run, from the stored position (None: never synced)."""
    _require_aware(started_at, "started_at")
    return StreamCursor((stored or CursorState()).mark(), started_at)


def read_from(stored: CursorState | None, lookback: timedelta) -> ReadFrom:
    """Where the adapter reads from: ``at - lookback`` (inclusive), the last committed
    (stamp, id) for a keyset restart, and the stored resume token."""
    if lookback < timedelta(0):
        raise ValueError("lookback must not be negative")
    if stored is None:
        return ReadFrom()
    lower = _require_aware(stored.at, "at") - lookback if stored.at is not None else None
    return ReadFrom(lower=lower, after=stored.key, resume=dict(stored.resume))


def position_key(at: datetime | None, record_id: str | None) -> tuple[Any, ...]:
    """Sort key of (stamp, id) in stream order; ``at=None`` sorts first, ``id=None`` before
    every id at its stamp."""
    if at is None:
        return (0, datetime.min.replace(tzinfo=UTC), (0, ""))
    ident = (0, "") if record_id is None else (1, *id_order(record_id))
    return (1, _require_aware(at, "at").astimezone(UTC), ident)


def advance(
    cursor: StreamCursor, last: StreamKey | None, resume: Mapping[str, Any]
) -> StreamCursor:
    """Record a committed page that read up to ``last`` (None: the page does not say).
    Monotone in (at, id); the page's resume token is kept."""
    current = cursor.current
    at, record_id = current.at, current.id
    if last is not None and position_key(*last) >= position_key(at, record_id):
        at, record_id = last
    return replace(cursor, progress=CursorState(at, record_id, dict(resume)))


def _capped(cursor: StreamCursor, lag: timedelta) -> CursorState:
    start = cursor.started_at
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
    return CursorState(at, record_id, dict(current.resume))


def checkpoint(cursor: StreamCursor, lag: timedelta) -> CursorState:
    """The position to store with a committed page: capped progress, resume token kept, marked
    in progress."""
    return replace(_capped(cursor, lag), in_progress=True)


def finalize(cursor: StreamCursor, lag: timedelta) -> CursorState:
    """The bookmark to store when the stream is done: progress capped at
    ``started_at - lag``, never behind the watermark, resume token cleared."""
    return replace(_capped(cursor, lag), resume={})
