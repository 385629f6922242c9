"""The push engine: CS changes -> CRM writes, with the ledger as the merge base (ADR 0006).

For one (CRM, object) a push:

1. holds the object's lease (the pull's: a pull and a push of one object never overlap) in a
   :class:`~app.sync.run_scope.RunScope` of kind ``push``;
2. streams the candidate rows in pages (``PushTuning.page_rows``, 2,000): first the rows to
   **create** (no id in this CRM nor another one, changed on the CS side; only for objects with a
   create rule), then the **changes**: live rows with ``(cs_changed_at, id)`` past the ``push``
   cursor (minus a short lookback: a CS write commits a little after it stamps), up to the pass's
   start;
3. loads each page's ledger in one query and plans it (:func:`app.mappers.push_plan.plan_push`:
   only the changed fields of changed records);
4. writes the planned records in batches (``PushTuning.batch_records``, 50,000) through the
   :class:`~app.crm.writes.CrmWriter`, which chunks them at the API-call floor; the writer is
   built on the first write, so a push with nothing to write makes **no** API call at all;
5. commits the results in transactions of at most a page: first the lease's fencing check,
   then the ledger for what the CRM confirmed (``value_hash`` = ``crm_hash`` = the hash sent),
   the CRM ids of creates, the failures as ``sync_errors`` (direction ``push``), the run's
   counters and, with the batch's last transaction, the cursor.

Crash safety: creates are upserts on the row's ``crmsync_id``, assigned and committed before
the call; a push killed anywhere re-reads from the last committed cursor, finds what it
confirmed in the ledger (unchanged), and writes the rest again: an update twice is harmless, a
create is matched on its external id, never made twice.

A dry run (:meth:`PushEngine.preview`) reads and plans the same rows the same way, without the
lease, a run row or a writer, and counts the calls the push will make
(:func:`app.crm.writes.planned_calls` per batch, the adapters' own chunking rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.core.runs import SyncKind
from app.core.types import CrmName
from app.crm.writes import CrmWriter, WriteKind, WriteResult, WriteTuning, planned_calls
from app.logging import get_logger
from app.mappers.convert import get_converter
from app.mappers.push_plan import (
    AgreedField,
    CreateExtras,
    FieldChange,
    PlanError,
    RecordPlan,
    plan_push,
)
from app.mappers.spec import ObjectMapping
from app.sync.cursor import CursorState, encode
from app.sync.holder import new_holder
from app.sync.ports import Counts, RecordFailure
from app.sync.pull import LeaseLostError, PassInterrupted
from app.sync.push_ports import (
    PUSH_STREAM,
    LedgerWrite,
    MissingTargetsError,
    PushStore,
    PushTuning,
    TargetGuard,
)
from app.sync.run_scope import RunRefused, RunResult, RunScope, RunSpec

log = get_logger("crmsync.push")

Clock = Callable[[], datetime]

#: Id columns of the CRMs: a row holding another CRM's id is that CRM's record, never created here.
ID_COLUMNS = ("sf_id", "hs_id")

#: CRM error codes of records the CRM refused for their data (``validation``).
_VALIDATION_CODES = (
    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    "VALIDATION_ERROR",
    "REQUIRED_FIELD_MISSING",
    "STRING_TOO_LONG",
    "INVALID_",
    "PROPERTY_DOESNT_EXIST",
    "MALFORMED_",
    "NUMBER_OUTSIDE_VALID_RANGE",
)


def failure_category(result: WriteResult) -> str:
    """The ``sync_errors`` category of a failed write, from the CRM's code."""
    code = (result.code or "").upper()
    if result.retriable or code in ("UNABLE_TO_LOCK_ROW", "RATE_LIMITED", "429"):
        return "transient"
    if code in ("ENTITY_IS_DELETED", "NOT_FOUND", "OBJECT_NOT_FOUND", "404"):
        return "not_found"
    if code in ("DUPLICATE_VALUE", "DUPLICATE_EXTERNAL_ID", "CONFLICT", "409"):
        return "conflict"
    if code.startswith(("INSUFFICIENT_ACCESS", "FORBIDDEN")):
        return "auth"
    if any(code.startswith(prefix) for prefix in _VALIDATION_CODES) or not code:
        return "validation"
    return "validation" if code.isupper() else "fatal"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PushProgress:
    """Reported after each committed transaction (the CLI draws its progress bar from it)."""

    crm: str
    object_name: str
    counts: Counts
    planned: int


