"""The control API under ``/__sandbox/``: steer a running sandbox from tests, demos, benchmarks.

Not part of the emulated surface: no auth, no faults, not counted in stats. Bad input answers
400 ``{"error": "...", "field": "<name>"}``; an unknown record answers 404.

- ``GET /stats``, ``POST /reset``: call accounting; reset clears stats and rate-limit windows
  (not data).
- ``GET/PUT /faults``: route fault rules ``{"routes": [{"match", "rate_limit", ...}], "seed"}``.
- ``POST/DELETE /faults/records``: ``{"crm", "object", "ids", "kind": lock|validation, "count",
  "field", "message"}`` (ids: record ids or external id values; field/message: validation only).
- ``GET /tokens``, ``POST /tokens/expire {crm}``, ``POST /tokens/restore {crm}``.
- ``GET /clock``, ``POST /clock/freeze {at}``, ``/clock/unfreeze``, ``/clock/advance {seconds}``.
- ``POST /{crm}/touch {object, ids or count, at}``: give records one modification stamp.
- ``POST /{crm}/close-won {id}``: move a deal to closed-won (emits the webhook).
- ``POST /{crm}/fields {object, name, type}``: declare a custom field at run time.
- ``GET/PUT /webhooks``, ``POST /webhooks/flush {wait}``, ``POST /webhooks/clear``,
  ``GET /webhooks/deliveries``.
- ``GET /info``: URLs, tokens and CA path of this sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmsync_sandbox.context import CrmEmulator, CrmName, SandboxContext
from crmsync_sandbox.faults import RouteFault

__all__ = ["control_routes"]

PREFIX = "/__sandbox"
MAX_ADVANCE_S = 100 * 365 * 86400  # a century: farther would overflow ``datetime``
Handler = Callable[[Request, dict[str, Any]], Awaitable[Any]]


class BadInput(ValueError):
    """400 with the offending field named."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _bad_value(exc: ValueError) -> BadInput:
    """Our validators raise ``ValueError('field: why')``; keep the field name."""
    text = str(exc)
    field, sep, message = text.partition(": ")
    if sep and field.replace("_", "").isalnum():
        return BadInput(field, message)
    return BadInput("body", text)


