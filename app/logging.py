"""Structured logging with structlog: JSON lines when not on a terminal, readable otherwise.

Everything goes to stderr, so a command's JSON summary on stdout stays machine-readable. The
level is ``CRMSYNC_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default INFO): the CLI applies it
once settings are loaded, ``create_app`` for the API.

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
from collections.abc import MutableMapping
from typing import Any

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
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
