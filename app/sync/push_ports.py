"""What the push engine (:mod:`app.sync.push`) needs from storage and settings, as protocols.

``app.db.push_store`` implements :class:`PushStore` on SQLite and PostgreSQL; tests may pass
their own. The run bookkeeping (lease, run row, heartbeat) is the :class:`~app.sync.ports.SyncStore`
part, shared with the pull through :class:`~app.sync.run_scope.RunScope`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from app.errors import ConfigError
from app.mappers.push_plan import LedgerIndex
from app.sync.cursor import CursorState
from app.sync.ports import Counts, RecordFailure, SyncStore

PUSH_STREAM = "push"
"""The push's stream in ``sync_cursors`` (per CRM and object): the (cs_changed_at, row id) of
the last CS change it committed."""

TARGETS_STREAM = "targets"
"""The target-field check's cache in ``sync_cursors`` (per CRM and object): when the object's
target fields were last found present and editable (``watermark_at``), and the key of the field
set checked (``watermark_id``: a hash of the object's target field specs)."""


class MissingTargetsError(ConfigError):
    """The CRM lacks fields the push writes (or the integration user cannot edit them)."""


class TargetGuard(Protocol):
    """The check, before a push's first write, that the CRM has every target field (issue #17
    item 8). It runs on the push's own (counted) client, at most once per push command, and only
    when something is to be written; a check that passed is cached, so most pushes make none."""

    def planned_calls(self) -> int:
        """Calls :meth:`check` will make now: 0 once checked or while the cache is fresh."""
        ...

    def check(self) -> None:
        """Read the target fields when needed; raise :class:`MissingTargetsError` listing what
        is missing."""
        ...


class PushTuning(Protocol):
    """The push's knobs: rows read per page, records written per batch, the lease TTL and the
    lookback over CS change stamps (a CS write commits a little after it stamps)."""

    @property
    def page_rows(self) -> int: ...

    @property
    def batch_records(self) -> int: ...

    @property
    def lease_seconds(self) -> float: ...

    @property
    def lookback_seconds(self) -> float: ...

    @property
    def retry_attempts(self) -> int:
        """Pushes a record refused with a retriable error (a lock, a 429 or 5xx that outlasted
        the adapter's retries) is tried by, changed or not; then it waits for a change."""
        ...


@dataclass(frozen=True)
class DefaultPushTuning:
    """Defaults: pages of 2,000 rows; up to 50,000 records per write batch (one Salesforce Bulk
    job, or ceil(n/200) / ceil(n/100) batch calls); the pull's 60 s lease; 60 s lookback;
    retriable refusals tried again by the next 10 pushes."""

    page_rows: int = 2_000
    batch_records: int = 50_000
    lease_seconds: float = 60.0
    lookback_seconds: float = 60.0
    retry_attempts: int = 10


@dataclass(frozen=True)
class LedgerWrite:
    """One ledger row to write: the value both sides now agree on."""

    record_id: str
    crm_field: str
    value_hash: str
    crm_hash: str | None
    value: Any


class PushPageWriter(Protocol):
    """One transaction of a push: the ledger, the CRM ids of creates, errors, cursor, run."""

    def renew_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """The fencing check: extend our lease in this transaction; False if it was lost."""
        ...

    def write_ledger(
        self, crm: str, object_name: str, rows: Sequence[LedgerWrite], run_id: int | None
    ) -> None: ...

    def store_crm_ids(
        self, table: str, id_column: str, crm_ids: Mapping[int, str]
    ) -> dict[int, str]:
        """Set the CRM id of created rows (row id -> CRM id). Returns the rows it could not set,
        with the reason (another row already holds that CRM id)."""
        ...

    def record_failures(
        self, run_id: int, crm: str, object_name: str, failures: Sequence[RecordFailure]
    ) -> None:
        """Store failures as ``sync_errors`` rows of direction ``push``."""
        ...

    def resolve_failures(self, crm: str, object_name: str, record_ids: Sequence[str]) -> None:
        """Close open push errors of records written now."""
        ...

    def save_cursor(self, crm: str, object_name: str, stream: str, cursor: CursorState) -> None: ...

    def update_run(self, run_id: int, counts: Counts) -> None: ...


class PushStore(SyncStore, Protocol):
    """The pull's store, plus what the push reads and writes."""

    def changed_rows(
        self,
        table: str,
        id_column: str,
        *,
        after: tuple[datetime, int] | None,
        until: datetime,
        limit: int,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Live rows with a CRM id and ``(cs_changed_at, id) > after`` (None: from the first),
        ``cs_changed_at <= until``, in that order, at most ``limit``; only ``columns`` of
        them when given."""
        ...

    def rows_to_create(
        self,
        table: str,
        id_column: str,
        other_id_columns: Sequence[str],
        *,
        after_id: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Live rows changed on the CS side that have no id in this CRM nor in another one
        (``other_id_columns``; a row written on the CS side, ``origin`` cs, whatever other ids
        it has), ``id > after_id`` in id order: creates never confirmed. Parent CRM ids the row
        lacks are read from its linked parents (a note whose account got its id later)."""
        ...

    def rows_by_id(self, table: str, row_ids: Sequence[int]) -> list[dict[str, Any]]: ...

    def retry_row_ids(self, crm: str, object_name: str, max_attempts: int) -> list[int]:
        """CS row ids of the object's open push errors that are retriable and failed fewer than
        ``max_attempts`` times, in row id order."""
        ...

    def load_ledger(
        self, crm: str, object_name: str, record_ids: Sequence[str], *, values: bool = True
    ) -> LedgerIndex:
        """The ledger entries of these CRM records, in one query per few thousand ids; without
        ``values`` the agreed values are left out (None), only the hashes are read."""
        ...

    def target_checks(
        self, crm: str, object_names: Sequence[str]
    ) -> dict[str, tuple[str, datetime]]:
        """The cached target checks of these objects: object -> (field set key, checked at)."""
        ...

    def save_target_checks(self, crm: str, keys: Mapping[str, str], at: datetime) -> None:
        """Cache a passed target check: object -> key of the field set found complete."""
        ...

    def assign_crmsync_ids(self, table: str, row_ids: Sequence[int]) -> dict[int, str]:
        """Give rows without a ``crmsync_id`` a new UUID and **commit** it (before any create
        call, so a create whose answer is lost is matched again); returns every row's id."""
        ...

    def push_page(self) -> AbstractContextManager[PushPageWriter]:
        """A transaction; committed when the block exits normally, rolled back otherwise."""
        ...
