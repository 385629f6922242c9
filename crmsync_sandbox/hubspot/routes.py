"""HTTP surface of the HubSpot emulator: ``/crm/v3/objects``, ``/crm/v3/properties``,
``/crm/v4`` associations and ``/crm/v3/owners``, as hubspot-api-client 12 calls them.

Each endpoint checks the Bearer token (401 body of crm-api.md B.2), admits the request through
HubSpot's rate limiter (headers on non-search calls, 429 bodies), parses the body (malformed JSON
-> 400 with only ``status, message, correlationId``) and runs the handler in a worker thread.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from crmsync_sandbox.hubspot import schema
from crmsync_sandbox.hubspot.bodies import BodyProblem, check_body
from crmsync_sandbox.hubspot.emulator import ItemError
from crmsync_sandbox.hubspot.ratelimit import limit_body
from crmsync_sandbox.hubspot.schema import PropertyDef
from crmsync_sandbox.hubspot.search import SearchError, compile_search
from crmsync_sandbox.hubspot.store import Row

if TYPE_CHECKING:
    from crmsync_sandbox.hubspot.emulator import HubSpotEmulator

JSON_TYPE = "application/json;charset=utf-8"
MAX_BATCH = 100  # object batch read/create/update/upsert/archive
MAX_ASSOC_BATCH = 1000  # v3 and v4 association batch reads, since February 2025
MAX_UNIQUE_PROPERTIES = 10


def correlation_id() -> str:
    return str(uuid.uuid4())


class HsError(Exception):
    """An error answer: HTTP status and HubSpot's JSON error body."""

    def __init__(self, status: int, message: str, category: str | None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"status": "error", "message": message}
        self.body["correlationId"] = correlation_id()
        if category is not None:
            self.body["category"] = category
        self.body.update(extra)

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, media_type=JSON_TYPE)

    @classmethod
    def from_item(cls, err: ItemError, **extra: Any) -> HsError:
        if err.errors:
            extra.setdefault("errors", err.errors)
        return cls(err.status, err.message, err.category, **extra)


def not_found() -> HsError:
    return HsError(404, "resource not found", "OBJECT_NOT_FOUND")


def bad_request(message: str, **extra: Any) -> HsError:
    return HsError(400, message, "VALIDATION_ERROR", **extra)


def invalid_field(message: str, field: str) -> HsError:
    """400 ``VALIDATION_ERROR`` whose ``errors[0].in`` names the offending field."""
    return bad_request(message, errors=[{"message": message, "code": "INVALID_INPUT", "in": field}])


def json_response(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, media_type=JSON_TYPE)


