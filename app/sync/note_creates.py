"""Creates of Salesforce notes that never happen twice (ADR 0006 section 3).

Every other create is an upsert on the crmsync external id, so a create whose answer was lost is
matched again by the CRM. A Salesforce ``Note`` cannot carry that field: its create is a plain
``POST /composite/sobjects``. :class:`NoteCreateGuard` wraps the push's
:class:`~app.crm.writes.CrmWriter` and, for the ``UPSERT`` (create) ops of that object:

1. reads which of the rows were marked pending by an earlier push (:class:`PendingStore`);
2. for those, lists the parents' notes created since the oldest mark (:class:`NoteLookup`, one
   SOQL query per 200 parents) and matches them on parent, ``Title`` and ``Body``
   (:func:`app.mappers.notes.match_pending`): a match is answered ``CREATED`` with the note's id,
   with no create call;
3. marks the others pending, **committed before the create call**, then has the wrapped writer
   create them.

So a push killed between the create call and the commit of its answer (the note exists in
Salesforce, the row has no ``sf_id``) finds the note on its next run instead of making a second
one. Every other object and every update goes straight to the wrapped writer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from app.core.types import CrmName
from app.crm.writes import CrmWriter, WriteKind, WriteOp, WriteOutcome, WriteResult
from app.logging import get_logger
from app.mappers.notes import CrmNote, PendingNote, lookup_since, match_pending

__all__ = ["NoteCreateGuard", "NoteLookup", "PendingStore"]

log = get_logger("crmsync.push")

Clock = Callable[[], datetime]


class PendingStore(Protocol):
    """The CS side of pending note creates."""

    def pending_marks(self, keys: Collection[int]) -> Mapping[int, datetime]:
        """Row id -> its pending mark, for the rows of ``keys`` that have one."""
        ...

    def mark_pending(self, keys: Collection[int], at: datetime) -> None:
        """Mark the rows pending at ``at`` (an older mark is kept), committed on return."""
        ...

    def held_ids(self, crm_ids: Collection[str]) -> set[str]:
        """Those of ``crm_ids`` some CS row already holds as its ``sf_id``."""
        ...


class NoteLookup(Protocol):
    """The CRM side: notes under some parents created since a time."""

    def notes_since(self, parent_ids: Collection[str], since: datetime) -> list[CrmNote]: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class NoteCreateGuard:
    """A :class:`CrmWriter` that makes the creates of ``object_name`` recoverable (see the
    module docstring); ``inner`` does every write."""

    def __init__(
        self,
        inner: CrmWriter,
        store: PendingStore,
        lookup: NoteLookup,
        *,
        object_name: str = "Note",
        parent_field: str = "ParentId",
        clock: Clock = _utcnow,
    ) -> None:
        self.inner = inner
        self.name: CrmName = inner.name
        self.store = store
        self.lookup = lookup
        self.object_name = object_name
        self.parent_field = parent_field
        self.clock = clock
        #: Notes found by the lookup instead of created, over this writer's life.
        self.recovered = 0

    @property
    def api_calls(self) -> int:
        return self.inner.api_calls

    def __getattr__(self, attribute: str) -> object:
        # Anything else the push asks of its writer (tuning, close ...) is the wrapped one's.
        return getattr(self.inner, attribute)

    def write(self, object_name: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        creates = [op for op in ops if op.kind is WriteKind.UPSERT]
        if object_name != self.object_name or not creates:
            return self.inner.write(object_name, ops)
        answered = self._recover(creates)
        to_send = [op for op in ops if op.key not in answered]
        to_create = [op.key for op in to_send if op.kind is WriteKind.UPSERT]
        if to_create:
            self.store.mark_pending(to_create, self.clock())
        results = {r.key: r for r in self.inner.write(object_name, to_send)} if to_send else {}
        results.update(answered)
        return [results[op.key] for op in ops]

    def _recover(self, creates: Sequence[WriteOp]) -> dict[int, WriteResult]:
        marks = self.store.pending_marks([op.key for op in creates])
        if not marks:
            return {}
        pending = [
            PendingNote(
                op.key,
                str(op.fields.get(self.parent_field) or ""),
                _text(op.fields.get("Title")),
                _text(op.fields.get("Body")),
                marks[op.key],
            )
            for op in creates
            if op.key in marks and op.fields.get(self.parent_field)
        ]
        since = lookup_since(p.since for p in pending)
        if since is None:
            return {}
        found = self.lookup.notes_since(sorted({p.parent_id for p in pending}), since)
        taken = self.store.held_ids([n.crm_id for n in found]) if found else set()
        matches = match_pending(pending, found, taken)
        if matches:
            self.recovered += len(matches)
            log.info(
                "pending note creates found in the CRM",
                extra={"crm": self.name, "object_name": self.object_name, "count": len(matches)},
            )
        return {
            key: WriteResult(key, WriteOutcome.CREATED, crm_id=crm_id)
            for key, crm_id in matches.items()
        }


def _text(value: object) -> str | None:
    return None if value is None else str(value)
