"""The read-ahead wrapper keeps order, bounds how far it reads, and surfaces errors in place."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from app.sync.prefetch import prefetch


def test_items_arrive_in_order() -> None:
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))


def test_depth_zero_is_the_plain_iterator() -> None:
    source = iter([1, 2])
    assert prefetch(source, depth=0) is source


def test_reads_at_most_depth_ahead() -> None:
    produced: list[int] = []
    gate = threading.Event()

    def source() -> Iterator[int]:
        for n in range(10):
            produced.append(n)
            yield n

    it = prefetch(source(), depth=1)
    assert next(it) == 0
    gate.wait(0.2)  # give the worker time to run ahead as far as it may
    # item 0 consumed, at most one waiting in the queue, one more blocked in put()
    assert len(produced) <= 3
    it.close()  # type: ignore[attr-defined]


def test_error_is_raised_where_the_page_would_arrive() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("reset mid-stream")

    it = prefetch(source(), depth=1)
    assert next(it) == 1
    assert next(it) == 2
    with pytest.raises(ConnectionError, match="reset mid-stream"):
        next(it)


def test_consumer_stopping_early_stops_the_worker() -> None:
    def source() -> Iterator[int]:
        n = 0
        while True:
            yield n
            n += 1

    it = prefetch(source(), depth=1)
    for n in it:
        if n == 3:
            break
    it.close()  # type: ignore[attr-defined]
    assert not any(t.name == "crmsync-prefetch" and t.is_alive() for t in threading.enumerate())
