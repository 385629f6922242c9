"""Cursor arithmetic (app/sync/cursor.py): monotone advance, capped finalize, boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.crm.base import Position
from app.sync.cursor import (
    StreamCursor,
    advance,
    checkpoint,
    finalize,
    from_columns,
    from_json,
    is_after,
    open_cursor,
    query_lower_bound,
    to_columns,
    to_json,
)

T = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RUN = T + timedelta(hours=1)
LAG = timedelta(minutes=1)


def cursor(stored: Position | None = None) -> StreamCursor:
    return open_cursor("salesforce", "Account", "changes", stored, started_at=RUN)


@pytest.mark.parametrize(
    ("pages", "expected_at", "expected_id"),
    [
        ([Position(T, "a")], T, "a"),
        ([Position(T, "a"), Position(T + S, "b")], T + S, "b"),
        ([Position(T + S, "b"), Position(T, "z")], T + S, "b"),  # never backwards
        ([Position(T, "b"), Position(T, "a")], T, "b"),  # tie on stamp: id decides
        ([Position(T, "9"), Position(T, "10")], T, "10"),  # numeric ids compare as numbers
        ([Position(T, "a"), Position(None, None)], T, "a"),
    ],
)
def test_advance_is_monotone(
    pages: list[Position], expected_at: datetime, expected_id: str
) -> None:
    c = cursor()
    for page in pages:
        c = advance(c, page)
    assert c.current.at == expected_at
    assert c.current.id == expected_id


def test_advance_keeps_the_newest_resume_token_even_behind() -> None:
    c = cursor(Position(T + S, "x"))
    c = advance(c, Position(T, "a", {"locator": "MTAw"}))  # lookback overlap page
    assert (c.current.at, c.current.id) == (T + S, "x")
    assert c.current.resume == {"locator": "MTAw"}


@pytest.mark.parametrize(
    ("stored", "pages", "expected"),
    [
        # nothing read: the stored bookmark stays
        (Position(T, "a"), [], Position(T, "a")),
        (None, [], Position()),
        # progress below the cap is promoted as is
        (None, [Position(T, "a", {"job": "750"})], Position(T, "a")),
        # progress past run start - lag is capped, id cleared
        (None, [Position(RUN - S, "z")], Position(RUN - LAG, None)),
        (None, [Position(RUN + S, "z")], Position(RUN - LAG, None)),
        # exactly at the cap is allowed
        (None, [Position(RUN - LAG, "q")], Position(RUN - LAG, "q")),
        # a stored watermark past the cap (an older uncapped checkpoint) is not moved back
        (Position(RUN, "s"), [Position(T, "a")], Position(RUN, "s")),
        # ... but one after the run's start was never read (a future --since): back to the cap
        (Position(RUN + S, "s"), [], Position(RUN - LAG, None)),
        (Position(RUN + timedelta(days=900)), [Position(T, "a")], Position(RUN - LAG, None)),
    ],
)
def test_finalize(stored: Position | None, pages: list[Position], expected: Position) -> None:
    c = cursor(stored)
    for page in pages:
        c = advance(c, page)
    assert finalize(c, RUN, LAG) == expected
    assert finalize(c, None, LAG) == expected  # defaults to cursor.started_at


def test_checkpoint_keeps_the_resume_token() -> None:
    c = advance(cursor(), Position(RUN + S, "z", {"after": "200"}))
    assert checkpoint(c, RUN, LAG) == Position(RUN - LAG, None, {"after": "200"})
    assert finalize(c, RUN, LAG).resume == {}


@pytest.mark.parametrize(
    ("bad", "call"),
    [
        (
            "naive start",
            lambda: open_cursor(
                "hubspot", "deals", "changes", None, started_at=datetime(2024, 1, 1)
            ),
        ),
        ("negative lag", lambda: finalize(cursor(), RUN, -S)),
        ("negative lookback", lambda: query_lower_bound(Position(T), -S)),
        ("naive record", lambda: is_after(datetime(2024, 1, 1), "a", Position(T, "a"))),
    ],
)
def test_rejects(bad: str, call: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("position", "lookback", "expected"),
    [
        (Position(T, "a"), timedelta(minutes=5), T - timedelta(minutes=5)),
        (Position(T, "a"), timedelta(0), T),
        (Position(), timedelta(minutes=5), None),
        (None, timedelta(minutes=5), None),
    ],
)
def test_query_lower_bound(
    position: Position | None, lookback: timedelta, expected: datetime | None
) -> None:
    assert query_lower_bound(position, lookback) == expected


@pytest.mark.parametrize(
    ("record_at", "record_id", "position", "expected"),
    [
        (T, "b", Position(T, "a"), True),
        (T, "a", Position(T, "a"), False),  # equal: already committed
        (T, "a", Position(T, "b"), False),
        (T + S, "a", Position(T, "z"), True),
        (T - S, "z", Position(T, "a"), False),
        (T, "a", Position(T, None), True),  # id None: before every id at that stamp
        (T, "10", Position(T, "9"), True),  # HubSpot numeric ids
        (T, "9", Position(T, "10"), False),
        (T, "a", Position(), True),
        (T, "a", None, True),
        (
            T.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")),
            "a",
            Position(T, "a"),
            False,
        ),
    ],
)
def test_is_after(
    record_at: datetime, record_id: str, position: Position | None, expected: bool
) -> None:
    assert is_after(record_at, record_id, position) is expected


def test_restart_after_kill_loses_and_duplicates_nothing() -> None:
    """Simulated stream of 7 records, 3 per page; killed after committing page 1."""
    records = [(T + i * S, f"id{i}") for i in range(7)]

    def pages(since: Position) -> list[list[tuple[datetime, str]]]:
        rows = [r for r in records if is_after(r[0], r[1], since)]
        return [rows[i : i + 3] for i in range(0, len(rows), 3)]

    committed: list[str] = []
    stored = Position()
    c = cursor(stored)
    for n, page in enumerate(pages(stored)):
        if n == 1:
            break  # killed before page 2's commit
        committed += [rid for _, rid in page]
        c = advance(c, Position(page[-1][0], page[-1][1]))
        stored = checkpoint(c, RUN, LAG)
    c = cursor(stored)
    for page in pages(stored):
        committed += [rid for _, rid in page]
        c = advance(c, Position(page[-1][0], page[-1][1]))
    assert committed == [rid for _, rid in records]
    assert finalize(c, RUN, LAG) == Position(T + 6 * S, "id6")


@pytest.mark.parametrize(
    "position",
    [
        Position(),
        Position(T, "001A"),
        Position(T, None, {"job": "750x", "locator": "MTAw"}),
        Position(T.replace(microsecond=123000), "42", {"window": [1, 2]}),
    ],
)
def test_storage_round_trips(position: Position) -> None:
    assert from_json(to_json(position)) == position
    cols = to_columns(position)
    assert from_columns(cols.watermark_at, cols.watermark_id, cols.state) == position


def test_storage_reads_old_or_empty_state() -> None:
    assert from_json(None) == Position()
    assert from_json({"at": "2024-03-01T12:00:00", "id": 5}) == Position(T, "5")
    assert from_columns(datetime(2024, 3, 1, 12), "a", None) == Position(T, "a")
