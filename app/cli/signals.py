"""SIGTERM handled like Ctrl-C, so ``docker stop``, systemd and ``timeout`` stop a sync cleanly.

Python raises ``KeyboardInterrupt`` in the main thread on SIGINT but dies at once on SIGTERM,
leaving its run ``running`` and its lease held. Inside :func:`interrupts_raised` both signals
raise :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread instead, which the engine
turns into a run closed as ``cancelled``. The first signal restores the previous handlers, so a
second one is not swallowed by the clean-up: it stops the process the usual way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGINT or SIGTERM; its message is the signal's name."""


@contextmanager
def interrupts_raised() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install handlers; signals are delivered there anyway
        return
    # getsignal is None for a handler not installed from Python: restore the default then.
    previous = {sig: signal.getsignal(sig) or signal.SIG_DFL for sig in HANDLED}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        restore()
        raise Terminated(signal.Signals(signum).name)

    for sig in HANDLED:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        restore()
