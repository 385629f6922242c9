"""After Ctrl-C / SIGTERM, SQLAlchemy's "Exception during reset" (a connection interrupted
mid-statement, discarded by the pool) is one warning line, not a traceback on the user's
terminal; other pool records pass unchanged."""

from __future__ import annotations

import logging
import sys

from app.cli.signals import QuietPoolReset, quiet_pool_resets


def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    try:
        raise KeyboardInterrupt("SIGTERM")
    except KeyboardInterrupt:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "sqlalchemy.pool.impl.QueuePool", level, __file__, 1, msg, (), exc_info
    )


def test_the_reset_failure_becomes_one_warning_line() -> None:
    rec = record("Exception during reset or similar")
    assert QuietPoolReset().filter(rec)
    assert (rec.levelno, rec.levelname, rec.exc_info) == (logging.WARNING, "WARNING", None)
    assert "discarded" in rec.getMessage()
    assert "Traceback" not in logging.Formatter().format(rec)


def test_other_pool_records_are_left_alone() -> None:
    rec = record("Pool disposed. %s")
    assert QuietPoolReset().filter(rec)
    assert rec.levelno == logging.ERROR
    assert rec.exc_info is not None


def test_installed_once_on_the_pool_loggers() -> None:
    quiet_pool_resets()
    quiet_pool_resets()
    filters = logging.getLogger("sqlalchemy.pool.impl.QueuePool").filters
    assert sum(isinstance(f, QuietPoolReset) for f in filters) == 1