def _get(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True
) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise BadInput(name, "required")
        return None
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = " or ".join(t.__name__ for t in _as_tuple(kind))
        raise BadInput(name, f"must be {names}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _crm(value: Any, field: str = "crm") -> CrmName:
    if value not in ("salesforce", "hubspot"):
        raise BadInput(field, "must be 'salesforce' or 'hubspot'")
    crm: CrmName = value
    return crm


def _datetime(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise BadInput(field, "must be an ISO-8601 datetime string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(field, f"not an ISO-8601 datetime: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # naive = UTC


def control_routes(ctx: SandboxContext, info: Callable[[], dict[str, Any]]) -> list[Route]:
    """The control routes bound to one sandbox's context."""

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            body: dict[str, Any] = {}
            if request.method in ("POST", "PUT", "DELETE"):
                raw = await request.body()
                if raw.strip():
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        return JSONResponse({"error": "body: invalid JSON", "field": "body"}, 400)
                    if not isinstance(parsed, dict):
                        return JSONResponse(
                            {"error": "body: must be a JSON object", "field": "body"}, 400
                        )
                    body = parsed
            try:
                result = await handler(request, body)
            except BadInput as exc:
                return JSONResponse({"error": str(exc), "field": exc.field}, 400)
            except LookupError as exc:
                return JSONResponse({"error": f"not found: {exc}"}, 404)
            except ValueError as exc:
                bad = _bad_value(exc)
                return JSONResponse({"error": str(bad), "field": bad.field}, 400)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return run

    def emulator(request: Request) -> tuple[CrmName, CrmEmulator]:
        crm = _crm(request.path_params["crm"])
        found = ctx.emulators.get(crm)
        if found is None:
            raise BadInput("crm", f"the {crm} emulator is not loaded in this sandbox")
        return crm, found

    async def stats(_: Request, __: dict[str, Any]) -> Any:
        return ctx.stats.snapshot()

    async def reset(_: Request, __: dict[str, Any]) -> Any:
        ctx.stats.reset()
        for hook in list(ctx.reset_hooks):
            await run_in_threadpool(hook)
        for em in ctx.emulators.values():
            reset_limits = getattr(em, "reset_rate_limits", None)
            if callable(reset_limits):
                await run_in_threadpool(reset_limits)
        return {"reset": True}

    async def get_faults(_: Request, __: dict[str, Any]) -> Any:
        return ctx.faults.snapshot()

    async def put_faults(_: Request, body: dict[str, Any]) -> Any:
        routes = _get(body, "routes", list, required=False) or []
        seed = _get(body, "seed", int, required=False)
        rules = []
        for n, item in enumerate(routes):
            if not isinstance(item, dict):
                raise BadInput(f"routes[{n}]", "must be an object")
            try:
                rules.append(RouteFault.from_dict(item))
            except (TypeError, ValueError) as exc:
                raise BadInput(f"routes[{n}]", str(exc)) from None
        ctx.faults.set_rules(rules, seed=seed)
        return ctx.faults.snapshot()

    async def add_record_faults(_: Request, body: dict[str, Any]) -> Any:
        crm = _crm(body.get("crm"))
        object_name = _get(body, "object", str)
        ids = _get(body, "ids", list)
        if not all(isinstance(i, str | int) and not isinstance(i, bool) for i in ids):
            raise BadInput("ids", "must be a list of record ids")
        kind = _get(body, "kind", str)
        if kind not in ("lock", "validation"):
            raise BadInput("kind", "must be 'lock' or 'validation'")
        count = _get(body, "count", int, required=False)
        if count is not None and count < 1:
            raise BadInput("count", "must be a positive integer or null (= until cleared)")
        field = _get(body, "field", str, required=False)
        message = _get(body, "message", str, required=False)
        ctx.faults.set_record_fault(
            crm, object_name, [str(i) for i in ids], kind, count, field=field, message=message
        )
        return ctx.faults.snapshot()

    async def clear_record_faults(_: Request, body: dict[str, Any]) -> Any:
        crm = _crm(body["crm"]) if body.get("crm") is not None else None
        ctx.faults.clear_record_faults(crm)
        return ctx.faults.snapshot()

    async def tokens(_: Request, __: dict[str, Any]) -> Any:
        return ctx.tokens.snapshot()

    async def expire(_: Request, body: dict[str, Any]) -> Any:
        ctx.tokens.expire_all(_crm(body.get("crm")))
        return ctx.tokens.snapshot()

    async def restore(_: Request, body: dict[str, Any]) -> Any:
        ctx.tokens.restore(_crm(body.get("crm")))
        return ctx.tokens.snapshot()

    async def clock(_: Request, __: dict[str, Any]) -> Any:
        return ctx.clock.snapshot()

    async def freeze(_: Request, body: dict[str, Any]) -> Any:
        at = _datetime(body["at"], "at") if body.get("at") is not None else None
        ctx.clock.freeze(at)
        return ctx.clock.snapshot()

    async def unfreeze(_: Request, __: dict[str, Any]) -> Any:
        ctx.clock.unfreeze()
        return ctx.clock.snapshot()

    async def advance(_: Request, body: dict[str, Any]) -> Any:
        seconds = _get(body, "seconds", (int, float))
        if not 0 <= seconds <= MAX_ADVANCE_S:
            raise BadInput("seconds", f"must be between 0 and {MAX_ADVANCE_S}")
        ctx.clock.advance(float(seconds))
        return ctx.clock.snapshot()

    async def touch(request: Request, body: dict[str, Any]) -> Any:
        _, em = emulator(request)
        object_name = _get(body, "object", str)
        ids = _get(body, "ids", list, required=False)
        count = _get(body, "count", int, required=False)
        if (ids is None) == (count is None):
            raise BadInput("ids", "give exactly one of 'ids' (a list) or 'count' (an integer)")
        if count is not None and count < 1:
            raise BadInput("count", "must be a positive integer")
        at = _datetime(body["at"], "at") if body.get("at") is not None else ctx.clock.now()
        touched = await run_in_threadpool(
            lambda: em.touch(
                object_name,
                ids=[str(i) for i in ids] if ids is not None else None,
                count=count,
                at=at,
            )
        )
        return {"object": object_name, "at": at.isoformat(), "ids": list(touched)}

    async def close_won(request: Request, body: dict[str, Any]) -> Any:
        _, em = emulator(request)
        object_id = _get(body, "id", (str, int))
        await run_in_threadpool(em.close_won, str(object_id))
        return {"id": str(object_id), "closed_won": True}

    async def declare_field(request: Request, body: dict[str, Any]) -> Any:
        _, em = emulator(request)
        object_name = _get(body, "object", str)
        name = _get(body, "name", str)
        field_type = _get(body, "type", str)
        await run_in_threadpool(em.declare_field, object_name, name, field_type)
        return {"object": object_name, "name": name, "type": field_type}

    async def get_webhooks(_: Request, __: dict[str, Any]) -> Any:
        return {**ctx.outbox.settings_dict(), "status": ctx.outbox.status()}

    async def put_webhooks(_: Request, body: dict[str, Any]) -> Any:
        return {**ctx.outbox.configure(body), "status": ctx.outbox.status()}

    async def flush(_: Request, body: dict[str, Any]) -> Any:
        released = ctx.outbox.flush()
        wait = _get(body, "wait", (int, float), required=False)
        idle = True
        if wait:
            idle = await run_in_threadpool(ctx.outbox.wait_idle, float(wait))
        return {"released": released, "idle": idle, "status": ctx.outbox.status()}

    async def clear(_: Request, __: dict[str, Any]) -> Any:
        return {"dropped": ctx.outbox.clear(), "status": ctx.outbox.status()}

    async def deliveries(_: Request, __: dict[str, Any]) -> Any:
        return {"deliveries": ctx.outbox.deliveries(), "status": ctx.outbox.status()}

    async def get_info(_: Request, __: dict[str, Any]) -> Any:
        return info()

    table: list[tuple[str, list[str], Handler]] = [
        ("/stats", ["GET"], stats),
        ("/reset", ["POST"], reset),
        ("/faults", ["GET"], get_faults),
        ("/faults", ["PUT"], put_faults),
        ("/faults/records", ["POST"], add_record_faults),
        ("/faults/records", ["DELETE"], clear_record_faults),
        ("/tokens", ["GET"], tokens),
        ("/tokens/expire", ["POST"], expire),
        ("/tokens/restore", ["POST"], restore),
        ("/clock", ["GET"], clock),
        ("/clock/freeze", ["POST"], freeze),
        ("/clock/unfreeze", ["POST"], unfreeze),
        ("/clock/advance", ["POST"], advance),
        ("/webhooks", ["GET"], get_webhooks),
        ("/webhooks", ["PUT"], put_webhooks),
        ("/webhooks/flush", ["POST"], flush),
        ("/webhooks/clear", ["POST"], clear),
        ("/webhooks/deliveries", ["GET"], deliveries),
        ("/info", ["GET"], get_info),
        ("/{crm}/touch", ["POST"], touch),
        ("/{crm}/close-won", ["POST"], close_won),
        ("/{crm}/fields", ["POST"], declare_field),
    ]
    return [
        Route(PREFIX + path, endpoint(handler), methods=methods, name=f"sandbox:{handler.__name__}")
        for path, methods, handler in table
    ]
