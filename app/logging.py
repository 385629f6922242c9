"""Structured logging with structlog: JSON lines when not on a terminal, readable otherwise.

Everything goes to stderr, so a command's JSON summary on stdout stays machine-readable. The
level is ``CRMSYNC_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default INFO): the CLI applies it
once settings are loaded, ``create_app`` for the API.

structlog loads with the first line that is written, not with this module: importing structlog
imports its console renderer, rich's tracebacks and asyncio (about 0.06 s), and a command that
logs nothing at its level (a no-input ``crmsync health recompute`` at ``WARNING``, issue #18
item 10) need not pay for that. :func:`get_logger` hands out a :class:`Logger` that drops a
call below the configured level itself and only otherwise passes it to structlog, configured
then; once structlog is loaded, :func:`configure_logging` applies at once, as before.

Secrets are ``SecretStr`` in settings, so a logged settings object shows ``**********``. As a
second line of defence :func:`redact_secrets` masks any logged value whose key names a secret
(``token``, ``secret``, ``password``, ``authorization``, ``api_key``, ...) and bearer tokens or
``token=`` query parameters inside logged strings. Jobs bind ``run_id``, ``crm`` and ``object``
(:func:`structlog.contextvars.bound_contextvars`), so every line a job logs carries them.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import structlog

MASK = "**********"
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|authorization|api_?key|private_?key|assertion|cookie)", re.I
)
_SECRET_TEXT = [
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=!-]+"), r"\1 " + MASK),
    (
        re.compile(
            r"(?i)\b(access_token|refresh_token|client_secret|api_key|hapikey|password)"
            r"([=:]\s*\"?)[^&\s\",]+"
        ),
        r"\1\2" + MASK,
    ),
]

#: The level :func:`configure_logging` set last; a call below it is dropped without structlog.
#: NOTSET until then: every call reaches structlog, with structlog's own defaults.
_level = logging.NOTSET
#: A level configured before structlog was loaded, applied when the first line is written.
_pending: int | None = None
#: Held while a pending level is applied, so that two threads writing their first lines at once
#: (the API's request threads) both write with it, neither with structlog's defaults.
_configuring = threading.Lock()


def _mask_text(value: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        value = pattern.sub(replacement, value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask values of secret-named keys and secrets inside strings."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and value is not None and key != "event":
            event_dict[key] = MASK
        elif isinstance(value, str):
            event_dict[key] = _mask_text(value)
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    """Set the level and the output; structlog is configured now if it is loaded already, else
    when the first line at that level is written."""
    global _level, _pending
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    _level = numeric
    if "structlog" in sys.modules:
        _pending = None
        _apply(numeric)
    else:
        _pending = numeric


def _apply(numeric: int) -> None:
    import structlog

    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _structlog_logger(name: str) -> structlog.stdlib.BoundLogger:
    """structlog's logger for ``name``, loading and configuring structlog on first use.

    A configuration made meanwhile by someone else (``structlog.testing.capture_logs``) wins
    over the pending one, as it would have if structlog had been configured first.
    """
    global _pending
    import structlog

    if _pending is not None:
        with _configuring:
            if _pending is not None:
                if not structlog.is_configured():
                    _apply(_pending)
                _pending = None
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


class Logger:
    """A named logger whose calls below the configured level cost a comparison.

    The methods crmsync uses, with structlog's signatures: an event name and key-value pairs.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def debug(self, event: str, *args: Any, **kw: Any) -> None:
        if _level <= logging.DEBUG:
            _structlog_logger(self.name).debug(event, *args, **kw)

    def info(self, event: str, *args: Any, **kw: Any) -> None:
        if _level <= logging.INFO:
            _structlog_logger(self.name).info(event, *args, **kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> None:
        if _level <= logging.WARNING:
            _structlog_logger(self.name).warning(event, *args, **kw)

    def error(self, event: str, *args: Any, **kw: Any) -> None:
        if _level <= logging.ERROR:
            _structlog_logger(self.name).error(event, *args, **kw)

    def exception(self, event: str, *args: Any, **kw: Any) -> None:
        """An error line with the current exception's traceback."""
        if _level <= logging.ERROR:
            _structlog_logger(self.name).exception(event, *args, **kw)


def get_logger(name: str) -> Logger:
    return Logger(name)