@dataclass
class Call:
    """What a handler sees of one request."""

    request: Request
    raw: bytes
    checked: Any = None  # the body after its model's type check, when the route has one

    @property
    def path(self) -> dict[str, Any]:
        return self.request.path_params

    def query_list(self, name: str) -> list[str]:
        out: list[str] = []
        for value in self.request.query_params.getlist(name):
            out.extend(p for p in (s.strip() for s in value.split(",")) if p)
        return out

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def query_bool(self, name: str, default: bool = False) -> bool:
        value = self.query(name)
        return default if value is None else value.strip().lower() == "true"

    def query_int(self, name: str, default: int) -> int:
        value = self.query(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise bad_request(f"{name} must be an integer, got {value!r}") from exc

    def json(self) -> Any:
        if self.checked is not None:
            return self.checked
        if not self.raw.strip():
            return {}
        try:
            return json.loads(self.raw)
        except ValueError as exc:
            raise HsError(400, f"Invalid input JSON on line 1: {exc}", None) from exc

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        return body

    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")


Handler = Callable[[Call], Response]


def _unauthorized() -> Response:
    body = {
        "status": "error",
        "message": "Authentication credentials not found. This API supports OAuth 2.0 "
        "authentication and you can find more details at "
        "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        "correlationId": correlation_id(),
        "category": "INVALID_AUTHENTICATION",
    }
    return JSONResponse(
        body,
        status_code=401,
        media_type=JSON_TYPE,
        headers={
            "X-HubSpot-Auth-Failure": "401 Unauthorized",
            "X-HubSpot-Correlation-Id": body["correlationId"],
        },
    )


class Api:
    """The endpoint handlers over one emulator."""

    def __init__(self, em: HubSpotEmulator) -> None:
        self.em = em
        self.store = em.store

    # -- plumbing -----------------------------------------------------------------------------

    def endpoint(
        self, handler: Handler, *, search: bool = False, body: str | None = None
    ) -> Callable[[Request], Any]:
        """Wrap ``handler``: auth, rate limit, then the ``body`` model's type check (a wrong
        JSON type is a 400 ``VALIDATION_ERROR`` naming the field, never a 500)."""
        em = self.em

        def checked(call: Call) -> Response:
            if body is not None:
                try:
                    call.checked = check_body(body, call.json())
                except BodyProblem as exc:
                    raise bad_request(
                        f"Invalid input JSON: {exc}",
                        errors=[{"message": exc.message, "code": "INVALID_TYPE", "in": exc.field}],
                    ) from exc
            return handler(call)

        async def run(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not em.ctx.tokens.is_valid("hubspot", token.strip()):
                return _unauthorized()
            verdict = em.limiter.admit(search=search)
            if verdict.policy is not None:
                em.ctx.stats.record_rate_limited("hubspot", request.url.path)
                return JSONResponse(
                    limit_body(verdict.policy),
                    status_code=429,
                    headers=verdict.headers,
                    media_type=JSON_TYPE,
                )
            raw = await request.body()
            call = Call(request, raw)
            try:
                response = await run_in_threadpool(checked, call)
            except HsError as exc:
                response = exc.response()
            except ItemError as exc:
                response = HsError.from_item(exc).response()
            response.headers.update(verdict.headers)
            return response

        return run

    def object_type(self, call: Call, key: str = "object_type") -> str:
        object_type = schema.TYPE_ALIASES.get(str(call.path[key]).lower())
        if object_type is None:
            raise HsError(
                400,
                f"Unable to infer object type from: {call.path[key]}",
                "VALIDATION_ERROR",
            )
        return object_type

    def record_json(
        self, row: Row, requested: list[str] | None, *, everything: bool = False
    ) -> dict[str, Any]:
        object_type = row.object_type
        always = (
            schema.CREATED_PROPERTY[object_type],
            schema.modified_property(object_type),
            schema.ID_PROPERTY,
        )
        props: dict[str, str | None] = {n: row.value(n) for n in always}
        if everything:
            props.update(row.props)
        defs = self.store.properties(object_type)
        for name in requested or schema.DEFAULT_PROPERTIES[object_type]:
            if name in defs or name in always:
                props[name] = row.value(name)
        out: dict[str, Any] = {
            "id": str(row.id),
            "properties": dict(sorted(props.items())),
            "createdAt": schema.iso_from_ms(row.created_ms),
            "updatedAt": schema.iso_from_ms(row.modified_ms),
            "archived": row.archived,
        }
        if row.archived and row.archived_ms is not None:
            out["archivedAt"] = schema.iso_from_ms(row.archived_ms)
        return out

    def batch_body(
        self,
        results: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        started_ms: int,
        ok_status: int,
    ) -> Response:
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        body["startedAt"] = schema.iso_from_ms(started_ms)
        body["completedAt"] = schema.iso_from_ms(self.em.now_ms())
        return json_response(body, 207 if errors else ok_status)

    def input_ids(self, inputs: list[dict[str, Any]]) -> list[str]:
        """The inputs' ids, in order; a batch naming one id twice is refused whole (400)."""
        keys = [str(i.get("id", "")) for i in inputs]
        self.reject_duplicates(keys)
        return keys

    def inputs(self, body: dict[str, Any], limit: int = MAX_BATCH) -> list[dict[str, Any]]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            raise bad_request("inputs must be a list of objects")
        if len(inputs) > limit:
            raise bad_request(
                f"The maximum number of inputs supported in a batch is {limit}. "
                "Please reduce the number of items and try again"
            )
        return inputs

    @staticmethod
    def reject_duplicates(ids: list[str]) -> None:
        seen: set[str] = set()
        dupes: list[str] = []
        for i in ids:
            if i in seen and i not in dupes:
                dupes.append(i)
            seen.add(i)
        if dupes:
            raise bad_request(
                f"Duplicate IDs found in batch input: [{', '.join(dupes)}]. IDs must be unique",
                context={"ids": dupes},
            )

    def check_id_property(self, object_type: str, id_property: str | None) -> None:
        if id_property in (None, "", schema.ID_PROPERTY):
            return
        assert id_property is not None
        prop = self.store.properties(object_type).get(id_property)
        if prop is None or not prop.has_unique_value:
            raise bad_request(
                f"Property {id_property} is not a unique identifier property for "
                f"{schema.SINGULAR[object_type].lower()}s; use a property with hasUniqueValue."
            )

    @staticmethod
    def not_found_error(object_type: str, ids: list[str]) -> dict[str, Any]:
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": f"Could not get some {schema.SINGULAR[object_type]} objects, they may be "
            "deleted or not exist. Check that ids are valid.",
            "context": {"ids": ids},
        }

    # -- objects: list / get / create / update / archive / merge ------------------------------

    def list_objects(self, call: Call) -> Response:
        object_type = self.object_type(call)
        limit = max(1, min(call.query_int("limit", 10), MAX_BATCH))
        after_raw = call.query("after")
        after = _decode_cursor(after_raw) if after_raw else 0
        archived = call.query_bool("archived")
        rows = self.store.fetch(
            object_type,
            "WHERE archived = ? AND id > ? ORDER BY id LIMIT ?",
            (int(archived), after, limit + 1),
        )
        requested = call.query_list("properties") or None
        to_types = self.association_types_requested(call)
        page = rows[:limit]
        results = [self.record_json(r, requested) for r in page]
        self.attach_associations(object_type, page, results, to_types)
        body: dict[str, Any] = {"results": results}
        if len(rows) > limit:
            token = _encode_cursor(page[-1].id)
            body["paging"] = {
                "next": {
                    "after": token,
                    "link": f"{call.base_url()}/crm/v3/objects/{object_type}?after={token}",
                }
            }
        return json_response(body)

    def get_object(self, call: Call) -> Response:
        object_type = self.object_type(call)
        id_property = call.query("idProperty")
        self.check_id_property(object_type, id_property)
        archived = call.query_bool("archived")
        row = self.store.find(
            object_type, str(call.path["object_id"]), id_property=id_property, archived=archived
        )
        if row is None:
            raise not_found()
        out = self.record_json(row, call.query_list("properties") or None)
        self.attach_associations(object_type, [row], [out], self.association_types_requested(call))
        return json_response(out)

    def association_types_requested(self, call: Call) -> list[str]:
        """Object types named by ``associations=`` (repeated or comma-joined). An unknown one is
        a 400 ``Unable to infer object type from: X``, as HubSpot answers ``associations=false``
        (HubSpot/hubspot-api-php#128), never silently ignored."""
        out: list[str] = []
        for name in call.query_list("associations"):
            to_type = schema.TYPE_ALIASES.get(name.lower())
            if to_type is None:
                raise HsError(400, f"Unable to infer object type from: {name}", "VALIDATION_ERROR")
            if to_type not in out:
                out.append(to_type)
        return out

    def attach_associations(
        self,
        object_type: str,
        rows: list[Row],
        records: list[dict[str, Any]],
        to_types: list[str],
    ) -> None:
        """Add ``associations: {type: {results: [{id, type}]}}`` to each record that has links
        of a requested type, in the v3 form HubSpot answers inline (no key when none)."""
        ids = [row.id for row in rows]
        for to_type in to_types:
            found = self.store.associations(object_type, ids, to_type)
            for row, record in zip(rows, records, strict=True):
                targets = found.get(row.id)
                if not targets:
                    continue
                record.setdefault("associations", {})[to_type] = {
                    "results": [
                        {"id": str(t), "type": schema.v3_type_name(object_type, to_type, k)}
                        for t, kinds in targets.items()
                        for k in kinds
                    ]
                }

    def create_object(self, call: Call) -> Response:
        object_type = self.object_type(call)
        body = call.json_object()
        values = self.em.validate(object_type, body.get("properties"), for_create=True)
        links = self.inline_associations(object_type, body.get("associations"))
        events: list[dict[str, Any]] = []
        with self.em.ctx.lock:
            row = self.em.write(object_type, None, values, events)
            self.store.associate((object_type, row.id, t, i, k) for t, i, k in links)
            self.store.commit()
        self.em.emit(events)
        return json_response(self.record_json(row, None, everything=True), 201)

    def inline_associations(self, object_type: str, raw: Any) -> list[tuple[str, int, int]]:
        """``[(to_type, to_id, type_id)]`` from a create's ``associations``; 400 when invalid."""
        if not raw:
            return []
        if not isinstance(raw, list):
            raise bad_request("associations must be a list")
        out: list[tuple[str, int, int]] = []
        for assoc in raw:
            try:
                to_id = _int_id(assoc["to"]["id"])
                types = assoc["types"]
            except (KeyError, TypeError) as exc:
                raise bad_request("Each association needs to.id and types") from exc
            for spec in types:
                type_id = _int_or(spec.get("associationTypeId"), 0)
                to_type = _target_type(object_type, type_id)
                if to_type is None:
                    raise bad_request(
                        f"{type_id} is not a valid association type id from {object_type}",
                        subCategory="crm.associations.INVALID_ASSOCIATION_TYPE",
                    )
                if self.store.find(to_type, str(to_id)) is None:
                    raise bad_request(
                        f"{schema.SINGULAR[to_type]}={to_id} is not valid",
                        subCategory="crm.associations.INVALID_OBJECT_IDS",
                    )
                out.append((to_type, to_id, type_id))
        return out

    def update_object(self, call: Call) -> Response:
        object_type = self.object_type(call)
        id_property = call.query("idProperty")
        self.check_id_property(object_type, id_property)
        body = call.json_object()
        values = self.em.validate(object_type, body.get("properties"))
        events: list[dict[str, Any]] = []
        with self.em.ctx.lock:
            row = self.store.find(object_type, str(call.path["object_id"]), id_property=id_property)
            if row is None:
                raise not_found()
            row = self.em.write(object_type, row, values, events)
            self.store.commit()
        self.em.emit(events)
        return json_response(self.record_json(row, None, everything=True))

    def archive_object(self, call: Call) -> Response:
        object_type = self.object_type(call)
        row = self.store.find(object_type, str(call.path["object_id"]))
        if row is not None:
            fault = self.em.ctx.faults.record_fault("hubspot", object_type, str(row.id))
            if fault == "lock":
                raise HsError(423, f"{row.id} is locked. Retry after 2 seconds.", "LOCKED")
            self.store.archive(object_type, [row.id], self.em.now_ms())
            self.em.ctx.stats.record_written("hubspot", object_type, 1)
        return Response(status_code=204)

    def merge_objects(self, call: Call) -> Response:
        object_type = self.object_type(call)
        body = call.json_object()
        primary = self.store.find(object_type, str(body.get("primaryObjectId", "")))
        other = self.store.find(object_type, str(body.get("objectIdToMerge", "")))
        if primary is None or other is None:
            raise not_found()
        if primary.id == other.id:
            raise bad_request("Cannot merge an object with itself")
        row = self.em.merge(object_type, primary, other)
        return json_response(self.record_json(row, None, everything=True))

    # -- search -------------------------------------------------------------------------------

    def search(self, call: Call) -> Response:
        object_type = self.object_type(call)
        text = call.raw.decode("utf-8", errors="replace")
        if len(text) > 3000:
            raise bad_request(
                f"Search request body is {len(text)} characters; the maximum is 3000."
            )
        body = call.json_object()
        lag = self.em.ctx.config.hs_search_index_lag_ms
        visible = self.em.now_ms() - lag if lag > 0 else None
        try:
            compiled = compile_search(
                object_type, body, self.store.properties(object_type), visible_before_ms=visible
            )
        except SearchError as exc:
            raise bad_request(str(exc)) from exc
        total = self.store.count(object_type, compiled.where, compiled.params)
        rows = self.store.fetch(
            object_type,
            f"WHERE {compiled.where} ORDER BY {compiled.order_by} LIMIT ? OFFSET ?",
            [*compiled.params, compiled.limit, compiled.offset],
        )
        out: dict[str, Any] = {
            "total": total,
            "results": [self.record_json(r, compiled.properties) for r in rows],
        }
        end = compiled.offset + len(rows)
        if rows and end < total:
            out["paging"] = {"next": {"after": str(end)}}
        return json_response(out)

    # -- batch --------------------------------------------------------------------------------

    def batch_read(self, call: Call) -> Response:
        object_type = self.object_type(call)
        started = self.em.now_ms()
        body = call.json_object()
        inputs = self.inputs(body)
        id_property = body.get("idProperty") or None
        self.check_id_property(object_type, id_property)
        keys = self.input_ids(inputs)
        props = body.get("properties")
        requested = [str(p) for p in props] if isinstance(props, list) and props else None
        found = self.store.find_many(
            object_type, keys, id_property=id_property, archived=call.query_bool("archived")
        )
        results = [self.record_json(found[k], requested) for k in keys if k in found]
        missing = [k for k in keys if k not in found]
        errors = [self.not_found_error(object_type, missing)] if missing else []
        return self.batch_body(results, errors, started, 200)

    def batch_create(self, call: Call) -> Response:
        object_type = self.object_type(call)
        started = self.em.now_ms()
        inputs = self.inputs(call.json_object())
        traces = [i.get("objectWriteTraceId") for i in inputs]
        per_item = all(traces) and len(set(traces)) == len(traces)
        prepared: list[tuple[dict[str, str | None], list[tuple[str, int, int]]] | ItemError] = []
        for item in inputs:
            try:
                values = self.em.validate(object_type, item.get("properties"), for_create=True)
                links = self.inline_associations(object_type, item.get("associations"))
                prepared.append((values, links))
            except ItemError as exc:
                if not per_item:
                    raise
                prepared.append(exc)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        with self.em.ctx.lock:
            now = self.em.now_ms()
            for item, prep, trace in zip(inputs, prepared, traces, strict=True):
                del item
                context = {"objectWriteTraceId": [str(trace)]} if trace else None
                if isinstance(prep, ItemError):
                    errors.append(prep.body(context))
                    continue
                values, links = prep
                try:
                    row = self.em.write(
                        object_type, None, values, events, now_ms=now, fault_key=str(trace or "")
                    )
                except ItemError as exc:
                    errors.append(exc.body(context))
                    continue
                self.store.associate((object_type, row.id, t, i, k) for t, i, k in links)
                out = self.record_json(row, None, everything=True)
                if trace:
                    out["objectWriteTraceId"] = str(trace)
                results.append(out)
            self.store.commit()
        self.em.emit(events)
        return self.batch_body(results, errors, started, 201)

    def batch_update(self, call: Call) -> Response:
        object_type = self.object_type(call)
        started = self.em.now_ms()
        body = call.json_object()
        inputs = self.inputs(body)
        keys = self.input_ids(inputs)
        id_properties = {i.get("idProperty") or body.get("idProperty") or None for i in inputs}
        for id_property in id_properties:
            self.check_id_property(object_type, id_property)
        traces = [i.get("objectWriteTraceId") for i in inputs]
        per_item = all(traces) and len(set(traces)) == len(traces)
        prepared: list[dict[str, str | None] | ItemError] = []
        for item in inputs:
            try:
                prepared.append(self.em.validate(object_type, item.get("properties")))
            except ItemError as exc:
                if not per_item:
                    raise
                prepared.append(exc)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        missing: list[str] = []
        events: list[dict[str, Any]] = []
        with self.em.ctx.lock:
            now = self.em.now_ms()
            for item, key, prep, trace in zip(inputs, keys, prepared, traces, strict=True):
                context: dict[str, list[str]] = {"ids": [key]}
                if trace:
                    context["objectWriteTraceId"] = [str(trace)]
                if isinstance(prep, ItemError):
                    errors.append(prep.body(context))
                    continue
                id_property = item.get("idProperty") or body.get("idProperty") or None
                row = self.store.find(object_type, key, id_property=id_property)
                if row is None:
                    missing.append(key)
                    continue
                try:
                    row = self.em.write(object_type, row, prep, events, now_ms=now)
                except ItemError as exc:
                    errors.append(exc.body(context))
                    continue
                out = self.record_json(row, None, everything=True)
                if trace:
                    out["objectWriteTraceId"] = str(trace)
                results.append(out)
            self.store.commit()
        self.em.emit(events)
        if missing:
            errors.insert(0, self.not_found_error(object_type, missing))
        return self.batch_body(results, errors, started, 200)

    def batch_upsert(self, call: Call) -> Response:
        object_type = self.object_type(call)
        started = self.em.now_ms()
        body = call.json_object()
        inputs = self.inputs(body)
        keys = self.input_ids(inputs)
        portal = self.em.ctx.config.hs_portal_id
        id_properties: list[str] = []
        for item in inputs:
            id_property = str(item.get("idProperty") or schema.ID_PROPERTY)
            prop = self.store.properties(object_type).get(id_property)
            if prop is None or not prop.has_unique_value:
                raise bad_request(
                    f"Unable to perform update/upsert by non-unique "
                    f"{schema.TYPE_IDS[object_type]} property {id_property} in portal ID {portal}"
                )
            id_properties.append(id_property)
        prepared = [self.em.validate(object_type, i.get("properties")) for i in inputs]
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        with self.em.ctx.lock:
            now = self.em.now_ms()
            for key, id_property, values in zip(keys, id_properties, prepared, strict=True):
                row = self.store.find(object_type, key, id_property=id_property)
                is_new = row is None
                if is_new:
                    values = {**values, id_property: key}
                try:
                    row = self.em.write(object_type, row, values, events, now_ms=now, fault_key=key)
                except ItemError as exc:
                    errors.append(exc.body({"ids": [key]}))
                    continue
                out = self.record_json(row, None, everything=True)
                out["new"] = is_new
                results.append(out)
            self.store.commit()
        self.em.emit(events)
        return self.batch_body(results, errors, started, 200)

    def batch_archive(self, call: Call) -> Response:
        object_type = self.object_type(call)
        inputs = self.inputs(call.json_object())
        keys = self.input_ids(inputs)
        found = self.store.find_many(object_type, keys, id_property=None, archived=False)
        ids = [row.id for row in found.values()]
        n = self.store.archive(object_type, ids, self.em.now_ms())
        self.em.ctx.stats.record_written("hubspot", object_type, n)
        return Response(status_code=204)

    # -- properties -----------------------------------------------------------------------------

    def list_properties(self, call: Call) -> Response:
        object_type = self.object_type(call)
        if call.query_bool("archived"):
            return json_response({"results": []})
        props = self.store.properties(object_type).values()
        return json_response({"results": [p.to_json(object_type) for p in props]})

    def get_property(self, call: Call) -> Response:
        object_type = self.object_type(call)
        prop = self.store.properties(object_type).get(str(call.path["name"]))
        if prop is None:
            raise HsError(
                404,
                f"Unable to find property {call.path['name']}",
                "OBJECT_NOT_FOUND",
            )
        return json_response(prop.to_json(object_type))

    def create_property(self, call: Call) -> Response:
        object_type = self.object_type(call)
        body = call.json_object()
        missing = [
            k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)
        ]
        if missing:
            raise bad_request(f"Missing required fields: {missing}")
        name = str(body["name"])
        with self.em.ctx.lock:
            defs = self.store.properties(object_type)
            if name in defs:
                raise HsError(
                    409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS"
                )
            if body["type"] not in schema.VALID_TYPES:
                raise bad_request(f"Invalid type {body['type']!r}")
            if body["fieldType"] not in schema.VALID_FIELD_TYPES:
                raise bad_request(f"Invalid fieldType {body['fieldType']!r}")
            unique = bool(body.get("hasUniqueValue", False))
            if unique and sum(p.has_unique_value for p in defs.values()) >= MAX_UNIQUE_PROPERTIES:
                raise bad_request(
                    f"Maximum of {MAX_UNIQUE_PROPERTIES} unique value properties reached for "
                    f"{object_type}"
                )
            options = body.get("options") or []
            prop = PropertyDef(
                name=name,
                type=str(body["type"]),
                field_type=str(body["fieldType"]),
                label=str(body["label"]),
                group_name=str(body["groupName"]),
                description=str(body.get("description", "")),
                has_unique_value=unique,
                hubspot_defined=False,
                options=_options(options)[0],
                option_labels=_options(options)[1],
                display_order=_int_or(body.get("displayOrder"), -1),
                created_ms=self.em.now_ms(),
            )
            try:
                self.store.add_property(object_type, prop)
            except ValueError as exc:
                raise bad_request(str(exc)) from exc
        return json_response(prop.to_json(object_type), 201)

    def update_property(self, call: Call) -> Response:
        """``PATCH /crm/v3/properties/{type}/{name}``: change a property's definition (label,
        group, description, display order, type and field type, enumeration options). HubSpot's
        read-only properties (``hs_object_id``, stamps) refuse; options only fit enumerations."""
        object_type = self.object_type(call)
        name = str(call.path["name"])
        body = call.json_object()
        with self.em.ctx.lock:
            prop = self.store.properties(object_type).get(name)
            if prop is None:
                raise HsError(404, f"Unable to find property {name}", "OBJECT_NOT_FOUND")
            if prop.read_only:
                raise invalid_field(
                    f"{name} is a read-only property; its definition cannot be changed.", name
                )
            changes: dict[str, Any] = {}
            for key, attr in (("label", "label"), ("description", "description")):
                if body.get(key) is not None:
                    changes[attr] = str(body[key])
            if body.get("displayOrder") is not None:
                changes["display_order"] = _int_or(body["displayOrder"], -1)
            group = body.get("groupName")
            if group is not None:
                if not any(n == group for n, _, _ in self.store.groups(object_type)):
                    raise invalid_field(f"Property group {group} does not exist", "groupName")
                changes["group_name"] = str(group)
            new_type = str(body.get("type") or prop.type)
            new_field = str(body.get("fieldType") or prop.field_type)
            if new_type not in schema.VALID_TYPES:
                raise invalid_field(f"Invalid type {new_type!r}", "type")
            if new_field not in schema.VALID_FIELD_TYPES:
                raise invalid_field(f"Invalid fieldType {new_field!r}", "fieldType")
            if prop.hubspot_defined and (new_type, new_field) != (prop.type, prop.field_type):
                raise invalid_field(
                    f"The type of HubSpot-defined property {name} cannot be changed", "type"
                )
            changes["type"], changes["field_type"] = new_type, new_field
            if body.get("options") is not None:
                changes["options"], changes["option_labels"] = _options(body["options"])
            options = changes.get("options", prop.options)
            if options and new_type != "enumeration":
                raise invalid_field(
                    f"Options are only allowed on enumeration properties, not {new_type}", "options"
                )
            updated = replace(prop, **changes)
            self.store.add_property(object_type, updated)
        return json_response(updated.to_json(object_type))

    def list_groups(self, call: Call) -> Response:
        object_type = self.object_type(call)
        return json_response(
            {
                "results": [
                    {"name": n, "label": lb, "displayOrder": o, "archived": False}
                    for n, lb, o in self.store.groups(object_type)
                ]
            }
        )

    def get_group(self, call: Call) -> Response:
        object_type = self.object_type(call)
        for n, lb, o in self.store.groups(object_type):
            if n == call.path["name"]:
                return json_response({"name": n, "label": lb, "displayOrder": o, "archived": False})
        raise HsError(404, f"Unable to find group {call.path['name']}", "OBJECT_NOT_FOUND")

    def create_group(self, call: Call) -> Response:
        object_type = self.object_type(call)
        body = call.json_object()
        name, label = body.get("name"), body.get("label")
        if not name or not label:
            raise bad_request("name and label are required")
        with self.em.ctx.lock:
            if any(n == name for n, _, _ in self.store.groups(object_type)):
                raise HsError(409, f"Group named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
            order = _int_or(body.get("displayOrder"), -1)
            self.store.add_group(object_type, str(name), str(label), order)
        return json_response(
            {"name": name, "label": label, "displayOrder": order, "archived": False}, 201
        )

    # -- associations v4 ------------------------------------------------------------------------

    @staticmethod
    def association_types(type_ids: list[int]) -> list[dict[str, Any]]:
        return [
            {"category": "HUBSPOT_DEFINED", "typeId": t, "label": schema.TYPE_LABELS.get(t)}
            for t in type_ids
        ]

    def list_associations(self, call: Call) -> Response:
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        object_id = _int_id(call.path["object_id"])
        limit = max(1, min(call.query_int("limit", 500), 500))
        after_raw = call.query("after")
        after = _decode_cursor(after_raw) if after_raw else 0
        if self.store.find(from_type, str(object_id)) is None:
            raise not_found()
        found = self.store.associations(
            from_type, [object_id], to_type, after=after, limit=limit + 1
        )
        targets = list(found.get(object_id, {}).items())
        page = targets[:limit]
        body: dict[str, Any] = {
            "results": [
                {"toObjectId": str(t), "associationTypes": self.association_types(k)}
                for t, k in page
            ]
        }
        if len(targets) > limit:
            token = _encode_cursor(page[-1][0])
            body["paging"] = {
                "next": {
                    "after": token,
                    "link": f"{call.base_url()}/crm/v4/objects/{from_type}/{object_id}/"
                    f"associations/{to_type}?after={token}",
                }
            }
        return json_response(body)

    def batch_read_associations(self, call: Call) -> Response:
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        started = self.em.now_ms()
        inputs = self.inputs(call.json_object(), MAX_ASSOC_BATCH)
        keys = [str(i.get("id", "")) for i in inputs]
        ids = [_int_id(k) for k in keys]
        found = self.store.associations(from_type, ids, to_type)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for key, object_id in zip(keys, ids, strict=True):
            targets = found.get(object_id)
            if not targets:
                errors.append(self.no_associations_error(from_type, to_type, key))
                continue
            results.append(
                {
                    "from": {"id": key},
                    "to": [
                        {"toObjectId": str(t), "associationTypes": self.association_types(k)}
                        for t, k in targets.items()
                    ],
                }
            )
        return self.batch_body(results, errors, started, 200)

    def batch_read_associations_v3(self, call: Call) -> Response:
        """``POST /crm/v3/associations/{from}/{to}/batch/read``: the v3 shape, ``to`` as
        ``{"id", "type"}`` with v3 type names (``deal_to_company``), one entry per type."""
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        started = self.em.now_ms()
        inputs = self.inputs(call.json_object(), MAX_ASSOC_BATCH)
        keys = [str(i.get("id", "")) for i in inputs]
        found = self.store.associations(from_type, [_int_id(k) for k in keys], to_type)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for key in keys:
            targets = found.get(_int_id(key))
            if not targets:
                errors.append(self.no_associations_error(from_type, to_type, key))
                continue
            results.append(
                {
                    "from": {"id": key},
                    "to": [
                        {"id": str(t), "type": schema.v3_type_name(from_type, to_type, k)}
                        for t, kinds in targets.items()
                        for k in kinds
                    ],
                }
            )
        return self.batch_body(results, errors, started, 200)

    @staticmethod
    def no_associations_error(from_type: str, to_type: str, key: str) -> dict[str, Any]:
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "message": f"No {schema.SINGULAR[to_type].lower()} is associated with "
            f"{schema.SINGULAR[from_type].lower()} {key}.",
            "context": {"fromObjectId": [key]},
        }

    def associate_default(self, call: Call) -> Response:
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        started = self.em.now_ms()
        from_id = _int_id(call.path["object_id"])
        to_id = _int_id(call.path["to_id"])
        types = schema.ASSOCIATION_TYPES.get((from_type, to_type))
        if types is None:
            raise bad_request(f"No default association from {from_type} to {to_type}")
        self.require(from_type, from_id)
        self.require(to_type, to_id)
        type_id = types[0]
        self.store.associate([(from_type, from_id, to_type, to_id, type_id)])
        results = [
            {
                "from": {"id": str(from_id)},
                "to": {"id": str(to_id)},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": type_id,
                },
            },
            {
                "from": {"id": str(to_id)},
                "to": {"id": str(from_id)},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": schema.REVERSE_TYPE[type_id],
                },
            },
        ]
        return self.batch_body(results, [], started, 200)

    def associate_labelled(self, call: Call) -> Response:
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        from_id = _int_id(call.path["object_id"])
        to_id = _int_id(call.path["to_id"])
        specs = call.json()
        if not isinstance(specs, list) or not specs:
            raise bad_request("Body must be a list of association specs")
        allowed = schema.ASSOCIATION_TYPES.get((from_type, to_type), ())
        type_ids: list[int] = []
        for spec in specs:
            type_id = _int_or(spec.get("associationTypeId"), 0)
            if type_id not in allowed:
                raise bad_request(
                    f"{type_id} is not a valid association type from {from_type} to {to_type}"
                )
            type_ids.append(type_id)
        self.require(from_type, from_id)
        self.require(to_type, to_id)
        self.store.associate([(from_type, from_id, to_type, to_id, t) for t in type_ids])
        return json_response(
            {
                "fromObjectTypeId": schema.TYPE_IDS[from_type],
                "fromObjectId": from_id,
                "toObjectTypeId": schema.TYPE_IDS[to_type],
                "toObjectId": to_id,
                "labels": [lb for t in type_ids if (lb := schema.TYPE_LABELS.get(t))],
            },
            201,
        )

    def delete_association(self, call: Call) -> Response:
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        self.store.dissociate(
            from_type, _int_id(call.path["object_id"]), to_type, _int_id(call.path["to_id"])
        )
        return Response(status_code=204)

    def batch_create_associations(self, call: Call) -> Response:
        """``POST /crm/v4/associations/{from}/{to}/batch/create``: labelled links, 201; inputs
        with an unknown id or a type that does not join the pair are 207 errors."""
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        started = self.em.now_ms()
        inputs = self.inputs(call.json_object())
        allowed = schema.ASSOCIATION_TYPES.get((from_type, to_type), ())
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        links: list[tuple[str, int, str, int, int]] = []
        for item in inputs:
            from_key = str((item.get("from") or {}).get("id", ""))
            to_key = str((item.get("to") or {}).get("id", ""))
            type_ids = [_int_or(t.get("associationTypeId"), 0) for t in item.get("types") or []]
            bad_types = [t for t in type_ids if t not in allowed]
            if not type_ids or bad_types:
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "subCategory": "crm.associations.INVALID_ASSOCIATION_TYPE",
                        "message": f"{bad_types or type_ids} is not a valid association type "
                        f"from {from_type} to {to_type}",
                        "context": {"associationTypeId": [str(t) for t in bad_types]},
                    }
                )
                continue
            from_row = self.store.find(from_type, from_key)
            to_row = self.store.find(to_type, to_key)
            if from_row is None or to_row is None:
                missing = [k for k, r in ((from_key, from_row), (to_key, to_row)) if r is None]
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "subCategory": "crm.associations.INVALID_OBJECT_IDS",
                        "message": f"No object found for ids {missing}",
                        "context": {"ids": missing},
                    }
                )
                continue
            links += [(from_type, from_row.id, to_type, to_row.id, t) for t in type_ids]
            results.append(
                {
                    "fromObjectTypeId": schema.TYPE_IDS[from_type],
                    "fromObjectId": from_row.id,
                    "toObjectTypeId": schema.TYPE_IDS[to_type],
                    "toObjectId": to_row.id,
                    "labels": [lb for t in type_ids if (lb := schema.TYPE_LABELS.get(t))],
                }
            )
        self.store.associate(links)
        return self.batch_body(results, errors, started, 201)

    def batch_archive_associations(self, call: Call) -> Response:
        """``POST /crm/v4/associations/{from}/{to}/batch/archive``: remove every link (all
        types) between each ``from`` and its ``to`` ids; 204 whether or not they existed."""
        from_type = self.object_type(call, "from_type")
        to_type = self.object_type(call, "to_type")
        for item in self.inputs(call.json_object()):
            from_id = _int_id((item.get("from") or {}).get("id", ""))
            for target in item.get("to") or []:
                self.store.dissociate(from_type, from_id, to_type, _int_id(target.get("id", "")))
        return Response(status_code=204)

    def list_schemas(self, call: Call) -> Response:
        """Custom object schemas: the sandbox has none (standard objects are not listed)."""
        del call
        return json_response({"results": []})

    def require(self, object_type: str, object_id: int) -> None:
        if self.store.find(object_type, str(object_id)) is None:
            raise bad_request(
                f"{schema.SINGULAR[object_type]}={object_id} is not valid",
                subCategory="crm.associations.INVALID_OBJECT_IDS",
            )

    # -- owners ---------------------------------------------------------------------------------

    @staticmethod
    def owner_json(row: tuple[int, str, str, str, int]) -> dict[str, Any]:
        i, e, f, ln, c = row
        return {
            "id": str(i),
            "email": e,
            "firstName": f,
            "lastName": ln,
            "userId": i - schema.OWNER_ID_BASE,
            "createdAt": schema.iso_from_ms(c),
            "updatedAt": schema.iso_from_ms(c),
            "archived": False,
        }

    def get_owner(self, call: Call) -> Response:
        """``GET /crm/v3/owners/{id}``, ``idProperty=id`` (default) or ``userId``."""
        id_property = call.query("idProperty") or "id"
        if id_property not in ("id", "userId"):
            raise bad_request(f"idProperty must be id or userId, got {id_property!r}")
        raw = str(call.path["owner_id"])
        number = _owner_number(raw)
        if number is not None and id_property == "userId":
            number += schema.OWNER_ID_BASE
        row = None if number is None else self.store.owner(number)
        if row is None:
            raise HsError(404, f"Owner {raw} not found", "OBJECT_NOT_FOUND")
        return json_response(self.owner_json(row))

    def list_owners(self, call: Call) -> Response:
        limit = max(1, min(call.query_int("limit", 100), 500))
        after = call.query_int("after", 0)
        email = call.query("email")
        rows = self.store.owners(after, limit + 1 if not email else 100_000)
        if email:
            rows = [r for r in rows if r[1].lower() == email.lower()][: limit + 1]
        page = rows[:limit]
        body: dict[str, Any] = {"results": [self.owner_json(r) for r in page]}
        if len(rows) > limit:
            body["paging"] = {"next": {"after": str(page[-1][0])}}
        return json_response(body)


