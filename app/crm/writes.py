"""The write side of the CRM boundary: what a push hands an adapter and what it gets back.

The push engine (``app.sync.push``) plans, per object, a list of :class:`WriteOp` (only the
changed fields of changed records) and hands it to a :class:`CrmWriter`; the adapter chunks it
(Salesforce sObject Collections of 200 or one Bulk API 2.0 job, HubSpot batches of 100), retries
what is transient, splits a chunk refused as a whole, and answers one :class:`WriteResult` per
op, in order. :func:`planned_calls` is the one chunking rule, shared by the preview and the
adapters, so a preview's call count is the push's (ADR 0006).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from math import ceil
from typing import Any, Protocol

from app.core.types import CrmName

__all__ = [
    "Association",
    "CrmWriter",
    "WriteKind",
    "WriteOp",
    "WriteOutcome",
    "WriteResult",
    "WriteTuning",
    "planned_calls",
]


class WriteKind(StrEnum):
    UPDATE = "update"
    """Set fields on a record the CRM id names."""
    UPSERT = "upsert"
    """Create, or update when it exists: matched on the crmsync external id (idempotent create)."""


@dataclass(frozen=True)
class Association:
    """A link to make on create (HubSpot inline associations; Salesforce uses a field such as
    ``ParentId`` in ``fields`` instead)."""

    to_object: str
    to_id: str
    type_id: int


@dataclass(frozen=True)
class WriteOp:
    """One record's write. ``key`` is the caller's handle (the CS row id), echoed in the
    result. ``crm_id`` for updates; ``external_id`` (the row's ``crmsync_id``) for upserts.
    ``fields``: CRM field -> wire value, only the changed ones."""

    key: int
    kind: WriteKind
    fields: Mapping[str, Any]
    crm_id: str | None = None
    external_id: str | None = None
    associations: Sequence[Association] = ()


class WriteOutcome(StrEnum):
    WRITTEN = "written"
    CREATED = "created"
    FAILED = "failed"


@dataclass(frozen=True)
class WriteResult:
    """The CRM's answer for one op. ``crm_id`` is set when written or created. A failure carries
    the CRM's code (``FIELD_CUSTOM_VALIDATION_EXCEPTION``, ``VALIDATION_ERROR``...), its message,
    the fields it names, and whether retrying later may succeed."""

    key: int
    outcome: WriteOutcome
    crm_id: str | None = None
    code: str | None = None
    message: str | None = None
    fields: tuple[str, ...] = ()
    retriable: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome is not WriteOutcome.FAILED


@dataclass(frozen=True)
class WriteTuning:
    """Chunk sizes and the Bulk threshold (settings ``CRMSYNC_PUSH__*``)."""

    salesforce_chunk: int = 200
    hubspot_chunk: int = 100
    bulk_threshold: int = 2_000


def planned_calls(
    crm: CrmName, updates: int, upserts: int, tuning: WriteTuning | None = None
) -> int:
    """API calls a push of ``updates`` + ``upserts`` records of one object makes without faults.

    Salesforce: updates and upserts go to different endpoints, ceil(n/200) each; above the Bulk
    threshold (by total) one ingest job per kind costs its fixed calls (create, upload, close,
    one status poll, successful and failed results = 6). HubSpot: ceil(n/100) per kind.
    """
    t = tuning or WriteTuning()
    if crm == "salesforce":
        if updates + upserts > t.bulk_threshold:
            return sum(BULK_JOB_CALLS for n in (updates, upserts) if n)
        return ceil(updates / t.salesforce_chunk) + ceil(upserts / t.salesforce_chunk)
    return ceil(updates / t.hubspot_chunk) + ceil(upserts / t.hubspot_chunk)


BULK_JOB_CALLS = 6
"""Fixed calls of one Bulk API 2.0 ingest job when it is complete at the first status poll:
create, upload, close, poll, successfulResults, failedResults. More polls cost one call each;
the adapter reports what it actually spent."""


class CrmWriter(Protocol):
    """What the push engine needs from a CRM to write."""

    name: CrmName

    @property
    def api_calls(self) -> int:
        """Calls made through this client so far (every HTTP request, retries included)."""
        ...

    def write(self, object_name: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Write ``ops`` (one object, no key twice) with the fewest calls; one result per op, in
        order. Never raises for a record-level failure; raises :class:`app.errors.UpstreamError`
        when the CRM cannot be reached after retries (the engine fails the run, the ledger
        holds what was confirmed so far)."""
        ...
