"""HubSpot writes: :class:`HubSpotWriter` implements :class:`app.crm.writes.CrmWriter`.

A :class:`~app.crm.hubspot.client.HubSpotClient` (same cached API objects, token renewal,
retry policy, rate-limit budget and call counter) that also writes, with hubspot-api-client's
batch APIs (crm-api.md B§3, B§4, B§6, B§9; ADR 0006 §3-§5):

* ``UPDATE`` ops: ``POST /crm/v3/objects/{type}/batch/update``, inputs ``{id, properties}``.
* ``UPSERT`` ops: ``POST .../batch/upsert`` with ``idProperty=crmsync_id`` (a unique property):
  a create whose answer was lost is matched again, never made twice. An ``UPSERT`` that carries
  :class:`~app.crm.writes.Association` s (a note to its company, 190, and deal, 214) goes to
  ``.../batch/create`` instead, with the associations inline and ``crmsync_id`` among its
  properties (upsert inputs cannot carry associations). ``crmsync_id`` is unique, so a repeated
  create is refused (``CONFLICT``) rather than duplicated: the writer then reads the record by
  ``crmsync_id`` and updates it (2 more calls, only on that path).
* At most ``WriteTuning.hubspot_chunk`` (100) inputs a call, never the same id twice in one call
  (a repeat goes to a later call). Every input carries an ``objectWriteTraceId`` (its index), so
  HubSpot reports failures per input (207) and results and errors are matched back by it, by the
  ids in ``context.ids``, or by the ``crmsync_id`` of a result. An input HubSpot says nothing
  about (a merged-away id) fails ``NO_RESULT``.
* Faults: 429 (``Retry-After`` or the rate-limit interval), 423, 5xx and connection resets
  repeat the call with backoff (:mod:`app.crm.retry`); an input refused ``LOCKED`` is sent again
  after a backoff; a call refused as a whole (400: a batch-level validation error, an
  association to a record that does not exist) is split in halves until the bad input is alone
  (:mod:`app.crm.write_chunks`). A ``VALIDATION_ERROR`` of one input is a ``FAILED``
  :class:`~app.crm.writes.WriteResult` with the category as code, the message and the property
  names; nothing raises for it.

Without faults the calls made are exactly :func:`app.crm.writes.planned_calls`.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.crm.hubspot.client import INDEX_LAG_MARGIN, HubSpotClient
from app.crm.retry import RetryPolicy
from app.crm.write_chunks import (
    ChunkRefused,
    RetryRounds,
    failed,
    write_with_retries,
)
from app.crm.writes import WriteKind, WriteOp, WriteOutcome, WriteResult, WriteTuning
from app.errors import UpstreamError
from app.logging import get_logger
from app.settings import Settings

ID_PROPERTY = "crmsync_id"
"""The unique property creates are upserted on (ADR 0006 §3)."""
RETRY_CODES = frozenset({"LOCKED"})
"""Per-input categories sent again after a backoff (423, B§9)."""
UPDATE, UPSERT, CREATE = "update", "upsert", "create"

log = get_logger(__name__)


def hs_value(value: Any) -> str:
    """A wire value as a HubSpot property string (B§3): ``""`` clears, booleans ``true`` /
    ``false``, numbers without exponent, dates ``YYYY-MM-DD``, datetimes ISO with ms and Z."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class HubSpotWriter(HubSpotClient):
    """HubSpot reads (inherited) and batch writes, over one set of API objects and one counter."""

    def __init__(
        self,
        settings: Settings,
        *,
        tuning: WriteTuning | None = None,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        index_lag_margin: timedelta = INDEX_LAG_MARGIN,
    ) -> None:
        super().__init__(
            settings, sleep=sleep, policy=policy, clock=clock, index_lag_margin=index_lag_margin
        )
        self.tuning = tuning or settings.push.tuning()
        self._sleep = sleep

    def _rounds(self) -> RetryRounds:
        return RetryRounds(
            attempts=self._policy.max_attempts,
            wait=lambda n: self._policy.compute_wait(n, 2.0),
            sleep=self._sleep,
            retry_codes=RETRY_CODES,
        )

    # -- CrmWriter ---------------------------------------------------------------------------

    def write(self, object_name: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Write ``ops`` (see the module docstring); one result per op, in order."""
        if not ops:
            return []
        results: dict[int, WriteResult] = {}
        groups: dict[str, list[int]] = defaultdict(list)
        for index, op in enumerate(ops):
            if op.kind is WriteKind.UPDATE:
                if not op.crm_id:
                    results[index] = failed(op.key, "MISSING_ID", "an update needs the HubSpot id")
                    continue
                groups[UPDATE].append(index)
            elif not op.external_id:
                results[index] = failed(op.key, "MISSING_EXTERNAL_ID", f"needs {ID_PROPERTY}")
            else:
                groups[CREATE if op.associations else UPSERT].append(index)
        keys = [op.key for op in ops]
        id_keys: list[Hashable] = [
            op.crm_id if op.kind is WriteKind.UPDATE else op.external_id for op in ops
        ]
        for action in (UPDATE, UPSERT, CREATE):
            indices = groups.get(action)
            if not indices:
                continue

            def send(chunk: list[int], action: str = action) -> dict[int, WriteResult]:
                return self._send(object_name, action, ops, chunk)

            results.update(
                write_with_retries(
                    indices, id_keys, self.tuning.hubspot_chunk, send, keys, self._rounds()
                )
            )
        conflicts = [
            i for i in groups.get(CREATE, []) if not results[i].ok and results[i].code == "CONFLICT"
        ]
        if conflicts:
            results.update(self._recover_creates(object_name, ops, conflicts))
        return [results[i] for i in range(len(ops))]

    # -- one batch call ----------------------------------------------------------------------

    @staticmethod
    def _input(action: str, index: int, op: WriteOp) -> dict[str, Any]:
        properties = {name: hs_value(value) for name, value in op.fields.items()}
        item: dict[str, Any] = {"objectWriteTraceId": str(index)}
        if action == UPDATE:
            item.update(id=str(op.crm_id), properties=properties)
        elif action == UPSERT:
            item.update(id=str(op.external_id), idProperty=ID_PROPERTY, properties=properties)
        else:
            properties[ID_PROPERTY] = str(op.external_id)
            item["properties"] = properties
            item["associations"] = [
                {
                    "to": {"id": str(a.to_id)},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": a.type_id}
                    ],
                }
                for a in op.associations
            ]
        return item

    def _send(
        self, object_name: str, action: str, ops: Sequence[WriteOp], chunk: list[int]
    ) -> dict[int, WriteResult]:
        api = self._api(object_name, "batch_api")
        body = {"inputs": [self._input(action, i, ops[i]) for i in chunk]}
        method = {
            UPDATE: functools.partial(
                api.update, batch_input_simple_public_object_batch_input=body
            ),
            UPSERT: functools.partial(
                api.upsert, batch_input_simple_public_object_batch_input_upsert=body
            ),
            CREATE: functools.partial(
                api.create, batch_input_simple_public_object_batch_input_for_create=body
            ),
        }[action]
        try:
            answer = self._call(
                f"batch_{action}",
                functools.partial(method, _request_timeout=self._timeout, _preload_content=False),
                object_name,
            )
        except UpstreamError as exc:
            if exc.status == 400:
                raise ChunkRefused(exc.code, exc.reason or str(exc)) from exc
            raise
        return self._match(action, ops, chunk, answer)

    @staticmethod
    def _match(
        action: str, ops: Sequence[WriteOp], chunk: list[int], answer: Mapping[str, Any]
    ) -> dict[int, WriteResult]:
        """Results and per-input errors of one batch answer, by trace id, id or crmsync id."""
        by_trace = {str(i): i for i in chunk}
        by_id: dict[str, int] = {}
        for i in chunk:
            op = ops[i]
            key = op.crm_id if action == UPDATE else op.external_id
            if key:
                by_id[str(key)] = i
        out: dict[int, WriteResult] = {}
        for result in answer.get("results") or []:
            index = by_trace.get(str(result.get("objectWriteTraceId")))
            if index is None:
                properties = result.get("properties") or {}
                ref = result.get("id") if action == UPDATE else properties.get(ID_PROPERTY)
                index = by_id.get(str(ref))
            if index is None:
                continue
            created = action == CREATE or (action == UPSERT and bool(result.get("new")))
            out[index] = WriteResult(
                key=ops[index].key,
                outcome=WriteOutcome.CREATED if created else WriteOutcome.WRITTEN,
                crm_id=str(result.get("id")) if result.get("id") is not None else ops[index].crm_id,
            )
        for error in answer.get("errors") or []:
            context = error.get("context") or {}
            targets = [
                by_trace[t] for t in context.get("objectWriteTraceId") or [] if t in by_trace
            ]
            if not targets:
                targets = [by_id[str(i)] for i in context.get("ids") or [] if str(i) in by_id]
            category = str(error.get("category") or "UNKNOWN_ERROR")
            fields: list[str] = []
            for detail in error.get("errors") or []:
                for name in (detail.get("context") or {}).get("propertyName") or []:
                    if name not in fields:
                        fields.append(str(name))
            for index in targets:
                out[index] = failed(
                    ops[index].key,
                    category,
                    str(error.get("message") or ""),
                    fields,
                    retriable=category in RETRY_CODES,
                )
        return out

    # -- a create that already happened ------------------------------------------------------

    def _recover_creates(
        self, object_name: str, ops: Sequence[WriteOp], indices: list[int]
    ) -> dict[int, WriteResult]:
        """Creates refused ``CONFLICT``: a record with that ``crmsync_id`` exists (an earlier
        attempt whose answer was lost). Read it by ``crmsync_id`` and update it instead."""
        api = self._api(object_name, "batch_api")
        found: dict[str, str] = {}
        for start in range(0, len(indices), self.tuning.hubspot_chunk):
            part = indices[start : start + self.tuning.hubspot_chunk]
            body = {
                "inputs": [{"id": str(ops[i].external_id)} for i in part],
                "idProperty": ID_PROPERTY,
                "properties": [ID_PROPERTY],
            }
            answer = self._call(
                "batch_read",
                functools.partial(
                    api.read,
                    batch_read_input_simple_public_object_id=body,
                    archived=False,
                    _request_timeout=self._timeout,
                    _preload_content=False,
                ),
                object_name,
            )
            for result in answer.get("results") or []:
                ext = (result.get("properties") or {}).get(ID_PROPERTY)
                if ext is not None:
                    found[str(ext)] = str(result["id"])
        out: dict[int, WriteResult] = {}
        todo: list[int] = []
        updates: list[WriteOp] = []
        for i in indices:
            crm_id = found.get(str(ops[i].external_id))
            if crm_id is None:
                continue  # keeps its CONFLICT result
            todo.append(i)
            updates.append(
                WriteOp(key=ops[i].key, kind=WriteKind.UPDATE, fields=ops[i].fields, crm_id=crm_id)
            )
        if not todo:
            return out
        log.info("hubspot.create.recovered", object=object_name, records=len(todo))
        written = self.write(object_name, updates)
        out.update(zip(todo, written, strict=True))
        return out


__all__ = ["ID_PROPERTY", "HubSpotWriter", "hs_value"]
