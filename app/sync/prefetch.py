"""Read ahead one page of a CRM stream while the current page is mapped and committed.

A CRM builds the next page on its own servers while crmsync maps and writes the current one;
doing the two in sequence leaves both sides idle half the time. :func:`prefetch` runs the
adapter's iterator in a worker thread with a bounded queue (``depth`` pages ahead), so memory
stays bounded and pages still arrive, and are committed, strictly in order.

Correctness does not depend on it: a page fetched but not yet committed when the process dies
is simply read again on restart, because the cursor only moves with a commit. Errors raised by
the adapter are re-raised in the consumer at the point the page would have arrived.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    """Marks the end of the stream in the queue."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Prefetcher(Generic[T]):
    def __init__(self, source: Iterator[T], depth: int) -> None:
        self._source = source
        self._queue: queue.Queue[T | _End | _Failure] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="crmsync-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: T | _End | _Failure) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as exc:  # re-raised in the consumer
            self._put(_Failure(exc))

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def prefetch(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Iterate ``source`` with up to ``depth`` items fetched ahead in a worker thread."""
    if depth <= 0:
        return source
    return iter(_Prefetcher(source, depth))