@dataclass
class ObjectPreview:
    """What a push of one object will do: its records (old -> new per field) and calls."""

    crm: str
    object_name: str
    records: list[RecordPlan] = field(default_factory=list)
    agreed: int = 0
    skipped: int = 0
    unchanged: int = 0
    errors: list[PlanError] = field(default_factory=list)
    planned_calls: int = 0

    def as_dict(self, limit: int | None = None, offset: int = 0) -> dict[str, Any]:
        """The preview as JSON: every count covers all the records; ``records`` lists
        ``limit`` of them from ``offset`` (in the push's order), so a page of a long preview
        costs its page, not the whole list (``truncated``: more follow this page)."""
        end = None if limit is None else offset + limit
        shown = self.records[offset:end]
        return {
            "crm": self.crm,
            "object": self.object_name,
            "planned_records": len(self.records),
            "planned_calls": self.planned_calls,
            "updates": sum(1 for r in self.records if r.kind is WriteKind.UPDATE),
            "creates": sum(1 for r in self.records if r.kind is WriteKind.UPSERT),
            "unchanged": self.unchanged,
            "agreed_fields": self.agreed,
            "skipped": self.skipped,
            "errors": [_error_dict(e) for e in self.errors],
            "offset": offset,
            "records": [record_dict(r) for r in shown],
            "truncated": end is not None and len(self.records) > end,
        }


def record_dict(record: RecordPlan) -> dict[str, Any]:
    """A planned record as the preview shows it."""
    return {
        "row_id": record.row_id,
        "crm_id": record.crm_id,
        "crmsync_id": record.crmsync_id,
        "kind": "create" if record.kind is WriteKind.UPSERT else "update",
        "changes": [
            {
                "field": c.crm_field,
                "column": c.column,
                "old": c.old,
                "new": c.new,
                "reason": str(c.reason),
            }
            for c in record.changes
        ],
        **({"create_fields": dict(record.create_fields)} if record.create_fields else {}),
    }


def _error_dict(error: PlanError) -> dict[str, Any]:
    return {
        "row_id": error.row_id,
        "record_id": error.record_id,
        "field": error.crm_field,
        "category": error.category,
        "message": error.message,
    }


@dataclass
class _Batch:
    """Planned work not yet written: records, ledger-only agreements, plan errors, and how far
    the stream has been read (the cursor to commit with it)."""

    records: list[RecordPlan] = field(default_factory=list)
    agreed: list[AgreedField] = field(default_factory=list)
    errors: list[PlanError] = field(default_factory=list)
    position: CursorState | None = None

    def clear(self) -> None:
        self.records, self.agreed, self.errors, self.position = [], [], [], None


