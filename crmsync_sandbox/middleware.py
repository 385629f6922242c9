"""The ASGI middleware in front of both emulators: route faults and call accounting.

It sits outside the Starlette app (directly under uvicorn), so it sees uvicorn's own ``send``
and can drop a connection for the ``reset`` fault. For each request under ``/services/``
(Salesforce) or ``/crm/`` (HubSpot) it resolves the route template the way Starlette's router
will (``GET /services/data/{version}/query``), draws a fault, and counts the answer's status in
:class:`~crmsync_sandbox.stats.Stats`. The label is left in ``scope["sandbox.route"]`` so emulator
handlers can pass it to ``ctx.stats.record_rate_limited``. Control routes (``/__sandbox/``) are
neither faulted nor counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmsync_sandbox.context import CrmName, SandboxContext

__all__ = ["SandboxMiddleware", "crm_for_path", "resolve_route"]

log = logging.getLogger(__name__)


def crm_for_path(path: str) -> CrmName | None:
    """Which emulator a path belongs to (None for the control API and anything else)."""
    if path.startswith("/services/") or path == "/services":
        return "salesforce"
    if path.startswith(("/crm/", "/crm-object-schemas/", "/oauth/")) or path == "/crm":
        return "hubspot"
    return None


def resolve_route(routes: Sequence[BaseRoute], scope: Scope) -> tuple[str | None, str | None]:
    """``(path template, route name)`` of the route Starlette will pick, through mounts.

    A route that matches the path but not the method (a 405) still names its template."""
    partial: tuple[str | None, str | None] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        found: tuple[str | None, str | None]
        if isinstance(route, Mount):
            inner_routes = route.routes
            if inner_routes:
                template, name = resolve_route(inner_routes, {**scope, **child})
                found = (
                    (route.path + template, name)
                    if template
                    else (route.path + "/{path}", route.name)
                )
            else:
                found = (route.path + "/{path}", route.name)
        else:
            found = (getattr(route, "path", None), getattr(route, "name", None))
        if match is Match.FULL:
            return found
        partial = partial or found
    return partial or (None, None)


def _drop_connection(send: Send) -> bool:
    """Abort the TCP connection under uvicorn's h11/httptools cycle (RST, no response).

    Relies on uvicorn's ``send`` being a bound method of its request cycle, which holds the
    transport; returns False when that is not the case (the caller then answers 500-less)."""
    cycle: Any = getattr(send, "__self__", None)
    transport: Any = getattr(cycle, "transport", None)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cycle.disconnected = True  # so uvicorn does not try to write a 500 on the dead transport
    transport.abort()
    return True


class SandboxMiddleware:
    """Faults + stats for the emulated surface; pass-through for everything else."""

    def __init__(self, app: ASGIApp, ctx: SandboxContext, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.ctx = ctx
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        crm = crm_for_path(path)
        if crm is None:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        template, name = resolve_route(self.routes, scope)
        label = f"{method} {template or '(unmatched)'}"
        scope["sandbox.route"] = label
        scope["sandbox.crm"] = crm
        candidates = [f"{method} {path}", path]
        if template:
            candidates += [f"{method} {template}", template]
        if name:
            candidates.append(name)
        decision = self.ctx.faults.decide(candidates)
        stats = self.ctx.stats

        if decision.delay_ms:
            stats.record_fault(crm, label, "slow")
            await asyncio.sleep(decision.delay_ms / 1000)

        if decision.action == "reset":
            stats.record_fault(crm, label, "reset")
            stats.record_call(crm, label, "reset")
            if _drop_connection(send):
                return
            log.warning("sandbox: cannot drop the connection under this server; answering 503")
            decision = type(decision)("unavailable", 0)

        status: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            if decision.action == "unavailable":
                stats.record_fault(crm, label, "unavailable")
                await self._unavailable(crm)(scope, receive, counting_send)
            elif decision.action == "rate_limit":
                stats.record_fault(crm, label, "rate_limit")
                stats.record_rate_limited(crm, label)
                await self._rate_limited(crm)(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            stats.record_call(crm, label, status[0] if status else 500)

    def _unavailable(self, crm: CrmName) -> Response:
        emulator = self.ctx.emulators.get(crm)
        if emulator is not None:
            return emulator.unavailable_response()
        return JSONResponse({"message": "Service Unavailable"}, status_code=503)

    def _rate_limited(self, crm: CrmName) -> Response:
        emulator = self.ctx.emulators.get(crm)
        if emulator is not None:
            return emulator.rate_limited_response()
        return JSONResponse({"message": "Too Many Requests"}, status_code=429)
