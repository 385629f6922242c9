"""``/composite`` and ``/composite/batch``: several REST calls in one request, each subrequest run
through the same handlers as a direct call (so its status and body are what that call answers).

- ``composite``: ``{"allOrNone", "compositeRequest": [{"method", "url", "referenceId", "body"}]}``
  -> 200 ``{"compositeResponse": [{"body", "httpHeaders", "httpStatusCode", "referenceId"}]}``.
  Later subrequests may use ``@{ref.field}`` / ``@{ref.records[0].Id}`` from earlier bodies.
  With ``allOrNone`` true the first failing subrequest keeps its error, every other one answers
  400 ``PROCESSING_HALTED`` and all writes are rolled back; without it a subrequest whose
  reference cannot be resolved answers ``PROCESSING_HALTED`` and the others run.
- ``composite/batch``: ``{"haltOnError", "batchRequests": [{"method", "url", "richInput"}]}``
  -> 200 ``{"hasErrors", "results": [{"statusCode", "result"}]}``; each subrequest is its own
  transaction; after an error with ``haltOnError`` the rest answer 412 ``BATCH_PROCESSING_HALTED``.
- At most 25 subrequests (composite: at most 5 of them queries or sObject Collections); more is a
  400 ``LIMIT_EXCEEDED`` for the whole request. The whole request is one API call.

The limit error's wording is not published; the codes of the per-subrequest errors are
Salesforce's (REST API guide, "Composite" and "Batch").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.routing import Match
from starlette.routing import Route as StarletteRoute

from crmsync_sandbox.salesforce.http import ApiError, Call, Handler, json_response
from crmsync_sandbox.salesforce.store import RecordError

if TYPE_CHECKING:
    from crmsync_sandbox.salesforce.store import Store

MAX_SUBREQUESTS = 25
MAX_QUERY_OR_COLLECTION = 5
VERSION = re.compile(r"^v(\d{1,3}\.\d)$")
REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
REFERENCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
HALTED = "The transaction was rolled back since another operation in the same transaction failed."
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


class _Rollback(Exception):
    """Undo every write of an allOrNone composite request."""


class _Unresolved(Exception):
    """A ``@{...}`` reference names no value of an earlier subrequest."""


def _bad(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


class Composite:
    """The two handlers; ``routes`` are the REST routes a subrequest may reach."""

    def __init__(self, store: Store, routes: Callable[[], list[tuple[StarletteRoute, Handler]]]):
        self.store = store
        self.routes = routes

    # ---- dispatch --------------------------------------------------------------------------

    def run(
        self, parent: Call, method: str, url: str, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """Run one subrequest through its REST handler: ``(status, parsed body, headers)``."""
        parts = urlsplit(url)
        path = parts.path
        if not path.startswith("/"):
            path = "/services/data/" + path
        path = path.rstrip("/") or "/"
        scope = {"type": "http", "path": path, "method": method}
        for route, handler in self.routes():
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            params = {k: str(v) for k, v in child.get("path_params", {}).items()}
            version = VERSION.match(params.get("version", ""))
            if version is None:
                break
            tail = route.path.partition("{version}/")[2]
            if tail.startswith("jobs/") or (
                tail.startswith("composite") and not tail.startswith("composite/sobjects")
            ):
                raise _bad("INVALID_INPUT", f"{path} is not supported as a subrequest")
            call = Call(
                method=method,
                path=path,
                version=version.group(1),
                params=QueryParams(parse_qsl(parts.query, keep_blank_values=True)),
                headers=Headers(headers={"content-type": "application/json"}),
                body=b"" if body is None else json.dumps(body).encode(),
                base_url=parent.base_url,
                path_params=params,
            )
            try:
                response = handler(call)
            except ApiError as exc:
                response = exc.response()
            except RecordError as exc:
                response = ApiError(exc.status, exc.code, exc.message, exc.fields).response()
            return response.status_code, _parse(response), _headers(response, path)
        not_found = ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return 404, [{"message": not_found.message, "errorCode": not_found.code}], {}

    # ---- composite -------------------------------------------------------------------------

    def composite(self, call: Call) -> Response:
        call.require("POST")
        body = call.json_object()
        requests = body.get("compositeRequest")
        if not isinstance(requests, list) or not requests:
            raise _bad("JSON_PARSER_ERROR", "compositeRequest must be a non-empty array")
        _check_count(len(requests))
        subs: list[tuple[str, str, str, Any]] = []
        seen: set[str] = set()
        for i, sub in enumerate(requests):
            if not isinstance(sub, dict):
                raise _bad("JSON_PARSER_ERROR", f"compositeRequest[{i}] must be an object")
            method, url, ref = sub.get("method"), sub.get("url"), sub.get("referenceId")
            if not isinstance(method, str) or method.upper() not in METHODS:
                raise _bad(
                    "INVALID_INPUT", f"compositeRequest[{i}].method must be one of {METHODS}"
                )
            if not isinstance(url, str) or not url.startswith("/services/data/"):
                raise _bad(
                    "INVALID_INPUT", f"compositeRequest[{i}].url must start with /services/data/"
                )
            if not isinstance(ref, str) or not REFERENCE_ID.match(ref):
                raise _bad(
                    "INVALID_INPUT",
                    f"compositeRequest[{i}].referenceId must start with a letter and hold only "
                    "letters, digits and underscores",
                )
            if ref in seen:
                raise _bad("INVALID_INPUT", f"Duplicate referenceId provided in the request: {ref}")
            seen.add(ref)
            subs.append((method.upper(), url, ref, sub.get("body")))
        heavy = sum(1 for _, url, _, _ in subs if _query_or_collection(url))
        if heavy > MAX_QUERY_OR_COLLECTION:
            raise _bad(
                "LIMIT_EXCEEDED",
                f"A composite request can contain up to {MAX_QUERY_OR_COLLECTION} query or "
                f"sObject Collections subrequests; this one has {heavy}",
            )
        all_or_none = body.get("allOrNone") is True
        results: list[dict[str, Any]] = []
        try:
            with self.store.atomic():
                for method, url, ref, sub_body in subs:
                    results.append(self._one(call, method, url, ref, sub_body, results))
                    if all_or_none and results[-1]["httpStatusCode"] >= 400:
                        raise _Rollback
        except _Rollback:
            failed = len(results) - 1
            halted = [{"errorCode": "PROCESSING_HALTED", "message": HALTED}]
            results = [
                r
                if i == failed
                else {**r, "body": halted, "httpHeaders": {}, "httpStatusCode": 400}
                for i, r in enumerate(results)
            ] + [
                {"body": halted, "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref}
                for _, _, ref, _ in subs[len(results) :]
            ]
        return json_response({"compositeResponse": results})

    def _one(
        self,
        call: Call,
        method: str,
        url: str,
        ref: str,
        body: Any,
        done: list[dict[str, Any]],
    ) -> dict[str, Any]:
        try:
            url = _resolve_text(url, done)
            body = _resolve(body, done)
        except _Unresolved as exc:
            halted = [{"errorCode": "PROCESSING_HALTED", "message": str(exc)}]
            return {"body": halted, "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref}
        try:
            status, answer, headers = self.run(call, method, url, body)
        except ApiError as exc:
            status, answer, headers = (
                exc.status,
                [{"errorCode": exc.code, "message": exc.message}],
                {},
            )
        return {
            "body": answer,
            "httpHeaders": headers,
            "httpStatusCode": status,
            "referenceId": ref,
        }

    # ---- batch -----------------------------------------------------------------------------

    def batch(self, call: Call) -> Response:
        call.require("POST")
        body = call.json_object()
        requests = body.get("batchRequests")
        if not isinstance(requests, list) or not requests:
            raise _bad("JSON_PARSER_ERROR", "batchRequests must be a non-empty array")
        _check_count(len(requests))
        subs: list[tuple[str, str, Any]] = []
        for i, sub in enumerate(requests):
            if not isinstance(sub, dict):
                raise _bad("JSON_PARSER_ERROR", f"batchRequests[{i}] must be an object")
            method, url = sub.get("method"), sub.get("url")
            if not isinstance(method, str) or method.upper() not in METHODS:
                raise _bad("INVALID_BATCH_REQUEST", f"batchRequests[{i}].method is not valid")
            if not isinstance(url, str) or not url.strip():
                raise _bad("INVALID_BATCH_REQUEST", f"batchRequests[{i}].url is required")
            subs.append((method.upper(), url.strip(), sub.get("richInput")))
        halt = body.get("haltOnError") is True
        results: list[dict[str, Any]] = []
        halted = False
        for method, url, rich_input in subs:
            if halted:
                results.append(
                    {
                        "statusCode": 412,
                        "result": [
                            {
                                "errorCode": "BATCH_PROCESSING_HALTED",
                                "message": "Batch processing halted per request",
                            }
                        ],
                    }
                )
                continue
            path = url if url.startswith("/") else "/services/data/" + url
            if "/composite" in urlsplit(path).path:
                status: int = 400
                answer: Any = [
                    {
                        "errorCode": "INVALID_BATCH_REQUEST",
                        "message": f"{url} is not supported in a batch",
                    }
                ]
            else:
                try:
                    status, answer, _ = self.run(call, method, path, rich_input)
                except ApiError as exc:
                    status, answer = exc.status, [{"errorCode": exc.code, "message": exc.message}]
            results.append({"statusCode": status, "result": answer})
            halted = halt and status >= 400
        has_errors = any(r["statusCode"] >= 400 for r in results)
        return json_response({"hasErrors": has_errors, "results": results})


def _check_count(n: int) -> None:
    if n > MAX_SUBREQUESTS:
        raise _bad(
            "LIMIT_EXCEEDED",
            f"A request can contain up to {MAX_SUBREQUESTS} subrequests; this one has {n}",
        )


def _query_or_collection(url: str) -> bool:
    path = urlsplit(url).path.rstrip("/")
    return bool(re.search(r"/(query|queryAll)(/|$)|/composite/sobjects(/|$)", path))


def _parse(response: Response) -> Any:
    raw = bytes(response.body)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _headers(response: Response, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if response.status_code == 201:
        body = _parse(response)
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            out["Location"] = path.rstrip("/") + "/" + body["id"]
    return out


def _lookup(done: list[dict[str, Any]], ref: str, path: str) -> Any:
    for result in done:
        if result["referenceId"] == ref:
            if result["httpStatusCode"] >= 400:
                break
            value: Any = result["body"]
            for key, index in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
                if key and isinstance(value, dict) and key in value:
                    value = value[key]
                elif index and isinstance(value, list) and int(index) < len(value):
                    value = value[int(index)]
                else:
                    break
            else:
                if value is not None and not isinstance(value, dict | list):
                    return value
            break
    raise _Unresolved(
        f"Invalid reference specified. No value for {ref}{path} found in {ref}. Provided "
        f"referenceId ('{ref}') must be in scope and must refer to a successful subrequest."
    )


def _resolve_text(text: str, done: list[dict[str, Any]]) -> str:
    return REFERENCE.sub(lambda m: str(_lookup(done, m.group(1), m.group(2))), text)


def _resolve(value: Any, done: list[dict[str, Any]]) -> Any:
    """``value`` with every ``@{ref.path}`` in its strings replaced (a whole-string reference
    keeps the referenced value's JSON type)."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole:
            return _lookup(done, whole.group(1), whole.group(2))
        return _resolve_text(value, done)
    if isinstance(value, list):
        return [_resolve(v, done) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, done) for k, v in value.items()}
    return value