def _target_type(from_type: str, type_id: int) -> str | None:
    for (f, t), ids in schema.ASSOCIATION_TYPES.items():
        if f == from_type and type_id in ids:
            return t
    return None


def _int_id(value: Any) -> int:
    try:
        number = int(str(value))
    except ValueError as exc:
        raise bad_request(f"{value!r} is not a valid object id") from exc
    if not 0 <= number < 2**63:
        raise bad_request(f"{value!r} is not a valid object id")
    return number


def _int_or(value: Any, default: int) -> int:
    """An integer field the body model has already type-checked (int, integer string or null)."""
    return default if value is None else int(value)


def _owner_number(raw: str) -> int | None:
    try:
        number = int(raw)
    except ValueError:
        return None
    return number if 0 <= number < 2**63 - schema.OWNER_ID_BASE else None


def _options(raw: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(values, labels)`` of enumeration options (the body model has checked their types);
    400 naming ``options`` for an option without a value or a value given twice."""
    if not isinstance(raw, list):
        raise invalid_field("options must be a list", "options")
    values: list[str] = []
    labels: list[str] = []
    for i, option in enumerate(raw):
        value = option.get("value") if isinstance(option, dict) else None
        if value is None or str(value) == "":
            raise invalid_field(f"options[{i}].value is required", f"options[{i}].value")
        if str(value) in values:
            raise invalid_field(
                f"Duplicate option value {value!r}; option values must be unique",
                f"options[{i}].value",
            )
        values.append(str(value))
        label = option.get("label")
        labels.append(str(label) if label not in (None, "") else str(value).title())
    return tuple(values), tuple(labels)


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode()


def _decode_cursor(token: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except ValueError as exc:
        raise bad_request(f"Invalid paging cursor {token!r}") from exc


def build_routes(em: HubSpotEmulator) -> list[BaseRoute]:
    """Starlette routes of the HubSpot surface (specific paths before ``{object_id}``)."""
    api = Api(em)
    ep = api.endpoint
    obj = "/crm/v3/objects/{object_type}"
    props = "/crm/v3/properties/{object_type}"
    assoc = "/crm/v4/objects/{from_type}/{object_id}/associations"
    return [
        Route("/crm/v3/owners", ep(api.list_owners), methods=["GET"]),
        Route("/crm/v3/owners/", ep(api.list_owners), methods=["GET"]),
        Route("/crm/v3/owners/{owner_id}", ep(api.get_owner), methods=["GET"]),
        Route("/crm/v3/schemas", ep(api.list_schemas), methods=["GET"]),
        Route("/crm-object-schemas/v3/schemas", ep(api.list_schemas), methods=["GET"]),
        Route(f"{obj}/search", ep(api.search, search=True, body="search"), methods=["POST"]),
        Route(f"{obj}/merge", ep(api.merge_objects, body="merge"), methods=["POST"]),
        Route(f"{obj}/batch/read", ep(api.batch_read, body="batch"), methods=["POST"]),
        Route(f"{obj}/batch/create", ep(api.batch_create, body="batch"), methods=["POST"]),
        Route(f"{obj}/batch/update", ep(api.batch_update, body="batch"), methods=["POST"]),
        Route(f"{obj}/batch/upsert", ep(api.batch_upsert, body="batch"), methods=["POST"]),
        Route(f"{obj}/batch/archive", ep(api.batch_archive, body="batch"), methods=["POST"]),
        Route(obj, ep(api.list_objects), methods=["GET"]),
        Route(obj, ep(api.create_object, body="object"), methods=["POST"]),
        Route(obj + "/{object_id}", ep(api.get_object), methods=["GET"]),
        Route(obj + "/{object_id}", ep(api.update_object, body="object"), methods=["PATCH"]),
        Route(obj + "/{object_id}", ep(api.archive_object), methods=["DELETE"]),
        Route(f"{props}/groups", ep(api.list_groups), methods=["GET"]),
        Route(f"{props}/groups", ep(api.create_group, body="group"), methods=["POST"]),
        Route(props + "/groups/{name}", ep(api.get_group), methods=["GET"]),
        Route(props, ep(api.list_properties), methods=["GET"]),
        Route(props, ep(api.create_property, body="property"), methods=["POST"]),
        Route(props + "/{name}", ep(api.get_property), methods=["GET"]),
        Route(props + "/{name}", ep(api.update_property, body="property"), methods=["PATCH"]),
        Route(
            "/crm/v4/associations/{from_type}/{to_type}/batch/read",
            ep(api.batch_read_associations, body="batch"),
            methods=["POST"],
        ),
        Route(
            "/crm/v4/associations/{from_type}/{to_type}/batch/create",
            ep(api.batch_create_associations, body="association_batch_create"),
            methods=["POST"],
        ),
        Route(
            "/crm/v4/associations/{from_type}/{to_type}/batch/archive",
            ep(api.batch_archive_associations, body="association_batch_archive"),
            methods=["POST"],
        ),
        Route(
            "/crm/v3/associations/{from_type}/{to_type}/batch/read",
            ep(api.batch_read_associations_v3, body="batch"),
            methods=["POST"],
        ),
        Route(assoc + "/default/{to_type}/{to_id}", ep(api.associate_default), methods=["PUT"]),
        Route(assoc + "/{to_type}", ep(api.list_associations), methods=["GET"]),
        Route(
            assoc + "/{to_type}/{to_id}",
            ep(api.associate_labelled, body="association_specs"),
            methods=["PUT"],
        ),
        Route(assoc + "/{to_type}/{to_id}", ep(api.delete_association), methods=["DELETE"]),
    ]
