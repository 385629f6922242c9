"""The SQL side of the push (:mod:`app.sync.push_ports`): changed rows, the ledger, CRM ids of
creates, push errors. The run bookkeeping is :class:`~app.db.sync_store.SqlSyncStore`'s.

Reads are keyset pages over the indexed ``cs_changed_at``; the ledger of a page is one query
(per few thousand ids); ledger writes are one ``INSERT ... ON CONFLICT DO UPDATE`` statement per
transaction, executed for all rows (SQLite and PostgreSQL both have it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.db import cursors, leases, runs
from app.db.base import Base, utcnow
from app.db.models import PushLedgerEntry, SyncErrorRecord
from app.db.sync_store import SqlSyncStore
from app.mappers.ledger import LedgerEntry
from app.mappers.push_plan import LedgerIndex
from app.sync.cursor import CursorState
from app.sync.ports import Counts, RecordFailure
from app.sync.push_ports import TARGETS_STREAM, LedgerWrite

#: Ids per ``IN`` list: bounded statements whatever the page size.
IN_CHUNK = 2_000

#: Parent CRM ids a create reads from its linked parents when the row's own copy is empty:
#: table -> column -> (parent table, link column, parent's column), first with a value wins.
#: A note written while its account had no id in a CRM keeps that column empty; once the
#: account is created there (by the same push, objects go parents first, or a later one) the
#: note's create finds the id through the link, instead of waiting for ever.
CREATE_PARENT_IDS: Mapping[str, Mapping[str, tuple[tuple[str, str, str], ...]]] = {
    "handover_notes": {
        # Salesforce ParentId: the opportunity when the note has one, else the account.
        "sf_parent_id": (
            ("opportunities", "opportunity_id", "sf_id"),
            ("accounts", "account_id", "sf_id"),
        ),
        "hs_deal_id": (("opportunities", "opportunity_id", "hs_id"),),
        "hs_company_id": (
            ("opportunities", "opportunity_id", "hs_company_id"),
            ("accounts", "account_id", "hs_id"),
        ),
    },
}


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _rows(session: Session, stmt: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in session.execute(stmt)]


def create_candidates(
    table: str,
    id_column: str,
    other_id_columns: Sequence[str],
    *,
    after_id: int,
    limit: int,
) -> Any:
    """The ``SELECT`` of :meth:`SqlPushStore.rows_to_create`: rows of ``table`` with no id in
    this CRM (nor, unless written on the CS side, in another one), changed on the CS side, by
    id. For accounts it is served by the partial index ``ix_accounts_no_crm_id`` (migration
    0012): the rows without any CRM id, not a walk through the other CRM's accounts."""
    t = _table(table)
    fills = CREATE_PARENT_IDS.get(table, {})
    joined: Any = t
    parents: dict[tuple[str, str], Any] = {}
    for sources in fills.values():
        for parent_table, link, _column in sources:
            if (parent_table, link) not in parents:
                alias = _table(parent_table).alias(f"p_{len(parents)}")
                parents[(parent_table, link)] = alias
                joined = joined.outerjoin(alias, alias.c.id == t.c[link])
    columns = [
        func.coalesce(
            t.c[name], *(parents[(p, link)].c[column] for p, link, column in sources)
        ).label(name)
        if name in fills
        else t.c[name]
        for name, sources in ((c.name, fills.get(c.name, ())) for c in t.c)
    ]
    # A row holding another CRM's id is that CRM's record, never created here; a row
    # written on the CS side (``origin`` cs: a note) belongs in every CRM its parent is in.
    others: list[ColumnElement[bool]] = [t.c[c].is_(None) for c in other_id_columns]
    if others and "origin" in t.c:
        others = [or_(and_(*others), t.c.origin == "cs")]
    return (
        select(*columns)
        .select_from(joined)
        .where(
            t.c[id_column].is_(None),
            *others,
            t.c.deleted_at.is_(None),
            t.c.cs_changed_at.is_not(None),
            t.c.id > after_id,
        )
        .order_by(t.c.id)
        .limit(limit)
    )


