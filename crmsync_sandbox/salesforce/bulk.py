"""Bulk API 2.0: query jobs (snapshot at creation, CSV pages behind ``Sforce-Locator``) and
ingest jobs (``Open`` -> CSV uploads -> ``UploadComplete`` -> processed through the store's write
path -> ``JobComplete``, with ``successfulResults``/``failedResults``/``unprocessedRecords``).

Jobs live in memory (a restarted sandbox forgets them). A query job's result set is its own
(``Store.materialise(pool="job")``), not one of the REST query locators that are evicted beyond 64:
a job reported ``JobComplete`` serves its results until it is deleted or expires. As in Salesforce,
a job is deleted 7 days after it reached a terminal state (sandbox clock); from then on it answers
404 ``NOT_FOUND``, as an unknown job id does.

Result pages: ``maxRecords`` caps a page's rows; without it the page is as large as
:data:`DEFAULT_PAGE_BYTES` of CSV allows (Salesforce: "a default value based on the service",
unpublished), so a client that omits ``maxRecords`` reads a large object in few calls.
"""

from __future__ import annotations

import base64
import csv
import io
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from crmsync_sandbox.salesforce.compiler import Compiled, SoqlError, compile_query
from crmsync_sandbox.salesforce.http import ApiError, Call, empty, json_response
from crmsync_sandbox.salesforce.schema import ObjectDef
from crmsync_sandbox.salesforce.store import MultipleMatches, RecordError

if TYPE_CHECKING:
    from crmsync_sandbox.salesforce.emulator import SalesforceEmulator

DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DEFAULT_PAGE_BYTES = 64 * 1024 * 1024
"""CSV bytes per result page (rows are added while the page is smaller): the sandbox's stand-in
for Salesforce's unpublished default page size. ``Bulk.page_bytes`` overrides it (tests)."""
PAGE_CHUNK_ROWS = 5_000
JOB_RETENTION = timedelta(days=7)
"""Salesforce deletes Bulk API 2.0 jobs (and their results) 7 days after they end."""
TERMINAL_STATES = ("JobComplete", "Failed", "Aborted")
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")


@dataclass
class Job:
    id: str
    operation: str
    object: str
    created: str
    version: str
    column_delimiter: str = "COMMA"
    line_ending: str = "LF"
    state: str = "Open"
    modified: str = ""
    error: str | None = None
    ended_at: datetime | None = None  # sandbox clock time of the terminal state


@dataclass
class QueryJob(Job):
    query: str = ""
    compiled: Compiled | None = None
    total: int = 0


@dataclass
class IngestJob(Job):
    external_id: str | None = None
    uploads: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    successes: list[list[str]] = field(default_factory=list)
    failures: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)


def _locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(locator: str) -> int:
    try:
        padded = locator + "=" * (-len(locator) % 4)
        return int(base64.b64decode(padded.encode()).decode())
    except ValueError as exc:
        raise ApiError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}") from exc


