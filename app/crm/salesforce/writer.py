"""Salesforce writes: :class:`SalesforceWriter` implements :class:`app.crm.writes.CrmWriter`.

A :class:`~app.crm.salesforce.client.SalesforceClient` (same session, token, re-auth on 401,
retry policy, ``Sforce-Limit-Info`` budget and call counter) that also writes (crm-api.md A§6,
A§7, A§9; ADR 0006 §3-§5):

* ``UPDATE`` ops: ``PATCH /composite/sobjects`` (``allOrNone=false``), at most
  ``WriteTuning.salesforce_chunk`` (200) records a call, each record with ``attributes.type``,
  ``id`` and only its changed fields. Results come back in request order, one per record.
* ``UPSERT`` ops (creates that cannot happen twice): ``PATCH
  /composite/sobjects/{object}/Crmsync_Id__c``, each record carrying its crmsync id. ``Note``
  has no custom fields, so an ``UPSERT`` of a Note is a plain create (``POST
  /composite/sobjects``); such a call is never repeated when the request may have reached
  Salesforce (a 5xx or a connection dropped after sending), because a second create would be a
  second note: it fails instead, and the push's pending-create recovery looks the note up.
* Above ``WriteTuning.bulk_threshold`` records (updates and upserts together) each kind is one
  Bulk API 2.0 ingest job: create, upload the CSV, close, poll, ``successfulResults`` and
  ``failedResults`` (6 calls when the first poll finds the job complete). Result rows come in
  no particular order: they are matched back to the ops by ``Id`` (update), by the external id
  (upsert) or by the whole row (Note insert). In the CSV an empty cell means "leave as is", so
  ``None`` is written as ``#N/A`` (sets the field to null).
* Faults: a 429, a 5xx, ``REQUEST_LIMIT_EXCEEDED`` or a connection reset repeats the call with
  backoff (:mod:`app.crm.retry`); ``UNABLE_TO_LOCK_ROW`` in a record's result sends those
  records again after a backoff; a call refused as a whole (400) is split in halves until the
  record that causes it is alone (:mod:`app.crm.write_chunks`). A record Salesforce refuses
  (``FIELD_CUSTOM_VALIDATION_EXCEPTION``, ``REQUIRED_FIELD_MISSING``...) is a ``FAILED``
  :class:`~app.crm.writes.WriteResult` with the code, message and fields; nothing raises for it.

Without faults the calls made are exactly :func:`app.crm.writes.planned_calls`.
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any, TypeVar

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from app.crm.retry import RetryPolicy, call_with_retry
from app.crm.salesforce.auth import TokenCache
from app.crm.salesforce.client import CRM, SalesforceClient
from app.crm.salesforce.errors import classify_salesforce
from app.crm.write_chunks import (
    NO_RESULT,
    ChunkRefused,
    RetryRounds,
    failed,
    write_with_retries,
)
from app.crm.writes import (
    BULK_JOB_CALLS,
    WriteKind,
    WriteOp,
    WriteOutcome,
    WriteResult,
    WriteTuning,
)
from app.errors import UNREACHABLE, Classification, ErrorCategory, UpstreamError
from app.logging import get_logger
from app.settings import Settings

T = TypeVar("T")

EXTERNAL_ID_FIELD = "Crmsync_Id__c"
"""The External ID (unique) field creates are upserted on (ADR 0006 §3)."""
NO_CUSTOM_FIELDS = frozenset({"Note"})
"""Objects that cannot carry the external id: an UPSERT there is a plain create."""
RETRY_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})
"""Per-record codes sent again after a backoff (A§6, A§9)."""
BULK_NULL = "#N/A"
BULK_POLL_START = 0.5  # seconds before the second status poll of an ingest job
BULK_POLL_MAX_WAIT = 5.0
BULK_POLL_TIMEOUT = 3600.0

log = get_logger(__name__)


def json_value(value: Any) -> Any:
    """A wire value as JSON: Decimal as a number, dates ISO, datetimes ISO with ms and Z."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def csv_value(value: Any) -> str:
    """A wire value as a Bulk CSV cell: ``None`` is ``#N/A`` (an empty cell changes nothing)."""
    if value is None:
        return BULK_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    value = json_value(value)
    return str(value)


