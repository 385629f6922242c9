"""Cursor pagination for the admin lists: an opaque cursor that holds the last id returned and
a fingerprint of the filters, so a cursor reused with other filters is refused (422 naming
``cursor``) instead of silently paging another list. Same format as ``/api/v1/accounts``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from fastapi.responses import JSONResponse


def _fingerprint(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def encode_cursor(last_id: int, filters: dict[str, Any]) -> str:
    raw = json.dumps({"after": last_id, "f": _fingerprint(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, filters: dict[str, Any]) -> int:
    """The last id of the previous page; ValueError with the reason otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        last = data["after"]
        fingerprint = data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("not a cursor this API returned") from None
    if not isinstance(last, int) or isinstance(last, bool) or last < 0:
        raise ValueError("not a cursor this API returned")
    if fingerprint != _fingerprint(filters):
        raise ValueError("the cursor was made with other filters: repeat the same filters")
    return last


def encode_key_cursor(key: tuple[str, int], filters: dict[str, Any]) -> str:
    """A cursor for a list ordered by (a text key, id): the last row's key and id."""
    raw = json.dumps({"after": list(key), "f": _fingerprint(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_key_cursor(cursor: str, filters: dict[str, Any]) -> tuple[str, int]:
    """The (key, id) of the previous page's last row; ValueError with the reason otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        key, last = data["after"]
        fingerprint = data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("not a cursor this API returned") from None
    if not isinstance(key, str) or not isinstance(last, int) or isinstance(last, bool) or last < 0:
        raise ValueError("not a cursor this API returned")
    if fingerprint != _fingerprint(filters):
        raise ValueError("the cursor was made with other filters: repeat the same filters")
    return key, last


def invalid(parameter: str, message: str, value: Any, where: str = "query") -> JSONResponse:
    """422 in FastAPI's validation shape, naming the parameter and the reason."""
    return JSONResponse(
        status_code=422,
        content={
            "detail": [
                {"loc": [where, parameter], "msg": message, "type": "value_error", "input": value}
            ]
        },
    )


class BadParameter(Exception):
    """Raised where a route cannot return :func:`invalid` directly; answered as that 422."""

    def __init__(self, parameter: str, message: str, value: Any, where: str = "query") -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.value = value
        self.where = where

    def response(self) -> JSONResponse:
        return invalid(self.parameter, self.message, self.value, self.where)
