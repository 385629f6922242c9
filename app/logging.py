"""Structured logging with structlog: JSON lines when not on a terminal, readable otherwise.

Everything goes to stderr, so a command's JSON summary on stdout stays machine-readable. The
level is ``CRMSYNC_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default INFO): the CLI applies it
once settings are loaded, ``create_app`` for the API.

Secrets are ``SecretStr`` in settings, so a logged settings object shows ``**********``.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
