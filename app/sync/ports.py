"""What the sync engine needs from storage, as protocols.

The engine (``app.sync.pull``) never touches a SQLAlchemy ``Session``: it asks a
:class:`SyncStore` for cursors and runs, and does each page's work through a :class:`PageWriter`
that is one database transaction. ``app.db.sync_store`` implements both on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from app.sync.cursor import CursorState

# Named in annotations only: the push ledger's module loads the mapping specs and converters,
# which a command that only opens a run (a no-input recompute) does not need.
if TYPE_CHECKING:
    from app.mappers.ledger import LedgerEntry


class PullTuning(Protocol):
    """The knobs a pull reads (``CRMSYNC_SYNC__*``): :class:`app.settings.SyncSettings` is one,
    a test passes its own. The engine takes this rather than the settings module, which also
    carries secrets, URLs and every other layer's options."""

    @property
    def page_size(self) -> int:
        """Salesforce REST batch size."""
        ...

    @property
    def hubspot_page_size(self) -> int: ...

    @property
    def lookback_seconds(self) -> int:
        """How far behind the stored stamp a pass starts reading (see app.sync.cursor)."""
        ...

    @property
    def prefetch_pages(self) -> int: ...

    @property
    def lease_seconds(self) -> float:
        """TTL of a pass's lease (renewed every third of it)."""
        ...


class LeaseHeldError(RuntimeError):
    """Another pass over the same CRM object is running (its lease has not expired)."""


PendingRow = tuple[Mapping[str, Any] | None, dict[str, Any]]
"""(the stored row or None, the row to write) for :meth:`PageWriter.upsert`."""

LedgerKey = tuple[str, str]
"""(CRM record id, CRM field): a ``push_ledger`` row of one (crm, object)."""


@dataclass
class Counts:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    api_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RecordFailure:
    """One record that could not be synced, or one field of it, for ``sync_errors``.

    ``field`` (the CRM field) marks a field-level failure: the record was stored with that field
    empty, cut or a placeholder. A record has at most one open row per field, and one for
    itself (``field`` None).
    """

    record_id: str | None
    category: str
    message: str
    retriable: bool
    payload: Mapping[str, Any] | None = None
    field: str | None = None


@dataclass(frozen=True)
class RejectedRow:
    """A row of an upsert that the database refused (a data or integrity error), left out.

    ``index`` is its position in the rows given to :meth:`PageWriter.upsert`; ``message`` the
    database's own words.
    """

    index: int
    message: str


