"""The stream cursor (app/sync/cursor.py): monotone advance, capped finalize, the lookback,
id order and the one JSON codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.crm.base import ReadFrom, StreamKey, id_order
from app.sync.cursor import (
    CursorState,
    StreamCursor,
    advance,
    checkpoint,
    decode,
    encode,
    finalize,
    open_cursor,
    position_key,
    read_from,
)

T = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RUN = T + timedelta(hours=1)
LAG = timedelta(minutes=1)
P = CursorState


def cursor(stored: CursorState | None = None) -> StreamCursor:
    return open_cursor(stored, started_at=RUN)


def step(c: StreamCursor, page: CursorState) -> StreamCursor:
    """A committed page ending at ``page`` (at/id None: the page does not say where)."""
    last = (page.at, page.id) if page.at is not None and page.id is not None else None
    return advance(c, last, page.resume)


@pytest.mark.parametrize(
    ("pages", "expected_at", "expected_id"),
    [
        ([P(T, "a")], T, "a"),
        ([P(T, "a"), P(T + S, "b")], T + S, "b"),
        ([P(T + S, "b"), P(T, "z")], T + S, "b"),  # never backwards
        ([P(T, "b"), P(T, "a")], T, "b"),  # tie on stamp: id decides
        ([P(T, "9"), P(T, "10")], T, "10"),  # numeric ids compare as numbers
        ([P(T, "a"), P(None, None)], T, "a"),
    ],
)
def test_advance_is_monotone(
    pages: list[CursorState], expected_at: datetime, expected_id: str
) -> None:
    c = cursor()
    for page in pages:
        c = step(c, page)
    assert c.current.at == expected_at
    assert c.current.id == expected_id


def test_advance_keeps_the_newest_resume_token_even_behind() -> None:
    c = cursor(P(T + S, "x"))
    c = step(c, P(T, "a", {"locator": "MTAw"}))  # lookback overlap page
    assert (c.current.at, c.current.id) == (T + S, "x")
    assert c.current.resume == {"locator": "MTAw"}


@pytest.mark.parametrize(
    ("stored", "pages", "expected"),
    [
        # nothing read: the stored bookmark stays
        (P(T, "a"), [], P(T, "a")),
        (None, [], P()),
        # progress below the cap is promoted as is
        (None, [P(T, "a", {"job": "750"})], P(T, "a")),
        # progress past run start - lag is capped, id cleared
        (None, [P(RUN - S, "z")], P(RUN - LAG, None)),
        (None, [P(RUN + S, "z")], P(RUN - LAG, None)),
        # exactly at the cap is allowed
        (None, [P(RUN - LAG, "q")], P(RUN - LAG, "q")),
        # a stored watermark past the cap (an older uncapped checkpoint) is not moved back
        (P(RUN, "s"), [P(T, "a")], P(RUN, "s")),
        # ... but one after the run's start was never read (a future --since): back to the cap
        (P(RUN + S, "s"), [], P(RUN - LAG, None)),
        (P(RUN + timedelta(days=900)), [P(T, "a")], P(RUN - LAG, None)),
    ],
)
def test_finalize(
    stored: CursorState | None, pages: list[CursorState], expected: CursorState
) -> None:
    c = cursor(stored)
    for page in pages:
        c = step(c, page)
    assert finalize(c, LAG) == expected


def test_checkpoint_keeps_the_resume_token() -> None:
    c = step(cursor(), P(RUN + S, "z", {"after": "200"}))
    assert checkpoint(c, LAG) == P(RUN - LAG, None, {"after": "200"}, in_progress=True)
    assert finalize(c, LAG).resume == {}


@pytest.mark.parametrize(
    ("bad", "call"),
    [
        (
            "naive start",
            lambda: open_cursor(None, started_at=datetime(2024, 1, 1)),
        ),
        ("negative lag", lambda: finalize(cursor(), -S)),
        ("negative lookback", lambda: read_from(P(T), -S)),
        ("naive record", lambda: position_key(datetime(2024, 1, 1), "a")),
        ("naive stored time", lambda: encode(P(datetime(2024, 1, 1)))),
    ],
)
def test_rejects(bad: str, call: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("stored", "lookback", "expected"),
    [
        (P(T, "a"), timedelta(minutes=5), ReadFrom(T - timedelta(minutes=5), (T, "a"))),
        (P(T, "a"), timedelta(0), ReadFrom(T, (T, "a"))),
        (P(T), timedelta(minutes=5), ReadFrom(T - timedelta(minutes=5), None)),  # capped: no id
        (P(T, "a", {"job": "750"}), S, ReadFrom(T - S, (T, "a"), {"job": "750"})),
        (P(), timedelta(minutes=5), ReadFrom()),
        (None, timedelta(minutes=5), ReadFrom()),
    ],
)
def test_read_from_applies_the_lookback(
    stored: CursorState | None, lookback: timedelta, expected: ReadFrom
) -> None:
    assert read_from(stored, lookback) == expected


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        ("a", "b"),
        ("9", "10"),  # HubSpot ids: shorter first is numeric order
        ("99", "100"),
        ("0015g00000AbCdEAAZ", "0015g00000abcdeAAZ"),  # Salesforce: case-sensitive order
        ("001A", "001a"),
        ("006000000000001AAA", "006000000000002AAA"),
    ],
)
def test_one_id_order_for_every_crm(smaller: str, larger: str) -> None:
    assert id_order(smaller) < id_order(larger)
    assert position_key(T, None) < position_key(T, smaller) < position_key(T, larger)
    assert position_key(None, None) < position_key(T - S, larger) < position_key(T, smaller)


def test_restart_after_kill_loses_and_duplicates_nothing() -> None:
    """Simulated stream of 7 records, 3 per page; killed after committing page 1."""
    records = [(T + i * S, f"id{i}") for i in range(7)]

    def pages(start: ReadFrom) -> list[list[StreamKey]]:
        """A keyset adapter: strictly after ``start.after`` (a restarted stream)."""
        after = position_key(*start.after) if start.after is not None else None
        rows = [r for r in records if after is None or position_key(*r) > after]
        return [rows[i : i + 3] for i in range(0, len(rows), 3)]

    committed: list[str] = []
    stored = P()
    c = cursor(stored)
    for n, page in enumerate(pages(read_from(stored, S))):
        if n == 1:
            break  # killed before page 2's commit
        committed += [rid for _, rid in page]
        c = advance(c, page[-1], {})
        stored = checkpoint(c, LAG)
    c = cursor(stored)
    for page in pages(read_from(stored, S)):
        committed += [rid for _, rid in page]
        c = advance(c, page[-1], {})
    assert committed == [rid for _, rid in records]
    assert finalize(c, LAG) == P(T + 6 * S, "id6")


@pytest.mark.parametrize(
    "state",
    [
        P(),
        P(T, "001A"),
        P(T, None, {"job": "750x", "locator": "MTAw"}),
        P(T.replace(microsecond=123000), "42", {"window": {"mode": "range"}}, in_progress=True),
        P(T, "a", generation=RUN, since=T - S, in_progress=True),
        P(T, "a", generation=RUN, completed_at=RUN + S),
    ],
)
def test_the_codec_round_trips(state: CursorState) -> None:
    assert decode(encode(state)) == state


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, P()),
        ({}, P()),
        ({"at": "2024-03-01T12:00:00", "id": 5}, P(T, "5")),  # naive: UTC
        ({"at": datetime(2024, 3, 1, 12), "id": "a"}, P(T, "a")),  # a naive SQLite column
        (
            {"in_progress": True, "resume": {"next_url": "/q/1"}},
            P(None, None, {"next_url": "/q/1"}, True),
        ),
        (
            {
                "v": 1,
                "generation": RUN.isoformat(),
                "since": None,
                "in_progress": False,
                "completed_at": (RUN + S).isoformat(),
            },
            P(generation=RUN, completed_at=RUN + S),
        ),
    ],
)
def test_the_codec_reads_what_was_stored_before(
    stored: dict[str, Any] | None, expected: CursorState
) -> None:
    assert decode(stored) == expected


def test_the_codec_writes_the_keys_stored_before() -> None:
    """No migration: a finished mark is {at, id, resume}; flags appear only when they say
    something; a backfill state carries its version and generation."""
    assert encode(P(T, "a")) == {"at": T.isoformat(), "id": "a", "resume": {}}
    assert encode(P(T, "a", {"k": 1}, in_progress=True))["in_progress"] is True
    backfill = encode(P(generation=RUN, completed_at=RUN + S))
    assert backfill == {
        "at": None,
        "id": None,
        "resume": {},
        "v": 1,
        "generation": RUN.isoformat(),
        "since": None,
        "in_progress": False,
        "completed_at": (RUN + S).isoformat(),
    }
