"""REST resources: query/queryAll with cursors, sObject CRUD and upsert, describe, limits,
``updated``/``deleted``, and sObject Collections (``/composite/sobjects``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from crmsync_sandbox.salesforce.compiler import SoqlError, compile_query
from crmsync_sandbox.salesforce.http import (
    ApiError,
    Call,
    empty,
    json_response,
    not_found_error,
)
from crmsync_sandbox.salesforce.schema import (
    INT_DIGITS,
    FieldDef,
    ObjectDef,
    normalize_id,
    parse_datetime,
    render_datetime,
)
from crmsync_sandbox.salesforce.store import MultipleMatches, RecordError

if TYPE_CHECKING:
    from crmsync_sandbox.salesforce.emulator import SalesforceEmulator

DEFAULT_BATCH = 2000
MIN_BATCH = 200
MAX_COLLECTION = 200
ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}


@dataclass
class CursorState:
    batch: int
    total: int


class _Rollback(Exception):
    """Raised inside an allOrNone transaction to undo it."""


def soql_error(exc: SoqlError) -> ApiError:
    return ApiError(400, exc.code, exc.message)


def record_error(exc: RecordError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, exc.fields)


def batch_size(call: Call) -> int:
    options = call.headers.get("sforce-query-options", "")
    m = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
    if not m:
        return DEFAULT_BATCH
    return max(MIN_BATCH, min(DEFAULT_BATCH, int(m.group(1))))


class Rest:
    """Handlers of the REST API; state lives in the emulator's store."""

    def __init__(self, emu: SalesforceEmulator) -> None:
        self.emu = emu
        self.store = emu.store
        self.cursor_state: dict[str, CursorState] = {}

    # ---- helpers --------------------------------------------------------------------------

    def object(self, call: Call) -> ObjectDef:
        name = call.group("obj")
        obj = self.store.obj(name)
        if obj is None:
            raise ApiError(
                404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'"
            )
        return obj

    def object_by_id(self, record_id: str) -> ObjectDef | None:
        for obj in self.store.objects.values():
            if record_id.startswith(obj.key_prefix):
                return obj
        return None

    # ---- query ----------------------------------------------------------------------------

    def query_(self, call: Call) -> Response:
        return self.query(call, include_deleted=False)

    def query_all(self, call: Call) -> Response:
        return self.query(call, include_deleted=True)

    def query(self, call: Call, *, include_deleted: bool) -> Response:
        call.require("GET")
        text = call.params.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        batch = batch_size(call)
        store = self.store
        with store.lock:
            try:
                compiled = compile_query(text, store.objects, self.emu.ctx.clock.now())
            except SoqlError as exc:
                raise soql_error(exc) from exc
            db = store.db
            if compiled.kind == "count":
                sql, params = compiled.count_sql(include_deleted)
                total = db.execute(sql, params).fetchone()[0]
                return json_response({"totalSize": total, "done": True, "records": []})
            if compiled.kind == "count_field":
                sql, params = compiled.count_sql(include_deleted)
                total = db.execute(sql, params).fetchone()[0]
                record = {"attributes": {"type": "AggregateResult"}, "expr0": total}
                return json_response({"totalSize": 1, "done": True, "records": [record]})
            render = compiled.renderer(call.version)
            sql, params = compiled.rows_sql(include_deleted, batch + 1)
            rows = db.execute(sql, params).fetchall()
            if len(rows) <= batch:
                return json_response(
                    {"totalSize": len(rows), "done": True, "records": [render(r) for r in rows]}
                )
            locator = store.new_cursor_id()
            total = store.materialise(locator, compiled, include_deleted)
            self._forget_stale()
            self.cursor_state[locator] = CursorState(batch, total)
            page = store.cursor_page(locator, 0, batch)
        return json_response(
            {
                "totalSize": total,
                "done": False,
                "nextRecordsUrl": f"/services/data/v{call.version}/query/{locator}-{batch}",
                "records": [render(r) for r in page],
            }
        )

    def _forget_stale(self) -> None:
        for locator in list(self.cursor_state):
            if locator not in self.store.cursors:
                del self.cursor_state[locator]

    def query_more(self, call: Call) -> Response:
        call.require("GET")
        m = re.fullmatch(r"([A-Za-z0-9]+)-(\d+)", call.group("locator"))
        if m is None:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        locator, offset = m.group(1), int(m.group(2))
        store = self.store
        with store.lock:
            state = self.cursor_state.get(locator)
            compiled = store.cursors.get(locator)
            if state is None or compiled is None or offset > state.total:
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            end = min(offset + state.batch, state.total)
            rows = store.cursor_page(locator, offset, end)
            done = end >= state.total
            if done:
                store.drop_cursor(locator)
                self.cursor_state.pop(locator, None)
        render = compiled.renderer(call.version)
        body: dict[str, Any] = {"totalSize": state.total, "done": done}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v{call.version}/query/{locator}-{end}"
        body["records"] = [render(r) for r in rows]
        return json_response(body)

    # ---- limits & describe ----------------------------------------------------------------

    def limits(self, call: Call) -> Response:
        call.require("GET")
        cfg = self.emu.ctx.config
        used = self.emu.api_used

        def pair(mx: int, remaining: int) -> dict[str, int]:
            return {"Max": mx, "Remaining": max(0, remaining)}

        return json_response(
            {
                "ConcurrentAsyncGetReportInstances": pair(200, 200),
                "DailyApiRequests": pair(cfg.sf_daily_api_limit, cfg.sf_daily_api_limit - used),
                "DailyAsyncApexExecutions": pair(250000, 250000),
                "DailyBulkApiBatches": pair(15000, 15000),
                "DailyBulkV2QueryFileStorageMB": pair(1048576, 1048576),
                "DailyBulkV2QueryJobs": pair(10000, 10000 - self.emu.bulk.query_jobs_created),
                "DataStorageMB": pair(5120, 5120),
                "FileStorageMB": pair(5120, 5120),
            }
        )

    def _sobject_summary(self, obj: ObjectDef, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{obj.name}"
        return {
            "activateable": False,
            "createable": obj.name != "User",
            "custom": False,
            "customSetting": False,
            "deletable": obj.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "keyPrefix": obj.key_prefix,
            "label": obj.label,
            "labelPlural": obj.label_plural,
            "layoutable": True,
            "mergeable": obj.name == "Account",
            "name": obj.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": obj.deletable,
            "updateable": True,
            "urls": {
                "rowTemplate": f"{base}/{{ID}}",
                "describe": f"{base}/describe",
                "sobject": base,
            },
        }

    def describe_global(self, call: Call) -> Response:
        call.require("GET")
        return json_response(
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [
                    self._sobject_summary(o, call.version) for o in self.store.objects.values()
                ],
            }
        )

    def sobject(self, call: Call) -> Response:
        call.require("GET", "POST")
        if call.method == "POST":
            return self.create(call)
        obj = self.object(call)
        return json_response(
            {"objectDescribe": self._sobject_summary(obj, call.version), "recentItems": []}
        )

    @staticmethod
    def _describe_field(f: FieldDef) -> dict[str, Any]:
        precision, scale = (18, 2) if f.type in ("currency", "double", "percent") else (0, 0)
        if f.type == "int":
            precision = 8
        return {
            "name": f.name,
            "label": f.label or f.name,
            "type": f.type,
            "soapType": {
                "id": "tns:ID",
                "reference": "tns:ID",
                "boolean": "xsd:boolean",
                "double": "xsd:double",
                "currency": "xsd:double",
                "percent": "xsd:double",
                "int": "xsd:int",
                "date": "xsd:date",
                "datetime": "xsd:dateTime",
            }.get(f.type, "xsd:string"),
            "length": f.length,
            "precision": precision,
            "scale": scale,
            "digits": INT_DIGITS if f.type == "int" else 0,
            "byteLength": f.length * 3,
            "custom": f.custom,
            "nillable": f.nillable,
            "createable": f.createable,
            "updateable": f.updateable,
            "filterable": f.type != "textarea",
            "sortable": f.type != "textarea",
            "groupable": f.type not in ("textarea", "double", "currency", "percent", "datetime"),
            "calculated": False,
            "externalId": f.external_id,
            "idLookup": f.external_id or f.name == "Id",
            "unique": f.unique,
            "caseSensitive": False,
            "defaultedOnCreate": f.type == "boolean"
            or f.name in ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "OwnerId"),
            "referenceTo": [f.reference_to] if f.reference_to else [],
            "relationshipName": f.relationship_name,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in f.picklist_values
            ],
        }

    def describe(self, call: Call) -> Response:
        call.require("GET")
        obj = self.object(call)
        body = self._sobject_summary(obj, call.version)
        body["fields"] = [self._describe_field(f) for f in obj.fields.values()]
        body["childRelationships"] = []
        body["recordTypeInfos"] = []
        return json_response(body)

    # ---- updated / deleted ----------------------------------------------------------------

    def _window(self, call: Call) -> tuple[str, str]:
        try:
            start = parse_datetime(call.params["start"]).replace(second=0)
            end = parse_datetime(call.params["end"]).replace(second=0)
        except (KeyError, ValueError, OverflowError) as exc:
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "start and end must be valid dateTimes"
            ) from exc
        if end <= start:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "end date must be after start date")
        return render_datetime(start), render_datetime(end)

    def updated(self, call: Call) -> Response:
        call.require("GET")
        obj = self.object(call)
        start, end = self._window(call)
        with self.store.lock:
            rows = self.store.db.execute(
                f'SELECT "Id" FROM {obj.table} WHERE "SystemModstamp" >= ? '
                'AND "SystemModstamp" < ? AND "IsDeleted" = 0 ORDER BY "SystemModstamp", "Id"',
                (start, end),
            ).fetchall()
        if len(rows) > 600_000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "too many ids; use a shorter window")
        return json_response({"ids": [r[0] for r in rows], "latestDateCovered": end})

    def deleted(self, call: Call) -> Response:
        call.require("GET")
        obj = self.object(call)
        start, end = self._window(call)
        with self.store.lock:
            rows = self.store.db.execute(
                f'SELECT "Id", "_DeletedDate" FROM {obj.table} WHERE "IsDeleted" = 1 '
                'AND "_DeletedDate" >= ? AND "_DeletedDate" < ? ORDER BY "_DeletedDate"',
                (start, end),
            ).fetchall()
            earliest = self.store.db.execute(
                f'SELECT MIN("_DeletedDate") FROM {obj.table} WHERE "IsDeleted" = 1'
            ).fetchone()[0]
        return json_response(
            {
                "deletedRecords": [{"id": r[0], "deletedDate": r[1]} for r in rows],
                "earliestDateAvailable": earliest or start,
                "latestDateCovered": end,
            }
        )

    # ---- single records -------------------------------------------------------------------

    def create(self, call: Call) -> Response:
        obj = self.object(call)
        body = call.json_object()
        try:
            with self.store.atomic() as effects:
                record_id = self.store.insert(obj, body, effects)
        except RecordError as exc:
            raise record_error(exc) from exc
        return json_response({"id": record_id, "success": True, "errors": []}, 201)

    def _get(self, call: Call, obj: ObjectDef, record_id: str) -> Response:
        fields_param = call.params.get("fields")
        fields = [f for f in fields_param.split(",") if f.strip()] if fields_param else None
        with self.store.lock:
            stored = self.store.fetch(obj, record_id)
        if stored is None:
            raise not_found_error()
        if stored["_deleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        try:
            return json_response(self.store.render(obj, stored, fields, call.version))
        except RecordError as exc:
            raise record_error(exc) from exc

    def record(self, call: Call) -> Response:
        call.require("GET", "PATCH", "DELETE")
        obj = self.object(call)
        record_id = call.group("id")
        if call.method == "GET":
            return self._get(call, obj, record_id)
        if not record_id.startswith(obj.key_prefix) or len(record_id) not in (15, 18):
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {record_id}",
            )
        try:
            with self.store.atomic() as effects:
                if call.method == "PATCH":
                    self.store.update(obj, record_id, call.json_object(), effects)
                else:
                    self.store.delete(obj, record_id, effects)
        except RecordError as exc:
            raise record_error(exc) from exc
        return empty(204)

    def _external_field(self, obj: ObjectDef, name: str) -> FieldDef:
        f = obj.get(name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {name}",
            )
        return f

    def by_external_id(self, call: Call) -> Response:
        call.require("GET", "PATCH")
        obj = self.object(call)
        ext = self._external_field(obj, call.group("field"))
        value = call.group("value")
        store = self.store
        if call.method == "GET":
            with store.lock:
                matches = store.match_external(obj, ext, value)
            if not matches:
                raise not_found_error()
            if len(matches) > 1:
                return self._multiple(call, obj, matches)
            return self._get(call, obj, matches[0])
        body = call.json_object()
        update_only = call.params.get("updateOnly", "false").lower() == "true"
        try:
            with store.atomic() as effects:
                record_id, created = store.upsert(
                    obj, ext, value, body, effects, update_only=update_only
                )
        except MultipleMatches as exc:
            return self._multiple(call, obj, exc.ids)
        except RecordError as exc:
            raise record_error(exc) from exc
        result = {"id": record_id, "success": True, "errors": [], "created": created}
        if created:
            return json_response(result, 201)
        if _version_number(call.version) < 46.0:
            return empty(204)
        return json_response(result, 200)

    @staticmethod
    def _multiple(call: Call, obj: ObjectDef, ids: list[str]) -> Response:
        return json_response(
            [f"/services/data/v{call.version}/sobjects/{obj.name}/{i}" for i in ids], 300
        )

    # ---- collections ----------------------------------------------------------------------

    def _records(self, body: dict[str, Any]) -> list[Any]:
        records = body.get("records")
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records must be an array")
        _check_size(len(records))
        return records

    def _run(
        self,
        items: list[Any],
        all_or_none: bool,
        op: Any,
    ) -> list[dict[str, Any]]:
        """Run ``op(item, effects) -> result`` for each item; allOrNone rolls everything back.

        A value its field cannot hold (``JSON_PARSER_ERROR``: Salesforce fails to deserialize
        the body before it looks at any record) refuses the whole request with a 400, whatever
        ``allOrNone``, and nothing is written: a client must split the call to find the record.
        """
        results: list[dict[str, Any]] = []
        try:
            with self.store.atomic() as effects:
                for item in items:
                    try:
                        results.append(op(item, effects))
                    except RecordError as exc:
                        if exc.code == "JSON_PARSER_ERROR" and isinstance(item, dict):
                            raise ApiError(
                                400, "JSON_PARSER_ERROR", exc.message, exc.fields or None
                            ) from exc
                        error = exc
                        if exc.code == "NOT_FOUND":
                            error = RecordError(
                                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"
                            )
                        failed: dict[str, Any] = {
                            "success": False,
                            "errors": [error.as_result_error()],
                        }
                        if isinstance(item, str):
                            failed = {"id": item, **failed}
                        elif isinstance(item, dict) and item.get("id"):
                            failed = {"id": item["id"], **failed}
                        results.append(failed)
                if all_or_none and any(not r["success"] for r in results):
                    raise _Rollback
        except _Rollback:
            rolled: list[dict[str, Any]] = []
            for item, r in zip(items, results, strict=True):
                if not r["success"]:
                    rolled.append(r)
                    continue
                given = item if isinstance(item, str) else None
                if isinstance(item, dict) and item.get("id"):
                    given = str(item["id"])
                head: dict[str, Any] = {"id": given} if given else {}
                rolled.append({**head, "success": False, "errors": [dict(ROLLED_BACK)]})
            results = rolled
        return results

    def _typed(self, record: Any) -> tuple[ObjectDef, dict[str, Any]]:
        if not isinstance(record, dict):
            raise RecordError("JSON_PARSER_ERROR", "each record must be an object")
        attrs = record.get("attributes")
        type_name = attrs.get("type") if isinstance(attrs, dict) else None
        if not type_name:
            raise RecordError("INVALID_TYPE", "Must send a concrete entity type.")
        obj = self.store.obj(str(type_name))
        if obj is None:
            raise RecordError("INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        return obj, {k: v for k, v in record.items() if k != "attributes"}

    def collection(self, call: Call) -> Response:
        call.require("POST", "PATCH", "DELETE")
        store = self.store
        if call.method == "DELETE":
            ids = [i for i in call.params.get("ids", "").split(",") if i]
            if not ids:
                raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
            _check_size(len(ids))
            all_or_none = call.params.get("allOrNone", "false").lower() == "true"

            def delete(record_id: str, effects: Any) -> dict[str, Any]:
                obj = self.object_by_id(record_id)
                if obj is None or len(record_id) not in (15, 18):
                    raise RecordError("MALFORMED_ID", f"malformed id {record_id}", ["Id"])
                deleted_id = store.delete(obj, record_id, effects)
                return {"id": deleted_id, "success": True, "errors": []}

            return json_response(self._run(ids, all_or_none, delete))
        body = call.json_object()
        records = self._records(body)
        all_or_none = bool(body.get("allOrNone", False))

        if call.method == "POST":

            def create(record: Any, effects: Any) -> dict[str, Any]:
                obj, values = self._typed(record)
                if "id" in values or "Id" in values:
                    raise RecordError(
                        "INVALID_FIELD",
                        "cannot specify Id in an insert call",
                        ["Id"],
                    )
                new_id = store.insert(obj, values, effects)
                return {"id": new_id, "success": True, "errors": []}

            return json_response(self._run(records, all_or_none, create))

        def update(record: Any, effects: Any) -> dict[str, Any]:
            obj, values = self._typed(record)
            record_id = values.pop("id", None) or values.pop("Id", None)
            if not record_id:
                raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            if not str(record_id).startswith(obj.key_prefix):
                raise RecordError("MALFORMED_ID", f"malformed id {record_id}", ["Id"])
            done = store.update(obj, str(record_id), values, effects)
            return {"id": done, "success": True, "errors": []}

        return json_response(self._run(records, all_or_none, update))

    def collection_upsert(self, call: Call) -> Response:
        call.require("PATCH")
        obj = self.object(call)
        ext = self._external_field(obj, call.group("field"))
        body = call.json_object()
        records = self._records(body)
        all_or_none = bool(body.get("allOrNone", False))
        store = self.store

        def upsert(record: Any, effects: Any) -> dict[str, Any]:
            rec_obj, values = self._typed(record)
            if rec_obj is not obj:
                raise RecordError("INVALID_TYPE", "all records must be of the URL's type")
            value = next((v for k, v in values.items() if k.lower() == ext.name.lower()), None)
            try:
                record_id, created = store.upsert(obj, ext, value, values, effects)
            except MultipleMatches as exc:
                raise RecordError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{ext.name}: more than one record found for external id field: "
                    f"{', '.join(exc.ids)}",
                    [ext.name],
                ) from exc
            return {"id": record_id, "success": True, "errors": [], "created": created}

        results = self._run(records, all_or_none, upsert)
        return json_response(results)

    def collection_get(self, call: Call) -> Response:
        call.require("GET")
        obj = self.object(call)
        ids = [i for i in call.params.get("ids", "").split(",") if i]
        fields = [f for f in call.params.get("fields", "").split(",") if f]
        if not ids or not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "ids and fields are required")
        _check_size(len(ids))
        out: list[dict[str, Any] | None] = []
        with self.store.lock:
            for record_id in ids:
                stored = self.store.fetch(obj, normalize_id(record_id))
                if stored is None or stored["_deleted"]:
                    out.append(None)
                    continue
                try:
                    out.append(self.store.render(obj, stored, fields, call.version))
                except RecordError as exc:
                    raise record_error(exc) from exc
        return json_response(out)


def _check_size(n: int) -> None:
    if n > MAX_COLLECTION:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )


def _version_number(version: str) -> float:
    try:
        return float(version)
    except ValueError:
        return 99.0
