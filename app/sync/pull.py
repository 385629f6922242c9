"""The pull engine: CRM change streams into the CS database, page by page.

For one (CRM, object) a pass reads the stored cursor, asks the adapter for the records changed
since it, and commits each page as one transaction holding the rows, the deletes, the per-record
errors, the run counters **and the cursor**. A pass killed anywhere therefore resumes at the last
committed page: nothing is lost (the cursor never runs ahead of the data) and nothing is duplicated
(rows are upserted on their CRM id, re-reads are detected as unchanged).

Two kinds of pass share this code:

* ``pull`` (incremental, stream ``changes``): from the stored high-water mark minus the
  lookback (:func:`app.sync.cursor.read_from`: the engine, not the adapter, sets the lower
  bound); the mark is promoted with :func:`app.sync.cursor.finalize` when the pass ends.
* ``backfill`` (stream ``backfill``): everything, or everything modified since ``--since``;
  checkpointed after each page so a restart resumes the same stream; when it completes the
  ``changes`` cursor is moved up to the newest page it read, so incremental passes continue.
  A backfill command over several objects is one unit (:mod:`app.sync.backfill`): rerun after
  a kill, it skips the objects it finished and resumes the one it was in.

Salesforce streams switch to Bulk API 2.0 when the first page says more rows than
``CRMSYNC_SYNC__BULK_THRESHOLD`` (the adapter decides; the run reports ``bulk``). Records that
fail mapping or validation become ``sync_errors`` rows and never stop the pass; upstream errors
that survive the adapter's retries fail the pass (status ``failed``) with the cursor at the last
committed page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.runs import RunStatus, SyncKind
from app.crm.base import CrmClient, RecordPage, WireRecord
from app.crm.provision import EXTERNAL_ID, NO_CUSTOM_FIELDS
from app.errors import CrmsyncError
from app.logging import get_logger
from app.mappers.errors import FieldIssue, MappingError
from app.mappers.ledger import LedgerEntry
from app.mappers.ownership import FieldConflict, MergeAction, merge_incoming
from app.mappers.record import MappedRecord, accepts, map_record
from app.mappers.spec import ObjectMapping
from app.sync import backfill as backfills
from app.sync import cursor as cursors
from app.sync import partitions
from app.sync.cursor import CursorState, encode
from app.sync.holder import new_holder
from app.sync.partitions import Partition
from app.sync.ports import (
    Counts,
    LedgerKey,
    PageWriter,
    PendingRow,
    PullTuning,
    RecordFailure,
    SyncStore,
)
from app.sync.prefetch import prefetch
from app.sync.run_scope import RunRefused, RunResult, RunScope, RunSpec, build_result

PullResult = RunResult  # the name callers know; one result type for every kind of pass

Clock = Callable[[], datetime]

# The stored bookmark never passes the run's start: rows written while the run reads are not
# visible to it and must fall after the bookmark (the adapters' lookback adds overlap on top).
BOOKMARK_LAG = timedelta(0)


log = get_logger("crmsync.sync")


class LeaseLostError(CrmsyncError):
    """Our lease expired mid-pass (a stalled process) and another pass took over."""


class PassInterrupted(KeyboardInterrupt):
    """A pass stopped by SIGINT / SIGTERM, after closing its run as ``cancelled``.

    Still a ``KeyboardInterrupt``, so a caller that does not handle it stops too; the service
    catches it to report the pass (``result``) and start no further ones.
    """

    def __init__(self, result: PullResult) -> None:
        super().__init__(result.error)
        self.result = result


def _stamp_key(at: datetime | None) -> tuple[Any, ...]:
    return cursors.position_key(at, None)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PageProgress:
    """Reported after each committed page (the CLI draws its progress bar from it)."""

    crm: str
    object_name: str
    kind: str
    counts: Counts
    position: CursorState
    expected: int | None


def position_json(position: CursorState | None) -> dict[str, Any] | None:
    """A position as ``sync_runs.cursor_from``/``cursor_to`` and the summary show it."""
    return encode(position.mark()) if position is not None else None


class PullEngine:
    """Pulls one CRM's objects through a :class:`CrmClient` into a :class:`SyncStore`."""

    def __init__(
        self,
        store: SyncStore,
        client: CrmClient,
        mappings: Mapping[str, ObjectMapping],
        settings: PullTuning,
        *,
        clock: Clock = _utcnow,
        on_page: Callable[[PageProgress], None] | None = None,
        parent_mappings: Mapping[str, ObjectMapping] | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.mappings = mappings
        self.settings = settings
        self.clock = clock
        self.on_page = on_page
        self._links = self._link_plan(parent_mappings or mappings)
        self.holder = new_holder()
        self._lease_ttl = timedelta(seconds=settings.lease_seconds)
        self._lookback = timedelta(seconds=settings.lookback_seconds)
        self._open_failures = True
        # The backfill being run: planned for a whole command (plan_backfill), or per object.
        self._backfill: backfills.BackfillPlan | None = None
        self._generation: backfills.Generation | None = None
        #: The crmsync external id field this pass reads (see :meth:`_external_id_field`).
        self._claim_field: str | None = None
        #: The partition being read (:meth:`pull_partition`), None for every other pass.
        self._partition: Partition | None = None

    # ----------------------------------------------------------------------------------------
    # Passes
    # ----------------------------------------------------------------------------------------

    def pull_partition(
        self,
        object_name: str,
        partition: Partition,
        generation: backfills.Generation,
        *,
        triggered_by: str = "job",
    ) -> PullResult:
        """One partition of a partitioned backfill (``docs/adr/0008-partitioned-backfill.md``).

        The same pass as a backfill's, with the partition's lease (``sync:<crm>:<object>:p<i>``),
        run kind (``backfill:p<i>``) and checkpoint (stream ``backfill:p<i>``), reading only
        ``partition.lower <= stamp < partition.upper``. ``generation`` is the parent's: a
        partition that finished it is not read again; one killed resumes at its last committed
        page. It never promotes the ``changes`` cursor: the parent does, once every partition
        succeeded (:mod:`app.wiring.partitioned`).
        """
        self._partition = partition
        self._generation = backfills.Generation(generation.started_at, partition.lower)
        try:
            return self.pull(
                object_name,
                kind=SyncKind.BACKFILL,
                since=partition.lower,
                triggered_by=triggered_by,
            )
        finally:
            self._partition = None

    def pull(
        self,
        object_name: str,
        *,
        kind: SyncKind = SyncKind.PULL,
        since: datetime | None = None,
        triggered_by: str = "cli",
    ) -> PullResult:
        """One pass over ``object_name``; see the module docstring for the two kinds.

        The lease, the run row and their closing are the :class:`RunScope`'s: a pass refused
        because a live pass holds the lease comes back ``cancelled``; an upstream failure, or
        any other exception once the run started, comes back ``failed`` (logged, the caller's
        other passes still run); SIGINT/SIGTERM closes it ``cancelled`` and raises
        :class:`PassInterrupted`.
        """
        part = self._partition
        spec = (
            RunSpec(
                str(kind),
                self.client.name,
                object_name,
                triggered_by,
                abandoned_kinds=(str(SyncKind.PULL), str(SyncKind.BACKFILL)),
            )
            if part is None
            else RunSpec(
                part.kind,
                self.client.name,
                object_name,
                triggered_by,
                abandoned_kinds=(part.kind,),
                partition=part.index,
            )
        )
        scope = RunScope(self.store, spec, self.holder, self._lease_ttl)
        try:
            with scope:
                self._pull(scope, object_name, kind=kind, since=since)
        except RunRefused as refused:
            return refused.result
        except KeyboardInterrupt as exc:
            if scope.result is None:
                raise
            raise PassInterrupted(scope.result) from exc
        except Exception:
            if scope.result is None:  # failed before its run started: the caller records it
                raise
            return scope.result
        assert scope.result is not None, "the scope finishes a started run on exit"
        return scope.result

    def _pull(
        self,
        scope: RunScope,
        object_name: str,
        *,
        kind: SyncKind,
        since: datetime | None,
    ) -> None:
        mapping = self.mappings[object_name]
        crm = self.client.name
        part = self._partition
        stream = "backfill" if kind is SyncKind.BACKFILL else "changes"
        if part is not None:
            stream = part.stream
        stored = self.store.load_cursor(crm, object_name, stream)
        start = self._start_position(kind, stored, since)
        run_started_at = self.clock()
        params: dict[str, Any] = {"since": since.isoformat() if since else None}
        if part is not None:
            params["partition"] = part.as_dict()
        scope.start(
            params=params,
            cursor_from=position_json(start),
            api_calls=lambda: self.client.api_calls,
            since=since.isoformat() if since else None,
        )
        progress = cursors.open_cursor(start, started_at=run_started_at)
        scope.cursor_to = position_json(progress.current)
        read_from = cursors.read_from(start, self._lookback)
        if part is not None:
            read_from = partitions.bounded(read_from, part)
        # Resolving old errors costs an UPDATE per page; skip it while there are none.
        self._open_failures = self.store.has_open_failures(crm, object_name)
        expected: int | None = None
        fields = self._request_fields(mapping)
        self._claim_field = self._external_id_field(mapping)
        if self._claim_field is not None and self._claim_field not in fields:
            fields = (*fields, self._claim_field)
        # No count call: the adapter chooses REST or Bulk from its first page, and says how
        # many rows to expect with it (the progress bar) and whether it went Bulk.
        pages = prefetch(
            self.client.iter_changes(object_name, fields, read_from, page_size=self._page_size()),
            depth=self.settings.prefetch_pages,
        )
        for page in pages:
            scope.used_bulk = scope.used_bulk or page.bulk
            if expected is None:
                expected = page.expected
            progress = self._commit_page(scope, mapping, stream, page, progress)
            self._report(
                crm, object_name, scope.spec.kind, scope.counts, progress.current, expected
            )
        if part is None or part.reads_deletes:
            for page in self.client.iter_deleted(object_name, read_from):
                progress = self._commit_page(scope, mapping, stream, page, progress, deletes=True)
        final = cursors.finalize(progress, BOOKMARK_LAG)
        final = self._finish_stream(crm, object_name, kind, final, run_started_at, stream)
        self._link_orphans(mapping)
        scope.reached_end(position_json(final))

    # ----------------------------------------------------------------------------------------
    # Cursor bookkeeping
    # ----------------------------------------------------------------------------------------

    def plan_backfill(
        self, objects: Sequence[str], *, since: datetime | None, restart: bool = False
    ) -> backfills.BackfillPlan:
        """Plan a backfill command over ``objects`` (see :mod:`app.sync.backfill`).

        Continues the open backfill of this CRM, or begins a new one (``restart``, or the last
        one completed). Every object the pass will start is stored as pending in the plan's
        generation at once, so a kill before it is reached leaves the unit open. Raises
        :class:`~app.sync.backfill.BackfillConflictError` for another ``since`` than the open
        backfill's.
        """
        crm = self.client.name
        stored = {o: self.store.load_cursor(crm, o, "backfill") for o in self.mappings}
        plan = backfills.plan_backfill(
            stored, objects, since=since, restart=restart, now=self.clock()
        )
        with self.store.page() as writer:
            for object_name in plan.to_start:
                pending = backfills.pending_state(plan.generation)
                writer.save_cursor(crm, object_name, "backfill", pending)
        self._backfill = plan
        return plan

    def backfill(self, object_name: str, *, triggered_by: str = "cli") -> PullResult:
        """One object's pass of the planned backfill; an object it already finished is not read
        (no run, no API call) and is reported ``already_complete``."""
        plan = self._backfill
        if plan is None:
            raise RuntimeError("plan_backfill() must be called before backfill()")
        step = plan.step_for(object_name)
        if step.step is backfills.Step.DONE:
            spec = RunSpec(str(SyncKind.BACKFILL), self.client.name, object_name, triggered_by)
            result = build_result(spec, RunStatus.SUCCEEDED)
        else:
            result = self.pull(
                object_name,
                kind=SyncKind.BACKFILL,
                since=plan.generation.since,
                triggered_by=triggered_by,
            )
        result.extra["backfill"] = backfills.describe(plan, object_name)
        return result

    def _start_position(
        self, kind: SyncKind, stored: CursorState, since: datetime | None
    ) -> CursorState | None:
        if kind is SyncKind.BACKFILL:
            # The planned generation, a partition's (its parent's), or (engine called
            # directly) the object's own open one.
            if self._partition is not None and self._generation is not None:
                generation = self._generation
            elif self._backfill is not None:
                generation = self._backfill.generation
            else:
                generation = backfills.generation_for(stored, since, self.clock())
            self._generation = generation
            return backfills.start_position(stored, generation)[1]
        if stored.at is None and not stored.resume:
            return None
        return stored.mark()

    def _finish_stream(
        self,
        crm: str,
        object_name: str,
        kind: SyncKind,
        final: CursorState,
        finished_at: datetime,
        stream: str = "backfill",
    ) -> CursorState:
        """Store the finished stream's cursors; returns the position stored (``cursor_to``).

        A backfill stores, and promotes to ``changes``, only what it read: its last committed
        page (None if it committed none), never the ``--since`` it started from. A partition
        stores its own stream only; its parent promotes ``changes`` once all have succeeded.
        """
        if kind is not SyncKind.BACKFILL:
            with self.store.page() as writer:
                writer.save_cursor(crm, object_name, "changes", final)
            return final
        generation = self._generation
        assert generation is not None, "_start_position sets the generation of a backfill"
        stored = self.store.load_cursor(crm, object_name, stream)
        read = backfills.read_position(stored, generation)
        with self.store.page() as writer:
            done = backfills.completed_state(generation, read, finished_at)
            writer.save_cursor(crm, object_name, stream, done)
            if self._partition is not None:
                return read if read is not None else CursorState()
            changes = self.store.load_cursor(crm, object_name, "changes")
            if read is not None and cursors.position_key(read.at, read.id) > cursors.position_key(
                changes.at, changes.id
            ):
                writer.save_cursor(crm, object_name, "changes", read)
        return read if read is not None else CursorState()

    # ----------------------------------------------------------------------------------------
    # One page
    # ----------------------------------------------------------------------------------------

    def _commit_page(
        self,
        scope: RunScope,
        mapping: ObjectMapping,
        stream: str,
        page: RecordPage,
        progress: cursors.StreamCursor,
        *,
        deletes: bool = False,
    ) -> cursors.StreamCursor:
        crm = self.client.name
        run_id, counts = scope.run_id, scope.counts
        assert run_id is not None, "pages are committed in a started run"
        mapped, failures, not_synced = self._map_page(mapping, page.records)
        counts.skipped += not_synced
        deleted_ids = list(
            dict.fromkeys([*page.deleted_ids, *(m.crm_id for m in mapped if m.deleted)])
        )
        gone = set(deleted_ids)
        live = [m for m in mapped if m.crm_id not in gone]
        now = self.clock()
        claims = self._claims(mapping, page.records, gone)
        with self.store.page() as writer:
            if claims:
                writer.claim_rows(mapping.cs_table, mapping.id_column, claims)
            written_ids = self._write_records(writer, mapping, live, failures, counts, now, run_id)
            if deleted_ids:
                counts.deleted += writer.soft_delete(
                    mapping.cs_table, mapping.id_column, deleted_ids, now
                )
            if self._open_failures:
                still_invalid = {
                    (f.record_id, f.field)
                    for f in failures
                    if f.field is not None and f.record_id is not None
                }
                writer.resolve_failures(crm, mapping.crm_object, written_ids, keep=still_invalid)
            if failures:
                writer.record_failures(run_id, crm, mapping.crm_object, failures)
                self._open_failures = True
            if not deletes:
                counts.read += len(page.records)
                progress = cursors.advance(progress, page.last, page.resume)
                saved = cursors.checkpoint(progress, BOOKMARK_LAG)
                if stream == "backfill" or self._partition is not None:
                    assert self._generation is not None
                    saved = backfills.page_state(self._generation, saved)
                writer.save_cursor(crm, mapping.crm_object, stream, saved)
            else:
                counts.read += len(page.records) + len(page.deleted_ids)
            counts.failed += _failed_records(failures)
            counts.api_calls = scope.calls_made()
            writer.update_run(run_id, counts)
            if not writer.renew_lease(scope.name, self.holder, self._lease_ttl):
                raise LeaseLostError(
                    f"lease {scope.name} expired and was taken over; "
                    "this pass stops, the page is rolled back, the other pass carries on"
                )
        # After the commit: where a failure or an interrupt from here on leaves the pass.
        scope.cursor_to = position_json(progress.current)
        return progress

    def _external_id_field(self, mapping: ObjectMapping) -> str | None:
        """The CRM field holding crmsync's external id (Salesforce ``Crmsync_Id__c``, HubSpot
        ``crmsync_id``), read by this pass only while CS rows of the object wait for a create's
        answer (a ``crmsync_id`` and no id in this CRM): a push killed after the CRM created
        the record and before crmsync stored its id. Such rows exist only after a push whose
        target check found the field, so a pull of an org without it never names it; and a
        pull with none waiting requests nothing more. Objects that cannot carry custom fields
        (Salesforce ``Note``) have none."""
        crm = self.client.name
        if mapping.crm_object in NO_CUSTOM_FIELDS[crm]:
            return None
        if not self.store.has_pending_creates(mapping.cs_table, mapping.id_column):
            return None
        return EXTERNAL_ID[crm]

    def _claims(
        self, mapping: ObjectMapping, records: Sequence[WireRecord], deleted: set[str]
    ) -> dict[str, str]:
        """CRM id -> crmsync id of the page's records that carry one: the page writer gives
        each to the CS row with that crmsync id and no CRM id yet (its create's answer was
        lost), so the record updates that row instead of becoming a second one."""
        name = self._claim_field
        if name is None:
            return {}
        claims: dict[str, str] = {}
        for wire in records:
            external, crm_id = wire.get(name), wire.get(mapping.id_field)
            if external in (None, "") or crm_id in (None, "") or str(crm_id) in deleted:
                continue
            claims[str(crm_id).strip()] = str(external).strip()
        return claims

    def _map_page(
        self, mapping: ObjectMapping, records: Sequence[WireRecord]
    ) -> tuple[list[MappedRecord], list[RecordFailure], int]:
        """Map wire records; keep the newest version of a record seen twice in one page.

        Returns the mapped records, the failures and how many records the mapping does not sync
        (``ObjectMapping.record_filter``: CRM notes that are not handovers).
        """
        by_id: dict[str, MappedRecord] = {}
        skipped = 0
        failures: list[RecordFailure] = []
        for wire in records:
            if not accepts(mapping, wire):
                skipped += 1
                continue
            try:
                record = map_record(mapping, wire)
            except MappingError as exc:
                raw_id = wire.get(mapping.id_field)
                failures.append(
                    RecordFailure(
                        record_id=str(raw_id) if raw_id not in (None, "") else None,
                        category="validation",
                        message=str(exc),
                        retriable=False,
                        payload=dict(wire),
                    )
                )
                continue
            seen = by_id.get(record.crm_id)
            if seen is None or _stamp_key(record.modified_at) >= _stamp_key(seen.modified_at):
                by_id[record.crm_id] = record
        return list(by_id.values()), failures, skipped

    def _write_records(
        self,
        writer: PageWriter,
        mapping: ObjectMapping,
        records: Sequence[MappedRecord],
        failures: list[RecordFailure],
        counts: Counts,
        now: datetime,
        run_id: int | None = None,
    ) -> list[str]:
        """Merge with existing rows, resolve parents, upsert (one statement for the page's creates,
        one for its updates); returns the ids stored (or found unchanged).

        A row the database refuses is left out of the page and becomes a ``database`` failure;
        the field issues of every stored record become field-level failures."""
        if not records:
            return []
        table, id_column = mapping.cs_table, mapping.id_column
        crm = self.client.name
        existing = writer.existing(table, id_column, [r.crm_id for r in records])
        ledger = self._ledger_of(writer, mapping, existing)
        parents = self._resolve_parents(writer, mapping, records)
        required = self.store.required_columns(table)
        pending: list[PendingRow] = []
        # What each pending row counts as once stored: "created", "updated" or "unchanged".
        outcome: dict[str, str] = {}
        written: list[str] = []
        ledger_writes: dict[LedgerKey, LedgerEntry] = {}
        for record in records:
            current = existing.get(record.crm_id)
            if current is not None and self._is_stale(mapping, current, record):
                counts.skipped += 1
                continue
            result = merge_incoming(
                mapping,
                current,
                record,
                (current or {}).get("field_stamps") or {},
                ledger.get(record.crm_id, {}),
            )
            for conflict in result.conflicts:
                failures.append(_conflict_failure(record, conflict))
            links = {
                column: parents[column][crm_id]
                for column, crm_id in record.parent_refs.items()
                if crm_id in parents.get(column, {})
            }
            changed_links = {
                k: v for k, v in links.items() if current is None or current.get(k) != v
            }
            restored = current is not None and current.get("deleted_at") is not None
            if result.action is MergeAction.UNCHANGED and not changed_links and not restored:
                # Nothing changed on the CS side's terms (an echo of a push lands here): no
                # data column, no updated_at, and never field_stamps or cs_changed_at.
                counts.unchanged += 1
                written.append(record.crm_id)
                ledger_writes.update(((record.crm_id, f), e) for f, e in result.ledger.items())
                if mapping.modified_column in result.values:
                    # Only the CRM's stamp moved (a system update, or our own push): keep it
                    # current, as sync bookkeeping.
                    row = self._row(mapping, current, result.values, {}, None)
                    pending.append((current, row))
                    outcome[record.crm_id] = "unchanged"
                continue
            if current is None:
                if any(result.values.get(c) is None for c in required):
                    missing = sorted(c for c in required if result.values.get(c) is None)
                    failures.append(
                        RecordFailure(
                            record.crm_id,
                            "validation",
                            f"required CS column(s) {', '.join(missing)} have no value",
                            False,
                            {"values": {k: str(v) for k, v in record.values.items()}},
                        )
                    )
                    continue
                counts.created += 1
                outcome[record.crm_id] = "created"
            else:
                counts.updated += 1
                outcome[record.crm_id] = "updated"
            row = self._row(mapping, current, result.values, changed_links, now)
            if restored:
                row["deleted_at"] = None
            pending.append((current, row))
            written.append(record.crm_id)
            ledger_writes.update(((record.crm_id, f), e) for f, e in result.ledger.items())
        # Creates and updates go separately: the writer can skip foreign-key work on the
        # update side of rows that did not exist (see PageWriter.upsert).
        refused: set[str] = set()
        for new_rows in (True, False):
            group = [item for item in pending if (item[0] is None) is new_rows]
            if group:
                rejected = writer.upsert(table, id_column, group, new_rows=new_rows)
                for rejection in rejected:
                    row = group[rejection.index][1]
                    crm_id = str(row[id_column])
                    refused.add(crm_id)
                    _uncount(counts, outcome[crm_id])
                    failures.append(_database_failure(crm_id, rejection.message, row))
        if refused:
            written = [crm_id for crm_id in written if crm_id not in refused]
            ledger_writes = {k: v for k, v in ledger_writes.items() if k[0] not in refused}
        if ledger_writes:
            writer.write_ledger(crm, mapping.crm_object, ledger_writes, run_id)
        stored = set(written)
        for record in records:
            if record.issues and record.crm_id in stored:
                failures.extend(_field_failure(record.crm_id, issue) for issue in record.issues)
        return written

    @staticmethod
    def _ledger_of(
        writer: PageWriter, mapping: ObjectMapping, existing: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, dict[str, LedgerEntry]]:
        """The ledger entries of the page's existing rows, for the mapping's ``both`` fields:
        record id -> CRM field -> entry. One statement; none when the mapping has no ``both``
        field or the page only creates rows."""
        fields = [fm.crm_field for fm, _columns in mapping.two_way_fields]
        if not fields or not existing:
            return {}
        found = writer.ledger_entries(
            mapping.crm, mapping.crm_object, list(existing), list(dict.fromkeys(fields))
        )
        by_record: dict[str, dict[str, LedgerEntry]] = {}
        for (record_id, field), entry in found.items():
            by_record.setdefault(record_id, {})[field] = entry
        return by_record

    @staticmethod
    def _is_stale(mapping: ObjectMapping, current: Mapping[str, Any], record: MappedRecord) -> bool:
        """A replayed older version (lookback overlap, out-of-order page) must not win."""
        stored = current.get(mapping.modified_column)
        if stored is None or record.modified_at is None:
            return False
        return _stamp_key(record.modified_at) < _stamp_key(stored)

    @staticmethod
    def _row(
        mapping: ObjectMapping,
        current: Mapping[str, Any] | None,
        values: Mapping[str, Any],
        links: Mapping[str, Any],
        now: datetime | None,
    ) -> dict[str, Any]:
        """The row to upsert; ``now`` None: bookkeeping only, ``updated_at`` is left alone."""
        row: dict[str, Any] = {}
        if current is not None:
            row[mapping.id_column] = current[mapping.id_column]
        row.update(values)
        row.update(links)
        if now is not None:
            row["updated_at"] = now
        return row

    # ----------------------------------------------------------------------------------------
    # Parents
    # ----------------------------------------------------------------------------------------

    def _resolve_parents(
        self, writer: PageWriter, mapping: ObjectMapping, records: Sequence[MappedRecord]
    ) -> dict[str, dict[str, int]]:
        wanted: dict[str, set[str]] = {}
        for record in records:
            for column, crm_id in record.parent_refs.items():
                wanted.setdefault(column, set()).add(crm_id)
        resolved: dict[str, dict[str, int]] = {}
        targets = {p.link_column: p.target_table for p in mapping.parents}
        for column, ids in wanted.items():
            target = targets.get(column)
            if target is None:
                continue
            resolved[column] = writer.resolve_ids(target, mapping.id_column, sorted(ids))
        return resolved

    @staticmethod
    def _link_plan(
        mappings: Mapping[str, ObjectMapping],
    ) -> list[tuple[str, str, str, str, str]]:
        """(table, link column, ref column, target table, target id column) per parent ref.

        The ref column is the plain column the same CRM field fills (``sf_account_id``), which
        keeps the parent's CRM id until the parent row exists.
        """
        plan: list[tuple[str, str, str, str, str]] = []
        for mapping in mappings.values():
            for ref in mapping.parents:
                fm = next((f for f in mapping.inbound_fields if f.crm_field == ref.crm_field), None)
                # Only refs copied verbatim into a plain column can be joined later; a key
                # prefix needs no filter there, since Salesforce ids are unique across objects.
                if fm is None or ref.convert != fm.convert:
                    continue
                plan.append(
                    (
                        mapping.cs_table,
                        ref.link_column,
                        fm.column,
                        ref.target_table,
                        mapping.id_column,
                    )
                )
        return plan

    def _link_orphans(self, mapping: ObjectMapping) -> None:
        """After a pass, link children whose parent arrived after them (in either table)."""
        for table, link, ref, target, target_id in self._links:
            if mapping.cs_table in (table, target):
                self.store.link_orphans(table, link, ref, target, target_id)

    # ----------------------------------------------------------------------------------------

    def _request_fields(self, mapping: ObjectMapping) -> tuple[str, ...]:
        associations = tuple(f"associations.{a}" for a in mapping.associations())
        return mapping.read_fields() + associations

    def _page_size(self) -> int:
        if self.client.name == "hubspot":
            return self.settings.hubspot_page_size
        return self.settings.page_size

    def _report(
        self,
        crm: str,
        object_name: str,
        kind: str,
        counts: Counts,
        position: CursorState,
        expected: int | None,
    ) -> None:
        if self.on_page is not None:
            self.on_page(PageProgress(crm, object_name, str(kind), counts, position, expected))


def _failed_records(failures: Sequence[RecordFailure]) -> int:
    """How many records have a failure: one kept out, or stored with fields left empty, counts
    once however many rows it has (an id-less failure counts on its own)."""
    ids = {f.record_id for f in failures if f.record_id is not None}
    return len(ids) + sum(1 for f in failures if f.record_id is None)


def _uncount(counts: Counts, outcome: str) -> None:
    """Take back the count of a row the database refused."""
    if outcome == "created":
        counts.created -= 1
    elif outcome == "updated":
        counts.updated -= 1
    else:
        counts.unchanged -= 1


def _conflict_failure(record: MappedRecord, conflict: FieldConflict) -> RecordFailure:
    """A ``both`` field whose conflict could not be decided: neither side was written."""
    return RecordFailure(
        record.crm_id,
        "conflict",
        conflict.message,
        False,
        {
            "columns": list(conflict.columns),
            "cs_stamp": str(conflict.stamp),
            "crm_modified_at": record.modified_at.isoformat() if record.modified_at else None,
        },
        field=conflict.crm_field,
    )


def _database_failure(crm_id: str, message: str, row: Mapping[str, Any]) -> RecordFailure:
    """A row the database refused: the record is not stored; the row as it was offered."""
    return RecordFailure(crm_id, "database", message, False, {"row": dict(row)})


def _field_failure(crm_id: str, issue: FieldIssue) -> RecordFailure:
    """A field stored empty (or cut, or as a placeholder) on a stored record."""
    return RecordFailure(
        crm_id, issue.category, issue.message, False, issue.attrs(), field=issue.field
    )