class PushEngine:
    """Pushes one CRM's objects from a :class:`PushStore` through a :class:`CrmWriter`."""

    def __init__(
        self,
        store: PushStore,
        crm: CrmName,
        writer: Callable[[], CrmWriter],
        mappings: Mapping[str, ObjectMapping],
        tuning: PushTuning,
        write_tuning: WriteTuning | None = None,
        *,
        creates: Mapping[str, CreateExtras] | None = None,
        clock: Clock = _utcnow,
        on_commit: Callable[[PushProgress], None] | None = None,
        targets: TargetGuard | None = None,
    ) -> None:
        self.store = store
        self.targets = targets
        self.crm: CrmName = crm
        self._writer_factory = writer
        self._writer: CrmWriter | None = None
        self._calls_base = 0
        self.mappings = mappings
        self.tuning = tuning
        self.write_tuning = write_tuning or WriteTuning()
        self.creates = dict(creates or {})
        self.clock = clock
        self.on_commit = on_commit
        self.holder = new_holder()
        self._planned: dict[str, dict[str, int]] = {}
        self._previewing = False
        self._lease_ttl = timedelta(seconds=tuning.lease_seconds)

    # ----------------------------------------------------------------------------------------

    @property
    def writer_built(self) -> bool:
        return self._writer is not None

    def writer(self) -> CrmWriter:
        """The CRM writer, built on first use (a push with nothing to write builds none)."""
        if self._writer is None:
            self._writer = self._writer_factory()
            self._calls_base = self._writer.api_calls
        return self._writer

    def api_calls(self) -> int:
        """Calls made through the writer since this engine built it."""
        return self._writer.api_calls - self._calls_base if self._writer is not None else 0

    # ----------------------------------------------------------------------------------------
    # the pass
    # ----------------------------------------------------------------------------------------

    def push(
        self,
        object_name: str,
        *,
        only_row_ids: Sequence[int] | None = None,
        triggered_by: str = "cli",
    ) -> RunResult:
        """One push of ``object_name`` (or only of the rows ``only_row_ids``, whatever their
        stamps; the cursor then stays). Refused, failed and interrupted passes come back as the
        pull's do (see :meth:`app.sync.pull.PullEngine.pull`)."""
        spec = RunSpec(
            str(SyncKind.PUSH),
            self.crm,
            object_name,
            triggered_by,
            abandoned_kinds=(str(SyncKind.PUSH), str(SyncKind.PULL), str(SyncKind.BACKFILL)),
        )
        scope = RunScope(self.store, spec, self.holder, self._lease_ttl)
        try:
            with scope:
                self._push(scope, object_name, only_row_ids)
        except RunRefused as refused:
            return refused.result
        except MissingTargetsError:
            raise  # the run is closed as failed with the message; the command exits 2
        except KeyboardInterrupt as exc:
            if scope.result is None:
                raise
            raise PassInterrupted(self._described(scope.result)) from exc
        except Exception:
            if scope.result is None:
                raise
            return self._described(scope.result)
        assert scope.result is not None, "the scope finishes a started run on exit"
        return self._described(scope.result)

    def _described(self, result: RunResult) -> RunResult:
        """The push's own numbers in the summary: records planned and written, calls planned."""
        planned = self._planned.get(result.object_name, {"records": 0, "calls": 0})
        result.extra.update(
            planned=planned["records"],
            written=result.counts.created + result.counts.updated,
            planned_calls=planned["calls"],
        )
        return result

    def _push(self, scope: RunScope, object_name: str, only_row_ids: Sequence[int] | None) -> None:
        mapping = self.mappings[object_name]
        stored = self.store.load_cursor(self.crm, object_name, PUSH_STREAM)
        started = self.clock()
        scope.start(
            params={"only_row_ids": list(only_row_ids) if only_row_ids is not None else None},
            cursor_from=encode(stored.mark()) if stored.at is not None else None,
            api_calls=self.api_calls,
        )
        planned = self._planned[object_name] = {"records": 0, "calls": 0}
        batch = _Batch()
        today = started.astimezone(UTC).date()
        for rows, position in self._candidates(mapping, stored, started, only_row_ids):
            self._plan_into(batch, mapping, rows, today, scope.counts)
            if position is not None:
                batch.position = position
            if len(batch.records) >= self.tuning.batch_records or not batch.records:
                self._flush(scope, mapping, batch, planned)
        self._flush(scope, mapping, batch, planned)

    # ----------------------------------------------------------------------------------------
    # preview
    # ----------------------------------------------------------------------------------------

    def preview(
        self, object_name: str, *, only_row_ids: Sequence[int] | None = None
    ) -> ObjectPreview:
        """What :meth:`push` would write now, and its API calls; reads only, no lease."""
        mapping = self.mappings[object_name]
        stored = self.store.load_cursor(self.crm, object_name, PUSH_STREAM)
        started = self.clock()
        today = started.astimezone(UTC).date()
        preview = ObjectPreview(self.crm, object_name)
        self._previewing = True
        try:
            return self._preview(preview, mapping, stored, started, today, only_row_ids)
        finally:
            self._previewing = False

    def _preview(
        self,
        preview: ObjectPreview,
        mapping: ObjectMapping,
        stored: CursorState,
        started: datetime,
        today: date,
        only_row_ids: Sequence[int] | None,
    ) -> ObjectPreview:
        batch = _Batch()
        counts = Counts()
        pending = 0  # records of the current batch, as the push would group them
        for rows, _position in self._candidates(mapping, stored, started, only_row_ids):
            before = len(batch.records)
            self._plan_into(batch, mapping, rows, today, counts)
            pending += len(batch.records) - before
            if pending >= self.tuning.batch_records or pending == 0:
                preview.planned_calls += self._calls(batch.records[len(batch.records) - pending :])
                pending = 0
        preview.planned_calls += self._calls(batch.records[len(batch.records) - pending :])
        preview.records = batch.records
        preview.agreed = len(batch.agreed)
        preview.errors = batch.errors
        preview.unchanged = counts.unchanged
        preview.skipped = counts.skipped
        return preview

    def _calls(self, records: Sequence[RecordPlan]) -> int:
        if not records:
            return 0
        upserts = sum(1 for r in records if r.kind is WriteKind.UPSERT)
        return planned_calls(self.crm, len(records) - upserts, upserts, self.write_tuning)

    # ----------------------------------------------------------------------------------------
    # reading and planning
    # ----------------------------------------------------------------------------------------

    def _candidates(
        self,
        mapping: ObjectMapping,
        stored: CursorState,
        started: datetime,
        only_row_ids: Sequence[int] | None,
    ) -> Iterator[tuple[list[dict[str, Any]], CursorState | None]]:
        """Pages of candidate rows, each with the stream position it reaches (None: creates and
        chosen rows, which do not move the cursor)."""
        table, id_column, size = mapping.cs_table, mapping.id_column, self.tuning.page_rows
        creates = mapping.crm_object in self.creates
        if only_row_ids is not None:
            ids = list(dict.fromkeys(int(i) for i in only_row_ids))
            for start in range(0, len(ids), size):
                rows = self.store.rows_by_id(table, ids[start : start + size])
                wanted = [
                    r
                    for r in rows
                    if r.get("deleted_at") is None and (r.get(id_column) is not None or creates)
                ]
                yield wanted, None
            return
        if creates:
            others = [c for c in ID_COLUMNS if c != id_column]
            after_id = 0
            while True:
                rows = self.store.rows_to_create(
                    table, id_column, others, after_id=after_id, limit=size
                )
                if not rows:
                    break
                yield rows, None
                after_id = int(rows[-1]["id"])
                if len(rows) < size:
                    break
        # Records refused with a retriable error are tried again, changed or not (creates are
        # re-read above anyway); the change stream below then leaves them out.
        retried: set[int] = set()
        retry = self.store.retry_row_ids(self.crm, mapping.crm_object, self.tuning.retry_attempts)
        for start in range(0, len(retry), size):
            rows = [
                r
                for r in self.store.rows_by_id(table, retry[start : start + size])
                if r.get("deleted_at") is None and r.get(id_column) is not None
            ]
            retried.update(int(r["id"]) for r in rows)
            yield rows, None
        lookback = timedelta(seconds=self.tuning.lookback_seconds)
        columns = plan_columns(mapping)
        after: tuple[datetime, int] | None = None
        if stored.at is not None:
            # Re-read the lookback (rows already pushed plan as unchanged: no call); without
            # one, continue strictly after the stored position.
            after = (stored.at - lookback, 0) if lookback else (stored.at, int(stored.id or 0))
        top = stored
        while True:
            rows = self.store.changed_rows(
                table, id_column, after=after, until=started, limit=size, columns=columns
            )
            if not rows:
                break
            last = rows[-1]
            at = _aware(last["cs_changed_at"])
            after = (at, int(last["id"]))
            if top.at is None or (at, int(last["id"])) > (top.at, int(top.id or 0)):
                top = CursorState(at, str(last["id"]))
            yield [r for r in rows if int(r["id"]) not in retried] if retried else rows, top
            if len(rows) < size:
                break

    def _plan_into(
        self,
        batch: _Batch,
        mapping: ObjectMapping,
        rows: Sequence[Mapping[str, Any]],
        today: date,
        counts: Counts,
    ) -> None:
        if not rows:
            return
        ids = [str(r[mapping.id_column]) for r in rows if r.get(mapping.id_column) is not None]
        # The agreed values themselves are only shown (a preview's old -> new): a push loads
        # the hashes alone.
        ledger = self.store.load_ledger(self.crm, mapping.crm_object, ids, values=self._previewing)
        plan = plan_push(
            mapping, rows, ledger, today=today, creates=self.creates.get(mapping.crm_object)
        )
        batch.records.extend(plan.records)
        batch.agreed.extend(plan.agreed)
        batch.errors.extend(plan.errors)
        counts.unchanged += plan.unchanged
        counts.skipped += len({s.row_id for s in plan.skipped})

    # ----------------------------------------------------------------------------------------
    # writing and committing
    # ----------------------------------------------------------------------------------------

    def _flush(
        self, scope: RunScope, mapping: ObjectMapping, batch: _Batch, planned: dict[str, int]
    ) -> None:
        """Write the batch's records, then commit their results (and the batch's agreements,
        errors and cursor) in transactions of at most a page."""
        if not batch.records and not batch.agreed and not batch.errors and batch.position is None:
            return
        records = batch.records
        planned["records"] += len(records)
        planned["calls"] += self._calls(records)
        scope.counts.read += len(records)  # a push's "read": the records it planned to write
        results: list[WriteResult] = []
        if records:
            writer = self.writer()
            if self.targets is not None:
                # Before the first write of the command (later: a no-op, 0 calls), on the
                # writer's client, so its calls are the run's and the preview's.
                planned["calls"] += self.targets.planned_calls()
                self.targets.check()
            records = self._with_crmsync_ids(mapping, records)
            results = writer.write(mapping.crm_object, [r.to_op() for r in records])
            if len(results) != len(records):
                raise RuntimeError(
                    f"the {self.crm} writer answered {len(results)} results for {len(records)} ops"
                )
        size = max(1, self.tuning.page_rows)
        chunks = [
            (records[i : i + size], results[i : i + size]) for i in range(0, len(records), size)
        ]
        if not chunks:
            chunks = [([], [])]
        for index, (chunk, answers) in enumerate(chunks):
            last = index == len(chunks) - 1
            self._commit(scope, mapping, chunk, answers, batch if last else None)
        batch.clear()

    def _with_crmsync_ids(
        self, mapping: ObjectMapping, records: list[RecordPlan]
    ) -> list[RecordPlan]:
        missing = [r.row_id for r in records if r.kind is WriteKind.UPSERT and not r.crmsync_id]
        if not missing:
            return records
        assigned = self.store.assign_crmsync_ids(mapping.cs_table, missing)
        return [
            r.with_crmsync_id(assigned[r.row_id])
            if r.kind is WriteKind.UPSERT and not r.crmsync_id
            else r
            for r in records
        ]

    def _commit(
        self,
        scope: RunScope,
        mapping: ObjectMapping,
        records: Sequence[RecordPlan],
        results: Sequence[WriteResult],
        batch: _Batch | None,
    ) -> None:
        crm, object_name = self.crm, mapping.crm_object
        run_id, counts = scope.run_id, scope.counts
        assert run_id is not None, "commits happen in a started run"
        ledger: list[LedgerWrite] = []
        created: dict[int, str] = {}
        failures: list[RecordFailure] = []
        written: list[str] = []
        for record, result in zip(records, results, strict=True):
            if not result.ok:
                failures.append(_write_failure(record, result))
                continue
            crm_id = record.crm_id or result.crm_id
            if record.crm_id is None and result.crm_id is not None:
                created[record.row_id] = result.crm_id
            if crm_id is None:  # confirmed without an id: nothing to key the ledger on
                continue
            written.append(crm_id)
            ledger.extend(_confirmed(crm_id, c) for c in record.changes)
        if batch is not None:
            ledger.extend(
                LedgerWrite(a.crm_id, a.crm_field, a.value_hash, a.value_hash, a.value)
                for a in batch.agreed
            )
            failures.extend(_plan_failure(e) for e in batch.errors)
        with self.store.push_page() as writer:
            if not writer.renew_lease(scope.name, self.holder, self._lease_ttl):
                raise LeaseLostError(
                    f"lease {scope.name} expired and was taken over; this push stops, its "
                    "results are not recorded (the next push writes them again), the other "
                    "pass carries on"
                )
            refused = (
                writer.store_crm_ids(mapping.cs_table, mapping.id_column, created)
                if created
                else {}
            )
            for row_id, reason in refused.items():
                failures.append(
                    RecordFailure(created[row_id], "conflict", reason, False, {"row_id": row_id})
                )
            writer.write_ledger(crm, object_name, ledger, run_id)
            if written:
                writer.resolve_failures(crm, object_name, written)
            if failures:
                writer.record_failures(run_id, crm, object_name, failures)
            for record, result in zip(records, results, strict=True):
                if not result.ok:
                    counts.failed += 1
                elif record.kind is WriteKind.UPSERT:
                    counts.created += 1
                else:
                    counts.updated += 1
            if batch is not None:
                counts.failed += len({e.row_id for e in batch.errors})
                if batch.position is not None:
                    writer.save_cursor(crm, object_name, PUSH_STREAM, batch.position)
            counts.api_calls = scope.calls_made()
            writer.update_run(run_id, counts)
        if batch is not None and batch.position is not None:
            scope.cursor_to = encode(batch.position.mark())
        if self.on_commit is not None:
            self.on_commit(PushProgress(crm, object_name, counts, counts.created + counts.updated))


