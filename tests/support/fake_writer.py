"""An in-memory :class:`~app.crm.writes.CrmWriter`: counts calls by the adapters' chunking rule,
keeps the records it was sent, upserts on the external id, and can refuse records or fail."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.types import CrmName
from app.crm.writes import WriteKind, WriteOp, WriteOutcome, WriteResult, WriteTuning, planned_calls
from app.errors import UpstreamError


@dataclass
class FakeWriter:
    name: CrmName = "salesforce"
    tuning: WriteTuning = field(default_factory=WriteTuning)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # CRM id -> fields
    by_external_id: dict[str, str] = field(default_factory=dict)
    refuse: dict[int, str] = field(default_factory=dict)  # op key -> error code
    #: Op keys whose refusal is retriable (a lock or rate limit that outlasted the retries).
    retriable: set[int] = field(default_factory=set)
    #: Raised after the CRM applied a write call, as if its answer was lost (kill, reset).
    lose_answer_of_call: int | None = None
    before_answer: Callable[[], None] | None = None
    calls: int = 0
    writes: list[list[WriteOp]] = field(default_factory=list)
    creates: int = 0

    @property
    def api_calls(self) -> int:
        return self.calls

    def write(self, object_name: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        self.writes.append(list(ops))
        updates = sum(1 for op in ops if op.kind is WriteKind.UPDATE)
        self.calls += planned_calls(self.name, updates, len(ops) - updates, self.tuning)
        results: list[WriteResult] = []
        for op in ops:
            code = self.refuse.get(op.key)
            if code is not None:
                results.append(
                    WriteResult(
                        op.key,
                        WriteOutcome.FAILED,
                        code=code,
                        message="refused",
                        retriable=op.key in self.retriable,
                    )
                )
                continue
            if op.kind is WriteKind.UPDATE:
                assert op.crm_id is not None
                if op.crm_id not in self.records:
                    results.append(
                        WriteResult(op.key, WriteOutcome.FAILED, code="ENTITY_IS_DELETED")
                    )
                    continue
                self.records[op.crm_id].update(op.fields)
                results.append(WriteResult(op.key, WriteOutcome.WRITTEN, op.crm_id))
                continue
            assert op.external_id is not None, "a create without its crmsync id"
            crm_id = self.by_external_id.get(op.external_id)
            if crm_id is None:
                crm_id = f"NEW{len(self.by_external_id) + 1:05d}"
                self.by_external_id[op.external_id] = crm_id
                self.records[crm_id] = {}
                self.creates += 1
            self.records[crm_id].update(op.fields)
            results.append(WriteResult(op.key, WriteOutcome.CREATED, crm_id))
        if self.before_answer is not None:
            self.before_answer()
        if self.lose_answer_of_call is not None and len(self.writes) >= self.lose_answer_of_call:
            raise UpstreamError("connection reset after the write", retriable=True)
        return results
