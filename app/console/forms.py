"""Form and query values as the API functions take them: blanks are "not given"."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi.responses import RedirectResponse

from app.console.auth import safe_next
from app.console.web import Answer

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def opt(value: str | None) -> str | None:
    """A blank field is a filter or option left out."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def opt_bool(value: str | None) -> bool | str | None:
    """``true``/``false`` as booleans, blank as None; anything else as is (the API refuses it)."""
    value = opt(value)
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.lower(), value)


def since_value(value: str | None) -> str | None:
    """A date picker's ``2026-01-31`` is midnight UTC that day; a full timestamp is kept."""
    value = opt(value)
    if value is not None and _DATE.match(value):
        return value + "T00:00:00Z"
    return value


def back(next_url: str | None, answer: Answer, done: str) -> RedirectResponse:
    """303 back to the page the action came from, with ``done`` or the API's refusal."""
    target = safe_next(next_url)
    key, text = ("notice", done) if answer.ok else ("error", answer.message)
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{key}={quote(text)}", status_code=303)


def form_values(data: Mapping[str, Any], *names: str) -> dict[str, str]:
    return {n: str(data.get(n) or "") for n in names}