def plan_columns(mapping: ObjectMapping) -> list[str] | None:
    """The columns the planner (:func:`app.mappers.push_plan.plan_push`) reads of a row to
    update: ids, stamps and the outbound fields' columns; None for every column (an outbound
    composite, such as a note body, reads the whole row). A push with nothing to write re-reads
    its lookback: fewer columns, less to decode."""
    columns = {"id", mapping.id_column, *ID_COLUMNS, "crmsync_id", "deleted_at"}
    # The stamps: the CS change and field stamps, and the CRM's (``newest_wins``).
    columns.update(("cs_changed_at", "field_stamps", mapping.modified_column))
    for fm in mapping.outbound_fields:
        if get_converter(fm.convert).composite:
            return None
        columns.add(fm.column)
    return sorted(columns)


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _confirmed(crm_id: str, change: FieldChange) -> LedgerWrite:
    """What the CRM confirmed: both sides hold the value sent (``crm_hash`` = the same)."""
    return LedgerWrite(crm_id, change.crm_field, change.new_hash, change.new_hash, change.new)


def _write_failure(record: RecordPlan, result: WriteResult) -> RecordFailure:
    return RecordFailure(
        record.crm_id or record.crmsync_id,
        failure_category(result),
        f"{result.code or 'refused'}: {result.message or 'the CRM refused the record'}",
        result.retriable,
        {
            "row_id": record.row_id,
            "kind": "create" if record.kind is WriteKind.UPSERT else "update",
            "fields": record.fields(),
            "code": result.code,
            "fields_named": list(result.fields),
        },
    )


def _plan_failure(error: PlanError) -> RecordFailure:
    return RecordFailure(
        error.record_id,
        error.category,
        error.message,
        False,
        {"row_id": error.row_id, **(error.payload or {})},
        field=error.crm_field,
    )
