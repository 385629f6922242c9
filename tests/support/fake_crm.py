"""An in-memory :class:`app.crm.base.CrmClient` for engine tests (no server, no network).

It serves Salesforce-shaped wire records ordered by (SystemModstamp, Id) with the same contract
as the real adapters: ``start.lower`` is inclusive on the stamp, ``start.upper`` exclusive,
``resume`` continues an interrupted stream, deleted records come in ``deleted_ids``. Faults
are injected with ``fail_after_pages``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from app.crm.base import CrmName, ReadFrom, RecordPage, WireRecord
from app.errors import ErrorCategory, UpstreamError


def sf_stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_stamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.000%z")


class FakeSalesforce:
    name: CrmName = "salesforce"

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, WireRecord]] = {}
        self.calls = 0
        self.fail_after_pages: int | None = None
        self.pages_served = 0

    @property
    def api_calls(self) -> int:
        return self.calls

    def put(self, object_name: str, record: WireRecord) -> None:
        self.objects.setdefault(object_name, {})[str(record["Id"])] = dict(record)

    def delete(self, object_name: str, record_id: str, at: datetime) -> None:
        record = self.objects[object_name][record_id]
        record["IsDeleted"] = True
        record["SystemModstamp"] = sf_stamp(at)

    def _ordered(self, object_name: str, start: ReadFrom) -> list[WireRecord]:
        rows = sorted(
            self.objects.get(object_name, {}).values(),
            key=lambda r: (parse_stamp(r["SystemModstamp"]), r["Id"]),
        )
        if start.lower is not None:
            rows = [r for r in rows if parse_stamp(r["SystemModstamp"]) >= start.lower]
        if start.upper is not None:
            rows = [r for r in rows if parse_stamp(r["SystemModstamp"]) < start.upper]
        return rows

    def estimate_changes(self, object_name: str, start: ReadFrom | None) -> int | None:
        start = start or ReadFrom()
        self.calls += 1
        return len(self._ordered(object_name, start))

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        start = start or ReadFrom()
        resume: dict[str, Any] = dict(start.resume)
        expected: int | None = None
        if "snapshot" in resume:
            ids = list(resume["snapshot"])
            offset = int(resume["offset"])
        else:
            ids = [r["Id"] for r in self._ordered(object_name, start)]
            offset = 0
            expected = len(ids)  # the count comes with the first page, as Salesforce's does
        table = self.objects.get(object_name, {})
        while offset < len(ids):
            if self.fail_after_pages is not None and self.pages_served >= self.fail_after_pages:
                raise UpstreamError(
                    "injected outage", category=ErrorCategory.TRANSIENT, retriable=True
                )
            chunk = [dict(table[i]) for i in ids[offset : offset + page_size]]
            offset += len(chunk)
            self.calls += 1
            self.pages_served += 1
            last = chunk[-1]
            records = [{k: v for k, v in r.items() if k in fields} for r in chunk]
            yield RecordPage(
                records=[r for r in records if not r.get("IsDeleted")],
                deleted_ids=[r["Id"] for r in records if r.get("IsDeleted")],
                last=(parse_stamp(last["SystemModstamp"]), last["Id"]),
                resume={"snapshot": ids, "offset": offset} if offset < len(ids) else {},
                expected=expected,
            )
            expected = None

    def iter_deleted(self, object_name: str, start: ReadFrom | None) -> Iterator[RecordPage]:
        start = start or ReadFrom()
        return iter(())

    def close(self) -> None:
        pass
