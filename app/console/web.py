"""Templates and the few helpers every console page uses: :func:`render`, the time and paging
macros' data, and :func:`call_api` to run an API route function and read its answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError

from app import __version__
from app.console.auth import CSRF_FIELD, ConsoleUser, current_user

TEMPLATES = Path(__file__).parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES))


def utc_text(iso: str | datetime | None) -> str:
    """``2026-12-06 10:00:00`` (UTC) for the title and the no-JS text of a ``<time>``."""
    if iso is None:
        return ""
    when = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso)
    if when.tzinfo is not None:
        from datetime import UTC

        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def iso_text(iso: str | datetime | None) -> str:
    if iso is None:
        return ""
    return iso.isoformat() if isinstance(iso, datetime) else iso


def duration(seconds: float | int | None) -> str:
    """``3 h 05 min``, ``42 s``: lags and ETAs at a glance."""
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def with_query(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None drops one)."""
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = str(v)
    query = urlencode({k: v for k, v in params.items() if v != ""})
    return request.url.path + ("?" + query if query else "")


templates.env.filters["utc"] = utc_text
templates.env.filters["iso"] = iso_text
templates.env.filters["duration"] = duration
templates.env.filters["pretty_json"] = pretty_json
templates.env.globals["with_query"] = with_query
templates.env.globals["version"] = __version__
templates.env.globals["csrf_field_name"] = CSRF_FIELD


#: Scripts only from /console/static (no inline script); inline styles are allowed (SVG charts,
#: widths of bars); no framing (clickjacking), forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    user: ConsoleUser | None = None,
    nav: str | None = None,
) -> HTMLResponse:
    """Render ``name`` with the signed-in user, the nav and a notice; never cached (signed-in
    pages), never framed."""
    ctx: dict[str, Any] = {
        "request": request,
        "user": user or current_user(request),
        "notice": request.query_params.get("notice"),
        "notice_error": request.query_params.get("error"),
        "htmx": request.headers.get("HX-Request") == "true",
        "nav": nav,
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


@dataclass
class Answer:
    """What an API route function answered: its status and JSON body, and the field errors of
    a 422 (``{"since": "since is in the future"}``) for the form to show next to each field."""

    status: int
    body: Any
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def message(self) -> str:
        if self.errors:
            return "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        if isinstance(self.body, dict) and isinstance(self.body.get("detail"), str):
            return str(self.body["detail"])
        return f"failed ({self.status})"


def field_errors(detail: Any) -> dict[str, str]:
    """``{field: message}`` from FastAPI's 422 shape (``[{"loc": [..., field], "msg": ...}]``)."""
    out: dict[str, str] = {}
    if isinstance(detail, list):
        for item in detail:
            loc = item.get("loc") or []
            name = str(loc[-1]) if loc else "form"
            if len(loc) == 1 and loc[0] == "body":
                name = "form"
            out.setdefault(name, str(item.get("msg", "invalid")))
    return out


def validation_answer(exc: ValidationError, where: str = "body") -> Answer:
    """A pydantic error while building an API request model, as the API's 422 would say it."""
    detail = [{"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return Answer(422, {"detail": detail}, field_errors(detail))


def build(model: type[BaseModel], data: Mapping[str, Any]) -> BaseModel | Answer:
    """The API's request model from form fields, or the 422 it would answer."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        return validation_answer(exc)


def read_response(response: JSONResponse) -> Answer:
    """An API function's JSONResponse (a 422, a 409...) as an :class:`Answer`."""
    body = json.loads(bytes(response.body))
    errors = field_errors(body.get("detail")) if response.status_code == 422 else {}
    return Answer(response.status_code, body, errors)


def call_api(fn: Callable[..., Any], **kwargs: Any) -> Answer:
    """Run an ``/api/v1`` route function with its arguments and read the answer as the API
    client would: the body, the status (HTTPException and JSONResponse included), field errors."""
    try:
        result = fn(**kwargs)
    except HTTPException as exc:
        return Answer(exc.status_code, {"detail": exc.detail})
    if isinstance(result, JSONResponse):
        return read_response(result)
    if isinstance(result, BaseModel):
        return Answer(200, result.model_dump(mode="json"))
    return Answer(200, result)