def parse_bulk_error(text: str) -> tuple[str, str, tuple[str, ...]]:
    """``REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --`` -> code,
    message, fields (A§7)."""
    text = text.strip().removesuffix("--").strip()
    code, _, rest = text.partition(":")
    message, sep, tail = rest.rpartition(":")
    if not sep:
        message, tail = rest, ""
    fields = tuple(f.strip() for f in tail.split(",") if f.strip())
    return code.strip(), message.strip() or rest.strip(), fields


def _no_repeat_after_send(classification: Classification) -> Classification:
    """For creates: retriable only when the request cannot have been applied (rate limited
    before it ran, or never connected); a 5xx or a reset after sending might have created it."""
    safe = classification.category is ErrorCategory.RATE_LIMITED or (
        classification.code == UNREACHABLE
    )
    return (
        classification
        if safe or not classification.retriable
        else replace(classification, retriable=False)
    )


class SalesforceWriter(SalesforceClient):
    """Salesforce reads (inherited) and writes, over one session and one call counter."""

    def __init__(
        self,
        settings: Settings,
        session: requests.Session | None = None,
        *,
        tuning: WriteTuning | None = None,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        super().__init__(settings, session, sleep=sleep, policy=policy, token_cache=token_cache)
        self.tuning = tuning or settings.push.tuning()

    # -- plumbing ----------------------------------------------------------------------------

    def _write_call(
        self,
        operation: str,
        fn: Callable[[Salesforce], T],
        object_name: str,
        *,
        creates: bool = False,
    ) -> T:
        """One call under the retry policy, re-authenticated once on 401; a create is not
        repeated once it may have reached Salesforce."""

        def with_reauth() -> T:
            sf = self._client()
            try:
                return fn(sf)
            except SalesforceExpiredSession:
                if self._fetcher is None:
                    raise
                self._fetch_token()
                self._count()
                return fn(self._client())

        def classify(exc: BaseException) -> Classification:
            found = classify_salesforce(exc)
            return _no_repeat_after_send(found) if creates else found

        return call_with_retry(
            with_reauth,
            classify=classify,
            policy=self._policy,
            crm=CRM,
            operation=operation,
            object_name=object_name,
            on_attempt=self._count,
            endpoint=self._endpoint(),
        )

    def _rounds(self) -> RetryRounds:
        return RetryRounds(
            attempts=self._policy.max_attempts,
            wait=lambda n: self._policy.compute_wait(n, None),
            sleep=self._sleep,
            retry_codes=RETRY_CODES,
        )

    @staticmethod
    def _is_create(object_name: str, kind: WriteKind) -> bool:
        return kind is WriteKind.UPSERT and object_name in NO_CUSTOM_FIELDS

    # -- CrmWriter ---------------------------------------------------------------------------

    def write(self, object_name: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Write ``ops`` (see the module docstring); one result per op, in order."""
        if not ops:
            return []
        results: dict[int, WriteResult] = {}
        by_kind: dict[WriteKind, list[int]] = defaultdict(list)
        for index, op in enumerate(ops):
            problem = self._check(object_name, op)
            if problem is not None:
                results[index] = problem
            else:
                by_kind[op.kind].append(index)
        use_bulk = sum(len(v) for v in by_kind.values()) > self.tuning.bulk_threshold
        keys = [op.key for op in ops]
        for kind in (WriteKind.UPDATE, WriteKind.UPSERT):
            indices = by_kind.get(kind)
            if not indices:
                continue
            id_keys: list[Hashable] = [self._id_key(op) for op in ops]

            def send(chunk: list[int], kind: WriteKind = kind) -> dict[int, WriteResult]:
                return self._send_collection(object_name, kind, [ops[i] for i in chunk], chunk)

            def bulk(todo: list[int], kind: WriteKind = kind) -> dict[int, WriteResult]:
                return self._bulk(object_name, kind, ops, todo)

            results.update(
                write_with_retries(
                    indices,
                    id_keys,
                    self.tuning.salesforce_chunk,
                    send,
                    keys,
                    self._rounds(),
                    first=bulk if use_bulk else None,
                )
            )
        return [results[i] for i in range(len(ops))]

    @staticmethod
    def _check(object_name: str, op: WriteOp) -> WriteResult | None:
        if op.kind is WriteKind.UPDATE and not op.crm_id:
            return failed(op.key, "MISSING_ID", "an update needs the record's Salesforce id")
        if (
            op.kind is WriteKind.UPSERT
            and object_name not in NO_CUSTOM_FIELDS
            and not op.external_id
        ):
            return failed(op.key, "MISSING_EXTERNAL_ID", f"an upsert needs {EXTERNAL_ID_FIELD}")
        return None

    @staticmethod
    def _id_key(op: WriteOp) -> Hashable:
        if op.kind is WriteKind.UPDATE:
            return ("id", op.crm_id)
        if op.external_id:
            return ("ext", op.external_id)
        return ("key", op.key)

    # -- sObject Collections -----------------------------------------------------------------

    def _record(self, object_name: str, op: WriteOp) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": {"type": object_name}}
        record.update({name: json_value(value) for name, value in op.fields.items()})
        if op.kind is WriteKind.UPDATE:
            record["id"] = op.crm_id
        elif object_name not in NO_CUSTOM_FIELDS:
            record[EXTERNAL_ID_FIELD] = op.external_id
        return record

    def _send_collection(
        self, object_name: str, kind: WriteKind, ops: Sequence[WriteOp], chunk: list[int]
    ) -> dict[int, WriteResult]:
        body = {"allOrNone": False, "records": [self._record(object_name, op) for op in ops]}
        creates = self._is_create(object_name, kind)
        if kind is WriteKind.UPDATE:
            path, method, operation = "composite/sobjects", "PATCH", "collection_update"
        elif creates:
            path, method, operation = "composite/sobjects", "POST", "collection_create"
        else:
            path = f"composite/sobjects/{object_name}/{EXTERNAL_ID_FIELD}"
            method, operation = "PATCH", "collection_upsert"
        try:
            answer = self._write_call(
                operation,
                lambda sf: sf.restful(path, method=method, json=body),
                object_name,
                creates=creates,
            )
        except UpstreamError as exc:
            if exc.status == 400:
                raise ChunkRefused(exc.code, exc.reason or str(exc)) from exc
            raise
        rows = answer if isinstance(answer, list) else []
        out: dict[int, WriteResult] = {}
        for index, op, row in zip(chunk, ops, rows, strict=False):
            out[index] = self._collection_result(op, row)
        return out

    @staticmethod
    def _collection_result(op: WriteOp, row: Any) -> WriteResult:
        if not isinstance(row, Mapping):
            return failed(op.key, NO_RESULT, "unreadable result", retriable=True)
        if row.get("success"):
            created = bool(row.get("created")) or (
                op.kind is WriteKind.UPSERT and "created" not in row
            )
            return WriteResult(
                key=op.key,
                outcome=WriteOutcome.CREATED if created else WriteOutcome.WRITTEN,
                crm_id=str(row.get("id") or op.crm_id or "") or None,
            )
        errors = row.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], Mapping) else {}
        code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_ERROR")
        return failed(
            op.key,
            code,
            str(first.get("message") or ""),
            tuple(str(f) for f in first.get("fields") or ()),
            retriable=code in RETRY_CODES,
        )

    # -- Bulk API 2.0 ingest -----------------------------------------------------------------

    def _bulk(
        self, object_name: str, kind: WriteKind, ops: Sequence[WriteOp], indices: list[int]
    ) -> dict[int, WriteResult]:
        """One ingest job for ``indices`` (all of one kind); results matched back by key."""
        creates = self._is_create(object_name, kind)
        columns: list[str] = []
        if kind is WriteKind.UPDATE:
            columns.append("Id")
        elif not creates:
            columns.append(EXTERNAL_ID_FIELD)
        for index in indices:
            for name in ops[index].fields:
                if name not in columns:
                    columns.append(name)
        # The CSV goes to a temporary file, one row at a time, and is uploaded from it: a job of
        # 50,000 records never holds its whole body in memory (nor twice, as text and bytes).
        with tempfile.TemporaryFile() as spool:
            text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(columns)
            for index in indices:
                writer.writerow(self._bulk_row(kind, creates, columns, ops[index]))
            text.flush()
            text.detach()
            return self._bulk_job(object_name, kind, creates, ops, indices, columns, spool)

    @staticmethod
    def _bulk_row(kind: WriteKind, creates: bool, columns: list[str], op: WriteOp) -> list[str]:
        row = []
        for name in columns:
            if name == "Id" and kind is WriteKind.UPDATE:
                row.append(str(op.crm_id))
            elif name == EXTERNAL_ID_FIELD and kind is WriteKind.UPSERT and not creates:
                row.append(str(op.external_id))
            elif name in op.fields:
                row.append(csv_value(op.fields[name]))
            else:
                row.append("")
        return row

    def _bulk_job(
        self,
        object_name: str,
        kind: WriteKind,
        creates: bool,
        ops: Sequence[WriteOp],
        indices: list[int],
        columns: list[str],
        spool: IO[bytes],
    ) -> dict[int, WriteResult]:
        operation = "insert" if creates else kind.value
        job_body: dict[str, Any] = {
            "object": object_name,
            "operation": operation,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        if operation == "upsert":
            job_body["externalIdFieldName"] = EXTERNAL_ID_FIELD
        log.info(
            "salesforce.bulk.ingest",
            object=object_name,
            operation=operation,
            records=len(indices),
            calls=BULK_JOB_CALLS,
        )
        job_id = self._write_call(
            "bulk_ingest_create",
            lambda sf: str(
                self._bulk_request(
                    sf,
                    "POST",
                    "ingest",
                    json=job_body,
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                ).json()["id"]
            ),
            object_name,
        )

        def upload(sf: Salesforce) -> Any:
            spool.seek(0)  # each attempt sends the whole file
            return self._bulk_request(
                sf,
                "PUT",
                f"ingest/{job_id}/batches",
                data=spool,
                headers={"Content-Type": "text/csv"},
            )

        try:
            self._write_call("bulk_ingest_upload", upload, object_name)
        except UpstreamError:
            self._bulk_abort(object_name, job_id)
            raise
        self._write_call(
            "bulk_ingest_close",
            lambda sf: self._bulk_request(
                sf,
                "PATCH",
                f"ingest/{job_id}",
                json={"state": "UploadComplete"},
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            ),
            object_name,
        )
        state = self._bulk_ingest_wait(object_name, job_id)
        matched = self._bulk_results(object_name, kind, creates, ops, indices, columns, job_id)
        out: dict[int, WriteResult] = {}
        for index in indices:
            result = matched.get(index)
            if result is None:
                result = failed(
                    ops[index].key,
                    NO_RESULT,
                    f"Bulk ingest job {job_id} ended {state} without processing this record",
                    retriable=True,
                )
            out[index] = result
        return out

    def _bulk_abort(self, object_name: str, job_id: str) -> None:
        try:
            self._write_call(
                "bulk_ingest_abort",
                lambda sf: self._bulk_request(
                    sf,
                    "PATCH",
                    f"ingest/{job_id}",
                    json={"state": "Aborted"},
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                ),
                object_name,
            )
        except UpstreamError:
            log.warning("salesforce.bulk.abort_failed", object=object_name, job=job_id)

    def _bulk_ingest_wait(self, object_name: str, job_id: str) -> str:
        """Poll until the job ends; the first poll comes at once (the common, small case)."""
        delay = BULK_POLL_START
        waited = 0.0
        while True:
            job = self._write_call(
                "bulk_ingest_status",
                lambda sf: self._bulk_request(
                    sf, "GET", f"ingest/{job_id}", headers={"Accept": "application/json"}
                ).json(),
                object_name,
            )
            state = str(job.get("state"))
            if state in ("JobComplete", "Failed", "Aborted"):
                if state != "JobComplete":
                    log.warning(
                        "salesforce.bulk.ingest_ended",
                        object=object_name,
                        job=job_id,
                        state=state,
                        error=str(job.get("errorMessage", ""))[:300],
                    )
                return state
            if waited > BULK_POLL_TIMEOUT:
                return state
            self._sleep(delay)
            waited += delay
            delay = min(BULK_POLL_MAX_WAIT, delay * 2)

    def _bulk_csv(self, object_name: str, job_id: str, kind: str) -> Iterator[dict[str, str]]:
        """The rows of a results CSV, read from a temporary file the response is streamed to
        (one call, retried whole): 50,000 results are never all in memory at once."""

        def fetch(sf: Salesforce) -> IO[bytes]:
            spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned open, closed by the reader
            try:
                with self._bulk_request(
                    sf,
                    "GET",
                    f"ingest/{job_id}/{kind}",
                    headers={"Accept": "text/csv"},
                    stream=True,
                ) as response:
                    for block in response.iter_content(1 << 16):
                        spool.write(block)
            except BaseException:
                spool.close()
                raise
            spool.seek(0)
            return spool

        spool = self._write_call(f"bulk_ingest_{kind}", fetch, object_name)
        with spool, io.TextIOWrapper(spool, encoding="utf-8-sig", newline="") as text:
            yield from csv.DictReader(text)

    def _bulk_results(
        self,
        object_name: str,
        kind: WriteKind,
        creates: bool,
        ops: Sequence[WriteOp],
        indices: list[int],
        columns: list[str],
        job_id: str,
    ) -> dict[int, WriteResult]:
        """Match ``successfulResults`` / ``failedResults`` rows to the ops (any row order)."""
        if kind is WriteKind.UPDATE:
            key_columns = ["Id"]
        elif not creates:
            key_columns = [EXTERNAL_ID_FIELD]
        else:
            key_columns = columns  # a Note insert: the whole row is the only key
        waiting: dict[tuple[str, ...], deque[int]] = defaultdict(deque)
        for index in indices:
            op = ops[index]
            if kind is WriteKind.UPDATE:
                waiting[(_id15(str(op.crm_id)),)].append(index)
            elif not creates:
                waiting[(str(op.external_id),)].append(index)
            else:
                waiting[
                    tuple(csv_value(op.fields[c]) if c in op.fields else "" for c in columns)
                ].append(index)

        def take(row: Mapping[str, str]) -> int | None:
            key = tuple(row.get(c, "") for c in key_columns)
            if kind is WriteKind.UPDATE:
                key = (_id15(key[0]),)
            queue = waiting.get(key)
            return queue.popleft() if queue else None

        out: dict[int, WriteResult] = {}
        for row in self._bulk_csv(object_name, job_id, "successfulResults"):
            found = take(row)
            if found is None:
                continue
            index = found
            created = str(row.get("sf__Created", "")).lower() == "true"
            out[index] = WriteResult(
                key=ops[index].key,
                outcome=WriteOutcome.CREATED if created else WriteOutcome.WRITTEN,
                crm_id=row.get("sf__Id") or ops[index].crm_id,
            )
        for row in self._bulk_csv(object_name, job_id, "failedResults"):
            found = take(row)
            if found is None:
                continue
            index = found
            code, message, fields = parse_bulk_error(row.get("sf__Error", ""))
            out[index] = failed(
                ops[index].key, code, message, fields, retriable=code in RETRY_CODES
            )
        return out


def _id15(record_id: str) -> str:
    """Salesforce ids compare on their first 15 characters (the 18-char form adds a checksum)."""
    return record_id[:15]


__all__ = ["EXTERNAL_ID_FIELD", "SalesforceWriter"]
