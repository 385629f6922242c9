"""The lease a pass holds while it runs, kept alive by a heartbeat thread.

A lease has a short TTL (``CRMSYNC_SYNC__LEASE_SECONDS``, 60 s), so a pass killed on another
host blocks the next one for at most that long (one killed on this host not at all: see
:mod:`app.sync.holder`). A live pass must therefore renew it however long one step takes (a
page, a Bulk job wait, the adapter's retries): a daemon thread renews it, and beats the run's
``heartbeat_at``, every third of the TTL, through the store's own connection, independently of
the main thread. The page commit still renews it in its transaction as a fencing check, so a
pass that lost its lease (stalled past the TTL and taken over) stops without writing.

Usage (push, recompute and webhooks are meant to share it)::

    scope = RunScope.acquire(store, "sync:salesforce:Account", holder, ttl)  # or LeaseHeldError
    with scope:  # heartbeat running; stopped and the lease released on exit
        run_id = store.start_run(...)
        scope.watch(run_id)
"""

from __future__ import annotations

import threading
from datetime import timedelta
from types import TracebackType

from app.logging import get_logger
from app.sync.ports import SyncStore

log = get_logger("crmsync.sync.lease")


class Heartbeat:
    """Renews a lease (and beats a run) every ``interval`` seconds until stopped."""

    def __init__(
        self, store: SyncStore, name: str, holder: str, ttl: timedelta, interval: float
    ) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.interval = interval
        self.run_id: int | None = None
        self.beats = 0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crmsync-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, self.interval))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                held = self.store.heartbeat(self.name, self.holder, self.ttl, self.run_id)
            except Exception as exc:  # a database blip: the next beat tries again
                log.warning("sync.lease.heartbeat_failed", lease=self.name, error=str(exc))
                continue
            self.beats += 1
            if not held:
                # Stalled past the TTL and taken over: the next page commit's fencing check
                # stops the pass; beating on would only fight the new holder.
                self.lost.set()
                log.warning("sync.lease.lost", lease=self.name, holder=self.holder)
                return


class RunScope:
    """A held lease with its heartbeat; use :meth:`acquire`, then ``with scope:``."""

    def __init__(
        self, store: SyncStore, name: str, holder: str, ttl: timedelta, previous: str | None
    ) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.previous = previous  # the expired or dead holder we took the lease from, if any
        self.heartbeat = Heartbeat(store, name, holder, ttl, ttl.total_seconds() / 3)

    @classmethod
    def acquire(cls, store: SyncStore, name: str, holder: str, ttl: timedelta) -> RunScope:
        """Take the lease (raises :class:`~app.sync.ports.LeaseHeldError` when it is held)."""
        previous = store.acquire_lease(name, holder, ttl)
        if previous is not None:
            log.info("sync.lease.taken_over", lease=name, holder=holder, previous=previous)
        return cls(store, name, holder, ttl, previous)

    def watch(self, run_id: int) -> None:
        """Beat this run's ``heartbeat_at`` along with the lease."""
        self.heartbeat.run_id = run_id

    def __enter__(self) -> RunScope:
        self.heartbeat.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.heartbeat.stop()
        try:
            self.store.release_lease(self.name, self.holder)
        except Exception as error:  # do not hide the pass's own outcome behind this
            # The lease then expires, or is taken over at once once this process has exited.
            log.warning("sync.lease.release_failed", lease=self.name, error=str(error))
