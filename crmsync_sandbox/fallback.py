"""Answers for requests no route takes: an unknown path (404) or a known path with another method
(405), in the JSON error envelope of the CRM the path belongs to.

Starlette answers these in plain text ("Not Found"), which no CRM does: a client written against
the real API parses the error body and fails on text. Salesforce answers
``[{"message", "errorCode": "NOT_FOUND" | "METHOD_NOT_ALLOWED"}]`` (crm-api.md A.9); HubSpot
``{"status": "error", "message", "correlationId", "category": "OBJECT_NOT_FOUND"}`` (B.9); the
control API its own ``{"error", "field"}``. Installed as the app's 404/405 exception handlers, so
an emulator's own routes always win.

Imports nothing from the emulators (the shapes are small and fixed).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from crmsync_sandbox.middleware import crm_for_path

__all__ = ["exception_handlers", "fallback_response"]

SF_JSON = "application/json;charset=UTF-8"
HS_JSON = "application/json;charset=utf-8"


def fallback_response(method: str, path: str, status: int, allow: str = "") -> Response:
    """The 404 (no such path) or 405 (``allow`` lists the methods the path takes) of ``path``."""
    crm = crm_for_path(path)
    headers = {"Allow": allow} if status == 405 and allow else None
    if crm == "salesforce":
        if status == 405:
            body = {
                "message": f"HTTP Method '{method}' not allowed. Allowed are "
                + allow.replace(" ", ""),
                "errorCode": "METHOD_NOT_ALLOWED",
            }
        else:
            body = {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
        return JSONResponse([body], status_code=status, headers=headers, media_type=SF_JSON)
    if crm == "hubspot":
        correlation = str(uuid.uuid4())
        if status == 405:
            hs_body = {
                "status": "error",
                "message": f"Method {method} is not allowed on {path}; allowed: {allow}",
                "correlationId": correlation,
                "category": "VALIDATION_ERROR",
            }
        else:
            hs_body = {
                "status": "error",
                "message": f"Unable to route {method} {path}: resource not found",
                "correlationId": correlation,
                "category": "OBJECT_NOT_FOUND",
            }
        return JSONResponse(
            hs_body,
            status_code=status,
            headers={**(headers or {}), "X-HubSpot-Correlation-Id": correlation},
            media_type=HS_JSON,
        )
    message = "method not allowed" if status == 405 else "not found"
    return JSONResponse({"error": message, "field": "path"}, status_code=status, headers=headers)


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route takes on this path (Starlette's own 405 names only the methods of
    the first route it tried; a path served by several routes takes their union)."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE and isinstance(route, Route) and route.methods:
            methods |= route.methods
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))


async def _handle(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    allow = ""
    if status == 405:
        routes = getattr(getattr(request.scope.get("app"), "router", None), "routes", [])
        allow = ", ".join(allowed_methods(routes, request.scope))
    return fallback_response(request.method, request.url.path, status, allow)


def exception_handlers() -> Mapping[int, Callable[[Request, Exception], Awaitable[Response]]]:
    """``Starlette(exception_handlers=...)`` entries for 404 and 405."""
    return {404: _handle, 405: _handle}