class PageWriter(Protocol):
    """One page's work, committed atomically (rows, deletes, errors, cursor, run counters)."""

    def existing(self, table: str, id_column: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Current rows (column -> value) of the given CRM ids, keyed by CRM id."""
        ...

    def claim_rows(self, table: str, id_column: str, claims: Mapping[str, str]) -> int:
        """Give each CRM id of ``claims`` (CRM id -> crmsync id) to the row with that
        ``crmsync_id`` and no ``id_column`` yet, unless a row already holds that CRM id.
        Returns the rows claimed."""
        ...

    def resolve_ids(self, table: str, id_column: str, crm_ids: Sequence[str]) -> dict[str, int]:
        """Local primary keys of parent rows, by CRM id (missing parents are absent)."""
        ...

    def upsert(
        self,
        table: str,
        id_column: str,
        rows: Sequence[PendingRow],
        *,
        new_rows: bool = False,
    ) -> Sequence[RejectedRow]:
        """Insert or update rows keyed on the CRM id column: one statement for all of them.

        Each row comes with the stored row it updates (None for a new one). Rows may set
        different columns: the writer pads them, in place, to one column set (a missing column
        keeps its current value, or takes the insert default).

        ``new_rows``: none of the rows existed when the page was read; a row created since by
        someone else is still updated, but keeps its own foreign-key links.

        A row the database refuses (a data or integrity error the mapping did not catch) does
        not fail the page: it is left out, the others are written, and it is returned. Any
        other database error (connection lost) is raised.
        """
        ...

    def soft_delete(self, table: str, id_column: str, ids: Sequence[str], at: datetime) -> int:
        """Set ``deleted_at`` on live rows with these CRM ids; returns how many were live."""
        ...

    def ledger_entries(
        self, crm: str, object_name: str, record_ids: Sequence[str], fields: Sequence[str]
    ) -> dict[LedgerKey, LedgerEntry]:
        """The ``push_ledger`` entries of these records' ``fields`` (one statement), keyed by
        (record id, field); records or fields without an entry are absent."""
        ...

    def write_ledger(
        self,
        crm: str,
        object_name: str,
        entries: Mapping[LedgerKey, LedgerEntry],
        run_id: int | None,
    ) -> None:
        """Insert or update these ledger entries (``value_hash``, ``crm_hash``, ``value``), in
        the page's transaction. ``pushed_at`` moves only when ``value_hash`` changes."""
        ...

    def record_failures(
        self, run_id: int, crm: str, object_name: str, failures: Sequence[RecordFailure]
    ) -> None: ...

    def resolve_failures(
        self,
        crm: str,
        object_name: str,
        record_ids: Sequence[str],
        *,
        keep: Collection[tuple[str, str]] = (),
    ) -> None:
        """Close open errors of records that were stored now, except the field-level errors
        named in ``keep`` (record id, CRM field): those fields are still invalid."""
        ...

    def save_cursor(self, crm: str, object_name: str, stream: str, cursor: CursorState) -> None: ...

    def update_run(self, run_id: int, counts: Counts) -> None: ...

    def renew_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Extend a lease we hold, in the page's transaction; False if it was lost."""
        ...


class SyncStore(Protocol):
    """Cursors, runs and transactions for the engine."""

    def load_cursor(self, crm: str, object_name: str, stream: str) -> CursorState: ...

    def start_run(
        self,
        *,
        kind: str,
        crm: str,
        object_name: str,
        triggered_by: str,
        params: Mapping[str, Any],
        cursor_from: Mapping[str, Any] | None,
    ) -> int: ...

    def finish_run(
        self,
        run_id: int,
        counts: Counts,
        *,
        status: str,
        cursor_to: Mapping[str, Any] | None,
        error: str | None,
    ) -> None: ...

    def claim_run(
        self, run_id: int, *, params: Mapping[str, Any], cursor_from: Mapping[str, Any] | None
    ) -> bool:
        """Turn a ``queued`` run into the ``running`` one of this pass; False (nothing changed)
        when it is no longer queued (cancelled, or claimed by an earlier delivery)."""
        ...

    def cancel_requested(self, run_id: int) -> bool:
        """Whether an operator asked this run to stop (status ``cancelling``)."""
        ...

    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> str | None:
        """Take the lease or raise :class:`LeaseHeldError` naming the holder and its expiry.

        An expired lease, or one whose holder is provably dead, is taken over; returns the
        holder it was taken from (None for a free lease).
        """
        ...

    def heartbeat(self, name: str, holder: str, ttl: timedelta, run_id: int | None) -> bool:
        """Extend our lease and beat the run's ``heartbeat_at``, in their own transaction;
        False if the lease was lost. Called from the heartbeat thread."""
        ...

    def release_lease(self, name: str, holder: str) -> None: ...

    def close_abandoned_runs(
        self, crm: str, object_name: str, kinds: Sequence[str], error: str
    ) -> int:
        """Fail ``running`` runs of these kinds (their process died); call holding the lease."""
        ...

    def page(self) -> AbstractContextManager[PageWriter]:
        """A transaction; committed when the block exits normally, rolled back otherwise."""
        ...

    def has_open_failures(self, crm: str, object_name: str) -> bool:
        """Whether any record of this object has an unresolved pull error."""
        ...

    def has_pending_creates(self, table: str, id_column: str) -> bool:
        """Whether live rows have a ``crmsync_id`` but no ``id_column``: creates pushed whose
        answer may have been lost (the pull then matches them on the external id)."""
        ...

    def required_columns(self, table: str) -> frozenset[str]:
        """Columns that must have a value on insert (NOT NULL without a default): a new record
        without one is refused as a ``validation`` failure before the write."""
        ...

    def link_orphans(
        self, table: str, link_column: str, ref_column: str, target_table: str, target_id: str
    ) -> int:
        """Link rows whose parent arrived after them; returns how many were linked."""
        ...


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
