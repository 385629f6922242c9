"""The SQL implementation of the engine's storage ports (:mod:`app.sync.ports`).

Writes are set-based so a page costs a handful of statements whatever its size: one ``SELECT``
for existing rows, one per parent table to resolve links, one for the ledger entries of the
mapping's two-way fields (only when the mapping has some and the page updates rows), one upsert
for the page (:mod:`app.db.bulk`: ``executemany`` on SQLite, ``COPY`` + ``INSERT ... SELECT`` on
PostgreSQL), one ledger upsert when entries changed, one ``UPDATE`` for deletes. Id lists go to
PostgreSQL as one array parameter (``= ANY(...)``) and to SQLite as one JSON array
(``IN (SELECT value FROM json_each(?))``), rather than thousands of ``IN`` parameters.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from app.core.runs import RunStatus
from app.db import bulk, cursors, leases, runs
from app.db.base import Base, utcnow
from app.sync.cursor import CursorState
from app.sync.holder import is_provably_dead
from app.sync.ports import (
    Counts,
    LeaseHeldError,
    LedgerKey,
    PendingRow,
    RecordFailure,
    RejectedRow,
)

# The push ledger's entry (with the mapping specs and converters its module loads) is needed by
# the ledger lookup only, not by the runs and leases a recompute takes through this store.
if TYPE_CHECKING:
    from app.mappers.ledger import LedgerEntry

# Ids per lookup statement: keeps one statement's work bounded whatever the page size.
IN_CHUNK = 5000


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


PlanKey = tuple[str, str, tuple[str, ...], bool]


@cache
def _lookup(table: str, id_column: str, kind: str, postgres: bool) -> Executable:
    """Statements keyed on a list of CRM ids, built once, the ids bound at execution (``ids``).

    The list travels as one parameter (PostgreSQL ``= ANY(array)``, SQLite ``IN (SELECT value
    FROM json_each(?))``): one statement text whatever the list, instead of thousands of ``IN``
    parameters compiled, prepared and cached anew. Built once rather than per page: a statement
    holding its bound list sits in a reference cycle, and with the pull's relaxed GC those lists
    (and the CRM id strings in them) outlived their page, so a long backfill's RSS crept up.
    """
    t = _table(table)
    column = t.c[id_column]
    if postgres:
        match: ColumnElement[bool] = column == any_(bindparam("ids", type_=ARRAY(column.type)))
    else:
        each = func.json_each(bindparam("ids", type_=String)).table_valued("value")
        match = column.in_(select(each.c.value))
    if kind == "rows":
        return select(t).where(match)
    if kind == "pks":
        return select(column, t.c.id).where(match)
    if kind == "soft_delete":
        return (
            update(t)
            .where(match, t.c.deleted_at.is_(None))
            .values(
                deleted_at=bindparam("at", type_=t.c.deleted_at.type),
                updated_at=bindparam("now", type_=t.c.updated_at.type),
            )
        )
    raise ValueError(f"unknown lookup {kind!r}")


@cache
def _ledger_lookup(postgres: bool, fields: tuple[str, ...]) -> Executable:
    """The ledger entries of a list of records (``ids``, bound as in :func:`_lookup`)."""
    t = _table("push_ledger")
    if postgres:
        match: ColumnElement[bool] = t.c.record_id == any_(
            bindparam("ids", type_=ARRAY(t.c.record_id.type))
        )
    else:
        each = func.json_each(bindparam("ids", type_=String)).table_valued("value")
        match = t.c.record_id.in_(select(each.c.value))
    return select(t.c.record_id, t.c.field, t.c.value_hash, t.c.crm_hash, t.c.value).where(
        t.c.crm == bindparam("crm"),
        t.c.object == bindparam("object"),
        t.c.field.in_(fields),
        match,
    )


@cache
def _ledger_upsert(postgres: bool) -> Executable:
    """Insert a ledger entry, or update it on (crm, object, record_id, field)."""
    t = _table("push_ledger")
    insert = postgresql.insert(t) if postgres else sqlite.insert(t)
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[t.c.crm, t.c.object, t.c.record_id, t.c.field],
        set_={
            "value_hash": excluded.value_hash,
            "crm_hash": excluded.crm_hash,
            "value": excluded.value,
            "run_id": excluded.run_id,
            "pushed_at": case(
                (t.c.value_hash == excluded.value_hash, t.c.pushed_at),
                else_=excluded.pushed_at,
            ),
        },
    )


class SqlPageWriter:
    """One page transaction on an open session."""

    def __init__(self, session: Session, plans: dict[PlanKey, bulk.UpsertPlan]) -> None:
        self.session = session
        self.plans = plans
        self._postgres = session.get_bind().dialect.name == "postgresql"

    def _ids_param(self, ids: list[str]) -> dict[str, Any]:
        return {"ids": ids if self._postgres else json.dumps(ids)}

    def existing(self, table: str, id_column: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        stmt = _lookup(table, id_column, "rows", self._postgres)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), IN_CHUNK):
            chunk = list(ids[start : start + IN_CHUNK])
            for row in self.session.execute(stmt, self._ids_param(chunk)):
                data = dict(row._mapping)
                found[str(data[id_column])] = data
        return found

    def claim_rows(self, table: str, id_column: str, claims: Mapping[str, str]) -> int:
        t = _table(table)
        held = set(self.resolve_ids(table, id_column, list(claims)))
        wanted = {crm_id: ext for crm_id, ext in claims.items() if crm_id not in held}
        if not wanted:
            return 0
        by_external = {ext: crm_id for crm_id, ext in wanted.items()}
        pks: dict[str, int] = {}
        externals = list(by_external)
        for start in range(0, len(externals), IN_CHUNK):
            chunk = externals[start : start + IN_CHUNK]
            rows = self.session.execute(
                select(t.c.crmsync_id, t.c.id).where(
                    t.c.crmsync_id.in_(chunk), t.c[id_column].is_(None)
                )
            )
            for external, pk in rows:
                pks[str(external)] = int(pk)
        if not pks:
            return 0
        self.session.execute(
            update(t)
            .where(t.c.id == bindparam("pk"))
            .values({id_column: bindparam("crm_id")})
            .execution_options(synchronize_session=False),
            [{"pk": pk, "crm_id": by_external[ext]} for ext, pk in pks.items()],
        )
        return len(pks)

    def resolve_ids(self, table: str, id_column: str, crm_ids: Sequence[str]) -> dict[str, int]:
        stmt = _lookup(table, id_column, "pks", self._postgres)
        found: dict[str, int] = {}
        unique = list(dict.fromkeys(crm_ids))
        for start in range(0, len(unique), IN_CHUNK):
            chunk = unique[start : start + IN_CHUNK]
            for crm_id, pk in self.session.execute(stmt, self._ids_param(chunk)):
                found[str(crm_id)] = int(pk)
        return found

    def upsert(
        self,
        table: str,
        id_column: str,
        rows: Sequence[PendingRow],
        *,
        new_rows: bool = False,
    ) -> list[RejectedRow]:
        if not rows:
            return []
        columns, padded = bulk.uniform(_table(table), rows)
        connection = self.session.connection()
        key = (table, id_column, tuple(columns), new_rows)
        plan = self.plans.get(key)
        if plan is None:
            plan = bulk.build_plan(
                connection.dialect, _table(table), id_column, key[2], new_rows=new_rows
            )
            self.plans[key] = plan
        rejected = bulk.upsert_isolating(connection, plan, padded)
        return [RejectedRow(index, message) for index, message in rejected]

    def soft_delete(self, table: str, id_column: str, ids: Sequence[str], at: datetime) -> int:
        stmt = _lookup(table, id_column, "soft_delete", self._postgres)
        total = 0
        for start in range(0, len(ids), IN_CHUNK):
            chunk = list(ids[start : start + IN_CHUNK])
            params = {**self._ids_param(chunk), "at": at, "now": utcnow()}
            result = self.session.execute(stmt, params)
            total += int(getattr(result, "rowcount", 0) or 0)
        return total

    def ledger_entries(
        self, crm: str, object_name: str, record_ids: Sequence[str], fields: Sequence[str]
    ) -> dict[LedgerKey, LedgerEntry]:
        from app.mappers.ledger import LedgerEntry

        found: dict[LedgerKey, LedgerEntry] = {}
        if not record_ids or not fields:
            return found
        stmt = _ledger_lookup(self._postgres, tuple(sorted(set(fields))))
        for start in range(0, len(record_ids), IN_CHUNK):
            chunk = list(record_ids[start : start + IN_CHUNK])
            params = {**self._ids_param(chunk), "crm": crm, "object": object_name}
            for record_id, field, value_hash, crm_hash, value in self.session.execute(stmt, params):
                found[(record_id, field)] = LedgerEntry(value_hash, crm_hash, value)
        return found

    def write_ledger(
        self,
        crm: str,
        object_name: str,
        entries: Mapping[LedgerKey, LedgerEntry],
        run_id: int | None,
    ) -> None:
        now = utcnow()
        rows = [
            {
                "crm": crm,
                "object": object_name,
                "record_id": record_id,
                "field": field,
                "value_hash": entry.value_hash,
                "crm_hash": entry.crm_hash,
                "value": runs.storable_payload(entry.value),
                "run_id": run_id,
                "pushed_at": now,
            }
            for (record_id, field), entry in entries.items()
            if entry.value_hash is not None
        ]
        if rows:
            self.session.execute(_ledger_upsert(self._postgres), rows)

    def record_failures(
        self, run_id: int, crm: str, object_name: str, failures: Sequence[RecordFailure]
    ) -> None:
        runs.record_errors(
            self.session,
            run_id,
            [
                runs.NewSyncError(
                    crm=crm,
                    object=object_name,
                    record_id=f.record_id,
                    category=f.category,
                    message=f.message,
                    retriable=f.retriable,
                    payload=dict(f.payload) if f.payload is not None else None,
                    field=f.field,
                )
                for f in failures
            ],
        )

    def resolve_failures(
        self,
        crm: str,
        object_name: str,
        record_ids: Sequence[str],
        *,
        keep: Collection[tuple[str, str]] = (),
    ) -> None:
        if keep:
            runs.resolve_errors_except(
                self.session, crm, object_name, list(record_ids), keep, "synced"
            )
        else:
            runs.resolve_errors(self.session, crm, object_name, list(record_ids), "synced")

    def save_cursor(self, crm: str, object_name: str, stream: str, cursor: CursorState) -> None:
        cursors.save_cursor(self.session, crm, object_name, stream, cursor)

    def update_run(self, run_id: int, counts: Counts) -> None:
        runs.update_run_progress(self.session, run_id, counts)

    def renew_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        return leases.renew(self.session, name, holder, utcnow(), ttl)


class SqlSyncStore:
    """Cursors, runs and page transactions over a session factory."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self._plans: dict[PlanKey, bulk.UpsertPlan] = {}

    def load_cursor(self, crm: str, object_name: str, stream: str) -> CursorState:
        with self.session_factory() as session:
            return cursors.load_cursor(session, crm, object_name, stream)

    def start_run(
        self,
        *,
        kind: str,
        crm: str,
        object_name: str,
        triggered_by: str,
        params: Mapping[str, Any],
        cursor_from: Mapping[str, Any] | None,
    ) -> int:
        with self.session_factory() as session:
            run = runs.start_run(
                session,
                kind=kind,
                crm=crm,
                object_name=object_name,
                triggered_by=triggered_by,
                params=dict(params),
                cursor_from=dict(cursor_from) if cursor_from is not None else None,
            )
            return run.id

    def finish_run(
        self,
        run_id: int,
        counts: Counts,
        *,
        status: str,
        cursor_to: Mapping[str, Any] | None,
        error: str | None,
    ) -> None:
        with self.session_factory() as session:
            runs.finish_run(
                session,
                run_id,
                counts,
                status=RunStatus(status),
                cursor_to=dict(cursor_to) if cursor_to is not None else None,
                error=error,
            )

    def claim_run(
        self, run_id: int, *, params: Mapping[str, Any], cursor_from: Mapping[str, Any] | None
    ) -> bool:
        with self.session_factory() as session:
            return runs.claim_queued_run(
                session,
                run_id,
                params=dict(params),
                cursor_from=dict(cursor_from) if cursor_from is not None else None,
            )

    def cancel_requested(self, run_id: int) -> bool:
        with self.session_factory() as session:
            return runs.cancel_requested(session, run_id)

    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> str | None:
        with self.session_factory() as session:
            try:
                acquired = leases.acquire(
                    session, name, holder, utcnow(), ttl, is_dead=is_provably_dead
                )
            except leases.LeaseHeld as exc:
                raise LeaseHeldError(str(exc)) from None
        return acquired.previous

    def heartbeat(self, name: str, holder: str, ttl: timedelta, run_id: int | None) -> bool:
        with self.session_factory() as session:
            held = leases.renew(session, name, holder, utcnow(), ttl)
            session.commit()
            if run_id is not None and held:
                runs.beat_run(session, run_id)
                session.commit()
        return held

    def release_lease(self, name: str, holder: str) -> None:
        with self.session_factory() as session:
            leases.release(session, name, holder)

    def close_abandoned_runs(
        self, crm: str, object_name: str, kinds: Sequence[str], error: str
    ) -> int:
        with self.session_factory() as session:
            return runs.close_abandoned_runs(session, crm, object_name, list(kinds), error)

    @contextmanager
    def page(self) -> Iterator[SqlPageWriter]:
        with self.session_factory() as session, session.begin():
            yield SqlPageWriter(session, self._plans)

    def has_open_failures(self, crm: str, object_name: str) -> bool:
        with self.session_factory() as session:
            return runs.has_open_errors(session, crm, object_name)

    def has_pending_creates(self, table: str, id_column: str) -> bool:
        t = _table(table)
        if "crmsync_id" not in t.c:
            return False
        stmt = (
            select(t.c.id)
            .where(t.c.crmsync_id.is_not(None), t.c[id_column].is_(None), t.c.deleted_at.is_(None))
            .limit(1)
        )
        with self.session_factory() as session:
            return session.execute(stmt).first() is not None

    def required_columns(self, table: str) -> frozenset[str]:
        return bulk.required_columns(_table(table))

    def link_orphans(
        self, table: str, link_column: str, ref_column: str, target_table: str, target_id: str
    ) -> int:
        return self.link_orphans_many([(table, link_column, ref_column, target_table, target_id)])

    def link_orphans_many(self, links: Sequence[tuple[str, str, str, str, str]]) -> int:
        """:meth:`link_orphans` for several links (table, link column, ref column, target
        table, target id column) in one transaction: the webhook worker links what a batch
        stored once, not after each page."""
        linked = 0
        with self.session_factory() as session, session.begin():
            for table, link_column, ref_column, target_table, target_id in links:
                child, parent = _table(table), _table(target_table)
                match = and_(parent.c[target_id] == child.c[ref_column])
                stmt = (
                    update(child)
                    .where(
                        child.c[link_column].is_(None),
                        child.c[ref_column].is_not(None),
                        exists(select(parent.c.id).where(match)),
                    )
                    .values({link_column: select(parent.c.id).where(match).scalar_subquery()})
                )
                result = session.execute(stmt)
                linked += int(getattr(result, "rowcount", 0) or 0)
        return linked
