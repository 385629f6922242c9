"""SIGTERM handled like Ctrl-C, so ``docker stop``, systemd and ``timeout`` stop a sync cleanly.

Python raises ``KeyboardInterrupt`` in the main thread on SIGINT but dies at once on SIGTERM,
leaving its run ``running`` and its lease held. Inside :func:`interrupts_raised` both signals
raise :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread instead, which the engine
turns into a run closed as ``cancelled``. The first signal restores the previous handlers, so a
second one is not swallowed by the clean-up: it stops the process the usual way.

The interrupt can land while a database connection is mid-statement; SQLAlchemy's pool then
fails to reset that connection when it is returned and logs the failure with a traceback. The
connection is discarded and the database rolls its transaction back, so after a signal that
record is shortened to one line (:class:`QuietPoolReset`): a user who pressed Ctrl-C sees the
summary, not a stack.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGINT or SIGTERM; its message is the signal's name."""


class QuietPoolReset(logging.Filter):
    """After an interrupt: the pool's "Exception during reset" error becomes one warning line,
    without the traceback of the interrupted statement."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Exception during reset"):
            record.msg = (
                "a database connection in use when the signal arrived was discarded "
                "(its transaction is rolled back)"
            )
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


POOL_LOGGERS = (
    "sqlalchemy.pool",
    "sqlalchemy.pool.base",
    "sqlalchemy.pool.impl.QueuePool",
    "sqlalchemy.pool.impl.NullPool",
    "sqlalchemy.pool.impl.SingletonThreadPool",
    "sqlalchemy.pool.impl.StaticPool",
)


def quiet_pool_resets() -> None:
    """Install :class:`QuietPoolReset` on SQLAlchemy's pool loggers (once)."""
    for name in POOL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietPoolReset) for f in logger.filters):
            logger.addFilter(QuietPoolReset())


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
        quiet_pool_resets()
        raise Terminated(signal.Signals(signum).name)

    for sig in HANDLED:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        restore()
