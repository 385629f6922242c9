"""The Salesforce emulator: Starlette routes, authentication, API-usage accounting, and the
:class:`~crmsync_sandbox.context.CrmEmulator` hooks the core calls (seed, touch, close_won, ...).

Every ``/services/data/vXX.X/...`` route is registered twice (with and without a trailing slash)
under the template ``/services/data/{version}/...`` so the core's fault rules can name it. A
request is authenticated (401 ``INVALID_SESSION_ID``), counted against ``sf_daily_api_limit``
(403 ``REQUEST_LIMIT_EXCEEDED`` once exhausted), answered in a worker thread, and stamped with
``Sforce-Limit-Info: api-usage=N/MAX``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute

from crmsync_sandbox.context import CrmName, SandboxContext
from crmsync_sandbox.salesforce.bulk import Bulk
from crmsync_sandbox.salesforce.composite import Composite
from crmsync_sandbox.salesforce.http import ApiError, Call, Handler, json_response
from crmsync_sandbox.salesforce.oauth import SalesforceOAuth
from crmsync_sandbox.salesforce.rest import Rest
from crmsync_sandbox.salesforce.schema import (
    CLOSED_WON,
    build_objects,
    from_db,
    make_custom_field,
)
from crmsync_sandbox.salesforce.store import RecordError, Store
from crmsync_sandbox.salesforce.tooling import Tooling

VERSION = re.compile(r"^v(\d{1,3}\.\d)$")
ALL_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]


class SalesforceEmulator:
    """Implements :class:`~crmsync_sandbox.context.CrmEmulator` for Salesforce."""

    name: CrmName = "salesforce"

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.objects = build_objects(ctx.config.sf_custom_fields)
        self.store = Store(ctx, self.objects)
        self.store.create_tables()
        self.tooling = Tooling(self)  # Tooling API CustomField; without_writeback_fields
        self.rest = Rest(self)
        self.bulk = Bulk(self)
        self._subrequest_routes: list[tuple[StarletteRoute, Handler]] = []
        self.composite = Composite(self.store, lambda: self._subrequest_routes)
        self.api_used = 0
        self._usage_lock = threading.Lock()
        self.api_user_id = self.store.seed_id("005", "U0001")

    # ---- routes ---------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = []
        out.extend(SalesforceOAuth(self).routes())  # token grants and userinfo (oauth.py)
        for path in ("/services/data", "/services/data/"):
            out.append(StarletteRoute(path, self.versions, methods=["GET"], name="sf_versions"))
        table: list[tuple[str, Handler]] = [
            ("query", self.rest.query_),
            ("queryAll", self.rest.query_all),
            ("query/{locator}", self.rest.query_more),
            ("queryAll/{locator}", self.rest.query_more),
            ("limits", self.rest.limits),
            ("sobjects", self.rest.describe_global),
            ("sobjects/{obj}/describe", self.rest.describe),
            ("sobjects/{obj}/updated", self.rest.updated),
            ("sobjects/{obj}/deleted", self.rest.deleted),
            ("sobjects/{obj}", self.rest.sobject),
            ("sobjects/{obj}/{id}", self.rest.record),
            ("sobjects/{obj}/{field}/{value:path}", self.rest.by_external_id),
            ("composite/sobjects", self.rest.collection),
            ("composite/sobjects/{obj}", self.rest.collection_get),
            ("composite/sobjects/{obj}/{field}", self.rest.collection_upsert),
            ("jobs/query", self.bulk.query_jobs),
            ("jobs/query/{job}", self.bulk.query_job),
            ("jobs/query/{job}/results", self.bulk.query_results),
            ("jobs/ingest", self.bulk.ingest_jobs),
            ("jobs/ingest/{job}", self.bulk.ingest_job),
            ("jobs/ingest/{job}/batches", self.bulk.upload),
            ("jobs/ingest/{job}/{kind}", self.bulk.ingest_results),
            ("composite", self.composite.composite),
            ("composite/batch", self.composite.batch),
            ("tooling/sobjects/CustomField", self.tooling.custom_field),
            ("tooling/sobjects/CustomField/{id}", self.tooling.custom_field_by_id),
        ]
        self._subrequest_routes = [
            (StarletteRoute(f"/services/data/{{version}}/{t}", self._endpoint(h)), h)
            for t, h in table
        ]
        for template, handler in table:
            endpoint = self._endpoint(handler)
            full = f"/services/data/{{version}}/{template}"
            name = "sf_" + re.sub(r"[^a-z]+", "_", template.lower()).strip("_")
            out.append(StarletteRoute(full, endpoint, methods=ALL_METHODS, name=name))
            if not template.endswith(":path}"):
                out.append(StarletteRoute(full + "/", endpoint, methods=ALL_METHODS, name=name))
        return out

    def _limit_header(self) -> dict[str, str]:
        return {
            "Sforce-Limit-Info": f"api-usage={self.api_used}/{self.ctx.config.sf_daily_api_limit}"
        }

    def _endpoint(self, handler: Handler) -> Any:
        async def endpoint(request: Request) -> Response:
            version_match = VERSION.match(request.path_params.get("version", ""))
            if version_match is None:
                return ApiError(
                    404, "NOT_FOUND", "The requested resource does not exist"
                ).response()
            if not self._authorized(request):
                return _invalid_session()
            with self._usage_lock:
                if self.api_used >= self.ctx.config.sf_daily_api_limit:
                    exhausted = True
                else:
                    exhausted = False
                    self.api_used += 1
            if exhausted:
                self.ctx.stats.record_rate_limited(
                    "salesforce", str(request.scope.get("sandbox.route", request.url.path))
                )
                response = self.rate_limited_response()
                response.headers.update(self._limit_header())
                return response
            body = await request.body()
            call = Call(
                method=request.method,
                path=request.url.path,
                version=version_match.group(1),
                params=request.query_params,
                headers=request.headers,
                body=body,
                base_url=f"{request.url.scheme}://{request.url.netloc}",
                path_params={k: str(v) for k, v in request.path_params.items()},
            )
            try:
                response = await run_in_threadpool(handler, call)
            except ApiError as exc:
                response = exc.response()
            except RecordError as exc:
                response = ApiError(exc.status, exc.code, exc.message, exc.fields).response()
            response.headers.update(self._limit_header())
            return response

        return endpoint

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            token = request.headers.get("x-sfdc-session", "")
        return bool(self.ctx.tokens.is_valid("salesforce", token.strip()))

    async def versions(self, request: Request) -> Response:
        version = self.ctx.config.sf_api_version
        return json_response(
            [
                {
                    "label": "Winter '24",
                    "url": f"/services/data/v{version}",
                    "version": version,
                }
            ]
        )

    # ---- CrmEmulator hooks ----------------------------------------------------------------

    def load_seed(self, plan: Any) -> None:
        self.store.load_seed(plan)
        if self.ctx.config.emit_seed_webhooks:
            self._emit_seed_closed_won()

    def _emit_seed_closed_won(self) -> None:
        """Outbound Messages for the seed's closed-won opportunities, as if just closed."""
        table = self.objects["opportunity"].table
        with self.ctx.lock:
            rows = self.ctx.db.execute(
                f"SELECT Id FROM {table} WHERE StageName = ? ORDER BY Id", (CLOSED_WON,)
            ).fetchall()
        ids = [str(row[0]) for row in rows]
        for start in range(0, len(ids), 100):
            self.ctx.outbox.emit_salesforce("Opportunity", ids[start : start + 100])

    def is_seeded(self) -> bool:
        return self.store.is_seeded()

    def rate_limited_response(self) -> Response:
        return json_response(
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            403,
        )

    def unavailable_response(self) -> Response:
        return json_response(
            [{"message": "Server temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
            503,
        )

    def close_won(self, object_id: str) -> None:
        obj = self.objects["opportunity"]
        with self.store.atomic() as effects:
            self.store.update(obj, object_id, {"StageName": CLOSED_WON}, effects)

    def touch(
        self, object_name: str, *, ids: Iterable[str] | None, count: int | None, at: datetime
    ) -> list[str]:
        obj = self.store.obj(object_name)
        if obj is None:
            raise KeyError(object_name)
        return self.store.touch(obj, ids, count, at)

    def declare_field(self, object_name: str, field_name: str, field_type: str) -> None:
        obj = self.store.obj(object_name)
        if obj is None:
            raise KeyError(object_name)
        self.store.add_field(obj, make_custom_field(field_name, field_type))

    def read_record(self, object_name: str, object_id: str) -> Mapping[str, Any] | None:
        obj = self.store.obj(object_name)
        if obj is None:
            return None
        with self.store.lock:
            stored = self.store.fetch(obj, object_id)
        if stored is None:
            return None
        out = {f.name: from_db(f, stored.get(f.name)) for f in obj.fields.values()}
        if "IsDeleted" not in out:
            out["IsDeleted"] = stored["_deleted"]
        return out


def _invalid_session() -> Response:
    return json_response(
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
    )