class SqlPushPageWriter:
    """One push transaction on an open session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def renew_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        return leases.renew(self.session, name, holder, utcnow(), ttl)

    def write_ledger(
        self, crm: str, object_name: str, rows: Sequence[LedgerWrite], run_id: int | None
    ) -> None:
        if not rows:
            return
        now = utcnow()
        # One row per (record, field): a later entry of the same key wins.
        unique = {(r.record_id, r.crm_field): r for r in rows}
        values = [
            {
                "crm": crm,
                "object": object_name,
                "record_id": r.record_id,
                "field": r.crm_field,
                "value_hash": r.value_hash,
                "crm_hash": r.crm_hash,
                "value": r.value,
                "pushed_at": now,
                "run_id": run_id,
            }
            for r in unique.values()
        ]
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(PushLedgerEntry)
        stmt = stmt.on_conflict_do_update(
            index_elements=["crm", "object", "record_id", "field"],
            set_={
                "value_hash": stmt.excluded.value_hash,
                "crm_hash": stmt.excluded.crm_hash,
                "value": stmt.excluded.value,
                "pushed_at": stmt.excluded.pushed_at,
                "run_id": stmt.excluded.run_id,
            },
        )
        self.session.execute(stmt, values)

    def store_crm_ids(
        self, table: str, id_column: str, crm_ids: Mapping[int, str]
    ) -> dict[int, str]:
        if not crm_ids:
            return {}
        t = _table(table)
        holders: dict[str, int] = {}
        wanted = list(crm_ids.values())
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            for crm_id, row_id in self.session.execute(
                select(t.c[id_column], t.c.id).where(t.c[id_column].in_(chunk))
            ):
                holders[str(crm_id)] = int(row_id)
        refused: dict[int, str] = {}
        todo: list[dict[str, Any]] = []
        for row_id, crm_id in crm_ids.items():
            holder = holders.get(crm_id)
            if holder is not None and holder != row_id:
                refused[row_id] = (
                    f"created as {id_column} {crm_id}, which row {holder} of {table} already "
                    "holds (pulled before this push stored it?): link or merge the two rows"
                )
                continue
            todo.append({"pk": row_id, "crm_id": crm_id})
        if todo:
            self.session.execute(
                update(t)
                .where(t.c.id == bindparam("pk"))
                .values({id_column: bindparam("crm_id")})
                .execution_options(synchronize_session=False),
                todo,
            )
        return refused

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
                    direction="push",
                    field=f.field,
                )
                for f in failures
            ],
        )

    def resolve_failures(self, crm: str, object_name: str, record_ids: Sequence[str]) -> None:
        ids = list(record_ids)
        for start in range(0, len(ids), IN_CHUNK):
            self.session.execute(
                update(SyncErrorRecord)
                .where(
                    SyncErrorRecord.crm == crm,
                    SyncErrorRecord.object == object_name,
                    SyncErrorRecord.direction == "push",
                    SyncErrorRecord.resolved_at.is_(None),
                    SyncErrorRecord.record_id.in_(ids[start : start + IN_CHUNK]),
                )
                .values(resolved_at=utcnow(), resolution="pushed")
            )

    def save_cursor(self, crm: str, object_name: str, stream: str, cursor: CursorState) -> None:
        cursors.save_cursor(self.session, crm, object_name, stream, cursor)

    def update_run(self, run_id: int, counts: Counts) -> None:
        runs.update_run_progress(self.session, run_id, counts)


class SqlPushStore(SqlSyncStore):
    """The pull's store plus the push's reads and writes."""

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
        t = _table(table)
        stamp = t.c.cs_changed_at
        conditions = [
            t.c[id_column].is_not(None),
            t.c.deleted_at.is_(None),
            stamp.is_not(None),
            stamp <= until,
        ]
        if after is not None:
            at, row_id = after
            conditions.append(or_(stamp > at, and_(stamp == at, t.c.id > row_id)))
        chosen = [t.c[c] for c in columns] if columns is not None else [t]
        stmt = select(*chosen).where(*conditions).order_by(stamp, t.c.id).limit(limit)
        with self.session_factory() as session:
            return _rows(session, stmt)

    def rows_to_create(
        self,
        table: str,
        id_column: str,
        other_id_columns: Sequence[str],
        *,
        after_id: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        stmt = create_candidates(table, id_column, other_id_columns, after_id=after_id, limit=limit)
        with self.session_factory() as session:
            return _rows(session, stmt)

    def rows_by_id(self, table: str, row_ids: Sequence[int]) -> list[dict[str, Any]]:
        t = _table(table)
        ids = list(row_ids)
        found: list[dict[str, Any]] = []
        with self.session_factory() as session:
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                found.extend(_rows(session, select(t).where(t.c.id.in_(chunk)).order_by(t.c.id)))
        return found

    def retry_row_ids(self, crm: str, object_name: str, max_attempts: int) -> list[int]:
        e = SyncErrorRecord
        stmt = select(e.payload).where(
            e.crm == crm,
            e.object == object_name,
            e.direction == "push",
            e.retriable.is_(True),
            e.resolved_at.is_(None),
            e.attempts < max_attempts,
        )
        ids: set[int] = set()
        with self.session_factory() as session:
            for (payload,) in session.execute(stmt):
                row_id = (payload or {}).get("row_id")
                if isinstance(row_id, int) and not isinstance(row_id, bool):
                    ids.add(row_id)
        return sorted(ids)

    def load_ledger(
        self, crm: str, object_name: str, record_ids: Sequence[str], *, values: bool = True
    ) -> LedgerIndex:
        index = LedgerIndex()
        ids = list(dict.fromkeys(record_ids))
        if not ids:
            return index
        ledger = PushLedgerEntry.__table__
        columns = (
            ledger.c.record_id,
            ledger.c.field,
            ledger.c.value_hash,
            ledger.c.crm_hash,
            ledger.c.value if values else null().label("value"),
        )
        with self.session_factory() as session:
            for start in range(0, len(ids), IN_CHUNK):
                stmt = select(*columns).where(
                    ledger.c.crm == crm,
                    ledger.c.object == object_name,
                    ledger.c.record_id.in_(ids[start : start + IN_CHUNK]),
                )
                for record_id, field_name, value_hash, crm_hash, value in session.execute(stmt):
                    index.add(record_id, field_name, LedgerEntry(value_hash, crm_hash, value))
        return index

    def target_checks(
        self, crm: str, object_names: Sequence[str]
    ) -> dict[str, tuple[str, datetime]]:
        found: dict[str, tuple[str, datetime]] = {}
        with self.session_factory() as session:
            for name in object_names:
                state = cursors.load_cursor(session, crm, name, TARGETS_STREAM)
                if state.at is not None and state.id is not None:
                    found[name] = (state.id, state.at)
        return found

    def save_target_checks(self, crm: str, keys: Mapping[str, str], at: datetime) -> None:
        with self.session_factory() as session, session.begin():
            for name, key in keys.items():
                cursors.save_cursor(session, crm, name, TARGETS_STREAM, CursorState(at, key))

    def assign_crmsync_ids(self, table: str, row_ids: Sequence[int]) -> dict[int, str]:
        t = _table(table)
        ids = list(dict.fromkeys(int(i) for i in row_ids))
        if not ids:
            return {}
        assigned: dict[int, str] = {}
        with self.session_factory() as session, session.begin():
            session.execute(
                update(t)
                .where(t.c.id == bindparam("pk"), t.c.crmsync_id.is_(None))
                .values(crmsync_id=bindparam("new_id"))
                .execution_options(synchronize_session=False),
                [{"pk": i, "new_id": str(uuid.uuid4())} for i in ids],
            )
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                for row_id, crmsync_id in session.execute(
                    select(t.c.id, t.c.crmsync_id).where(t.c.id.in_(chunk))
                ):
                    assigned[int(row_id)] = str(crmsync_id)
        return assigned

    @contextmanager
    def push_page(self) -> Iterator[SqlPushPageWriter]:
        with self.session_factory() as session, session.begin():
            yield SqlPushPageWriter(session)