class Bulk:
    """Bulk API 2.0 handlers."""

    def __init__(self, emu: SalesforceEmulator) -> None:
        self.emu = emu
        self.store = emu.store
        self.jobs: dict[str, Job] = {}
        self.query_jobs_created = 0
        self.page_bytes = DEFAULT_PAGE_BYTES

    # ---- common ---------------------------------------------------------------------------

    def _info(self, job: Job) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.object,
            "createdById": self.emu.api_user_id,
            "createdDate": job.created,
            "systemModstamp": job.modified or job.created,
            "state": job.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(job.version),
            "lineEnding": job.line_ending,
            "columnDelimiter": job.column_delimiter,
        }
        if isinstance(job, QueryJob):
            info["jobType"] = "V2Query"
            if job.state == "JobComplete":
                info["numberRecordsProcessed"] = job.total
                info["retries"] = 0
                info["totalProcessingTime"] = 0
        elif isinstance(job, IngestJob):
            info["jobType"] = "V2Ingest"
            if job.external_id:
                info["externalIdFieldName"] = job.external_id
            info["contentUrl"] = f"services/data/v{job.version}/jobs/ingest/{job.id}/batches"
            info["numberRecordsProcessed"] = len(job.successes) + len(job.failures)
            info["numberRecordsFailed"] = len(job.failures)
            info["retries"] = 0
            info["totalProcessingTime"] = 0
            info["apiActiveProcessingTime"] = 0
            info["apexProcessingTime"] = 0
        if job.error:
            info["errorMessage"] = job.error
        return info

    def _ended(self, job: Job) -> None:
        """Record the moment ``job`` reached a terminal state (its 7 days start there)."""
        if job.state in TERMINAL_STATES and job.ended_at is None:
            job.ended_at = self.emu.ctx.clock.now()

    def expire(self) -> None:
        """Forget jobs that ended more than :data:`JOB_RETENTION` ago, with their results."""
        now = self.emu.ctx.clock.now()
        with self.store.lock:
            for job in list(self.jobs.values()):
                if job.ended_at is not None and now - job.ended_at > JOB_RETENTION:
                    del self.jobs[job.id]
                    self.store.drop_cursor(job.id)

    def _job(self, call: Call, kind: type[Job]) -> Job:
        self.expire()
        job = self.jobs.get(call.group("job"))
        if job is None or not isinstance(job, kind):
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def _options(self, body: dict[str, Any]) -> tuple[str, str]:
        delimiter = str(body.get("columnDelimiter") or "COMMA")
        line_ending = str(body.get("lineEnding") or "LF")
        if delimiter not in DELIMITERS or line_ending not in LINE_ENDINGS:
            raise ApiError(400, "INVALIDJOB", "InvalidJob : invalid columnDelimiter or lineEnding")
        return delimiter, line_ending

    def _set_state(self, job: Job, call: Call) -> None:
        body = call.json_object()
        state = body.get("state")
        if state == "Aborted":
            if job.state in ("JobComplete", "Failed", "Aborted"):
                raise ApiError(
                    400, "INVALIDJOBSTATE", f"Job is already in a terminal state: {job.state}"
                )
            job.state = "Aborted"
            self._ended(job)
        elif state == "UploadComplete" and isinstance(job, IngestJob):
            if job.state != "Open":
                raise ApiError(400, "INVALIDJOBSTATE", f"Job is not Open: {job.state}")
            job.state = "UploadComplete"
            self._process(job)
            self._ended(job)
            job.modified = self.store.now_text()
            info = self._info(job)
            info["state"] = "UploadComplete"
            raise _Answer(json_response(info))
        else:
            raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state change to {state}")
        job.modified = self.store.now_text()

    # ---- query jobs -----------------------------------------------------------------------

    def query_jobs(self, call: Call) -> Response:
        call.require("POST", "GET")
        self.expire()
        if call.method == "GET":
            records = [self._info(j) for j in self.jobs.values() if isinstance(j, QueryJob)]
            return json_response({"done": True, "records": records, "nextRecordsUrl": None})
        body = call.json_object()
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : invalid operation {operation}")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "INVALIDJOB", "InvalidJob : query is required")
        delimiter, line_ending = self._options(body)
        store = self.store
        with store.lock:
            try:
                compiled = compile_query(text, store.objects, self.emu.ctx.clock.now())
            except SoqlError as exc:
                raise ApiError(400, exc.code, exc.message) from exc
            if compiled.kind != "rows":
                raise ApiError(
                    400, "API_ERROR", "Aggregate Relationships not supported in Bulk Query"
                )
            if compiled.offset:
                raise ApiError(400, "API_ERROR", "OFFSET is not supported in Bulk API 2.0 queries")
            job_id = store.new_cursor_id("750")
            total = store.materialise(job_id, compiled, operation == "queryAll", pool="job")
            now = store.now_text()
            job = QueryJob(
                id=job_id,
                operation=operation,
                object=compiled.obj.name,
                created=now,
                version=call.version,
                column_delimiter=delimiter,
                line_ending=line_ending,
                state="UploadComplete",
                query=text,
                compiled=compiled,
                total=total,
            )
            self.jobs[job_id] = job
            self.query_jobs_created += 1
            info = self._info(job)
            job.state = "JobComplete"  # runs at once; the next poll sees it complete
            self._ended(job)
        return json_response(info)

    def query_job(self, call: Call) -> Response:
        call.require("GET", "PATCH", "DELETE")
        job = self._job(call, QueryJob)
        if call.method == "GET":
            return json_response(self._info(job))
        if call.method == "DELETE":
            self.jobs.pop(job.id, None)
            self.store.drop_cursor(job.id)
            return empty(204)
        try:
            self._set_state(job, call)
        except _Answer as answer:
            return answer.response
        self.store.drop_cursor(job.id)
        return json_response(self._info(job))

    def query_results(self, call: Call) -> Response:
        call.require("GET")
        job = self._job(call, QueryJob)
        assert isinstance(job, QueryJob)
        if job.state != "JobComplete" or job.compiled is None:
            raise ApiError(400, "JOB_NOT_COMPLETE", f"Job is in state {job.state}")
        if job.version != call.version:
            raise ApiError(409, "INVALIDVERSION", f"Job was created with API version {job.version}")
        raw_max = call.params.get("maxRecords")
        try:
            max_records = int(raw_max) if raw_max else None
        except ValueError as exc:
            raise ApiError(400, "INVALIDPARAMETER", "maxRecords must be a number") from exc
        if max_records is not None and max_records <= 0:
            raise ApiError(400, "INVALIDPARAMETER", "maxRecords must be positive")
        locator = call.params.get("locator")
        start = _offset(locator) if locator and locator != "null" else 0
        if not 0 <= start <= job.total:
            raise ApiError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")
        limit = job.total if max_records is None else min(job.total, start + max_records)
        buffer = io.StringIO()
        writer = csv.writer(
            buffer,
            delimiter=DELIMITERS[job.column_delimiter],
            lineterminator=LINE_ENDINGS[job.line_ending],
            quoting=csv.QUOTE_ALL,
        )
        compiled = job.compiled
        writer.writerow(compiled.csv_header())
        end, records = start, 0
        while end < limit and (end == start or buffer.tell() < self.page_bytes):
            chunk_end = min(limit, end + PAGE_CHUNK_ROWS)
            try:
                rows = self.store.cursor_page(job.id, end, chunk_end)
            except KeyError:  # deleted (or expired) while this page was being read
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist") from None
            exact = len(rows) == chunk_end - end  # else rows were hard-deleted: take it whole
            for i, row in enumerate(rows):
                writer.writerow(compiled.csv_cells(row))
                records += 1
                if exact and buffer.tell() >= self.page_bytes:
                    chunk_end = end + i + 1
                    break
            end = chunk_end
        next_locator = _locator(end) if end < job.total else "null"
        return Response(
            buffer.getvalue().encode("utf-8"),
            media_type="text/csv",
            headers={"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(records)},
        )

    # ---- ingest jobs ----------------------------------------------------------------------

    def ingest_jobs(self, call: Call) -> Response:
        call.require("POST", "GET")
        if call.method == "GET":
            records = [self._info(j) for j in self.jobs.values() if isinstance(j, IngestJob)]
            return json_response({"done": True, "records": records, "nextRecordsUrl": None})
        body = call.json_object()
        operation = body.get("operation")
        if operation not in INGEST_OPERATIONS:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : invalid operation {operation}")
        obj = self.store.obj(str(body.get("object") or ""))
        if obj is None:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid object: {body.get('object')}")
        external = body.get("externalIdFieldName")
        if operation == "upsert":
            ext = obj.get(str(external or ""))
            if ext is None or not (ext.external_id or ext.name == "Id"):
                raise ApiError(
                    400,
                    "INVALIDJOB",
                    f"InvalidJob : External ID was blank or invalid for {obj.name}: {external}",
                )
            external = ext.name
        delimiter, line_ending = self._options(body)
        job = IngestJob(
            id=self.store.new_cursor_id("750"),
            operation=operation,
            object=obj.name,
            created=self.store.now_text(),
            version=call.version,
            column_delimiter=delimiter,
            line_ending=line_ending,
            external_id=external if operation == "upsert" else None,
        )
        self.jobs[job.id] = job
        return json_response(self._info(job))

    def ingest_job(self, call: Call) -> Response:
        call.require("GET", "PATCH", "DELETE")
        job = self._job(call, IngestJob)
        if call.method == "GET":
            return json_response(self._info(job))
        if call.method == "DELETE":
            if job.state not in ("JobComplete", "Failed", "Aborted", "Open"):
                raise ApiError(400, "INVALIDJOBSTATE", "Job is in progress")
            self.jobs.pop(job.id, None)
            return empty(204)
        try:
            self._set_state(job, call)
        except _Answer as answer:
            return answer.response
        if job.state == "Aborted" and isinstance(job, IngestJob):
            job.unprocessed = [row for upload in job.uploads for row in self._rows(job, upload)[1]]
        return json_response(self._info(job))

    def upload(self, call: Call) -> Response:
        call.require("PUT")
        job = self._job(call, IngestJob)
        assert isinstance(job, IngestJob)
        if job.state != "Open":
            raise ApiError(409, "INVALIDJOBSTATE", f"Job is not Open: {job.state}")
        try:
            text = call.body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ApiError(400, "INVALIDBATCH", "CSV data must be UTF-8") from exc
        if not text.strip():
            raise ApiError(400, "INVALIDBATCH", "InvalidBatch : empty CSV")
        job.uploads.append(text)
        return empty(201)

    def _rows(self, job: IngestJob, text: str) -> tuple[list[str], list[list[str]]]:
        reader = csv.reader(io.StringIO(text), delimiter=DELIMITERS[job.column_delimiter])
        rows = [r for r in reader if r]
        if not rows:
            return [], []
        return rows[0], rows[1:]

    def _process(self, job: IngestJob) -> None:
        obj = self.store.obj(job.object)
        assert obj is not None
        with self.store.atomic() as effects:
            for upload in job.uploads:
                header, rows = self._rows(job, upload)
                if not job.header:
                    job.header = header
                for cells in rows:
                    values = dict(zip(header, cells, strict=False))
                    try:
                        record_id, created = self._apply(job, obj, values, effects)
                    except RecordError as exc:
                        given = values.get("Id", "") if job.operation != "insert" else ""
                        job.failures.append([given, exc.as_csv_error(), *cells])
                        continue
                    job.successes.append([record_id, "true" if created else "false", *cells])
        # Salesforce does not keep the upload's row order in the result files (A.7): neither
        # does the sandbox (a fixed shuffle per job), so clients must match rows by key.
        order = random.Random(job.id)
        order.shuffle(job.successes)
        order.shuffle(job.failures)
        job.state = "JobComplete"

    def _apply(
        self, job: IngestJob, obj: ObjectDef, values: dict[str, str], effects: Any
    ) -> tuple[str, bool]:
        store = self.store
        op = job.operation
        if op == "insert":
            return store.insert(obj, values, effects, csv=True), True
        if op == "upsert":
            assert job.external_id is not None
            ext = obj.get(job.external_id)
            assert ext is not None
            key = values.get(ext.name, "")
            body = {k: v for k, v in values.items() if k != ext.name}
            try:
                if ext.name == "Id" and not key:
                    return store.insert(obj, body, effects, csv=True), True
                return store.upsert(obj, ext, key, body, effects, csv=True)
            except MultipleMatches as exc:
                raise RecordError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{ext.name}: more than one record found for external id field: "
                    f"{', '.join(exc.ids)}",
                    [ext.name],
                ) from exc
        record_id = values.get("Id", "")
        if not record_id:
            raise RecordError("MISSING_ARGUMENT", "Id not specified", ["Id"])
        if op == "update":
            body = {k: v for k, v in values.items() if k != "Id"}
            return store.update(obj, record_id, body, effects, csv=True), False
        if set(values) != {"Id"}:
            raise RecordError("INVALIDBATCH", "delete batches must contain only Id", ["Id"])
        store.delete(obj, record_id, effects)
        if op == "hardDelete":
            store.db.execute(f'DELETE FROM {obj.table} WHERE "Id" = ?', (record_id,))
        return record_id, False

    def ingest_results(self, call: Call) -> Response:
        job = self._job(call, IngestJob)
        assert isinstance(job, IngestJob)
        call.require("GET")
        kind = call.group("kind").lower()
        if kind not in ("successfulresults", "failedresults", "unprocessedrecords"):
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        buffer = io.StringIO()
        writer = csv.writer(
            buffer,
            delimiter=DELIMITERS[job.column_delimiter],
            lineterminator=LINE_ENDINGS[job.line_ending],
            quoting=csv.QUOTE_ALL,
        )
        if kind == "successfulresults":
            writer.writerow(["sf__Id", "sf__Created", *job.header])
            writer.writerows(job.successes)
        elif kind == "failedresults":
            writer.writerow(["sf__Id", "sf__Error", *job.header])
            writer.writerows(job.failures)
        else:
            header = job.header or (self._rows(job, job.uploads[0])[0] if job.uploads else [])
            writer.writerow(header)
            writer.writerows(job.unprocessed)
        return Response(buffer.getvalue().encode("utf-8"), media_type="text/csv")


class _Answer(Exception):
    """Carries a finished response out of a state change."""

    def __init__(self, response: Response) -> None:
        super().__init__("answer")
        self.response = response
