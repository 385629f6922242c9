"""The sandbox clock: every stamp an emulator writes comes from here, so tests can freeze time.

Real CRMs stamp records with server time; tests need "many records share one second" and
"this change happened before that one" without sleeping. The clock is wall-clock UTC plus an
offset, or a frozen instant. Unfrozen stamps never go backwards (a floor of the last stamp), so
an emulator's modification stamps are non-decreasing even if the host clock steps back.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["Clock"]


class Clock:
    """Aware-UTC time source shared by both emulators; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime | None = None
        self._offset = timedelta(0)
        self._last: datetime | None = None

    def now(self) -> datetime:
        """The current sandbox time (aware UTC), never earlier than the previous unfrozen stamp."""
        with self._lock:
            if self._frozen is not None:
                stamp = self._frozen
            else:
                stamp = datetime.now(UTC) + self._offset
                if self._last is not None and stamp < self._last:
                    stamp = self._last
            self._last = stamp
            return stamp

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen is not None

    def freeze(self, at: datetime | None = None) -> datetime:
        """Stop time at ``at`` (default: now). Freezing in the past is allowed on purpose: it is
        how a test writes a 'late commit' whose stamp is older than rows already written."""
        if at is not None and at.tzinfo is None:
            raise ValueError("Clock.freeze needs an aware datetime (UTC)")
        with self._lock:
            if at is None:
                at = self._frozen or (datetime.now(UTC) + self._offset)
            self._frozen = at.astimezone(UTC)
            self._last = self._frozen
            return self._frozen

    def unfreeze(self) -> None:
        """Let time run again from the wall clock (plus any offset from :meth:`advance`)."""
        with self._lock:
            self._frozen = None
            self._last = None

    def advance(self, seconds: float) -> datetime:
        """Move time forward: the frozen instant, or the offset added to the wall clock."""
        if seconds < 0:
            raise ValueError("Clock.advance takes a non-negative number of seconds")
        with self._lock:
            delta = timedelta(seconds=seconds)
            if self._frozen is not None:
                self._frozen += delta
                self._last = self._frozen
                return self._frozen
            self._offset += delta
            return datetime.now(UTC) + self._offset

    def snapshot(self) -> dict[str, object]:
        """State for the control API."""
        with self._lock:
            frozen = self._frozen
            offset = self._offset.total_seconds()
        return {
            "now": self.now().isoformat(),
            "frozen": frozen is not None,
            "offset_seconds": offset,
        }
