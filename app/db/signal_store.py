"""Storing signal rows (issue #18 item 1): one path for the API and the CSV import.

:func:`ingest` validates a batch (:func:`app.domain.signal_rows.validate_rows`), resolves the
account each row names (CS id, Salesforce id, HubSpot id or domain: one ``SELECT`` per way of
naming), and writes the good rows with **one statement per batch**: ``executemany`` of an
``INSERT ... ON CONFLICT DO UPDATE`` on SQLite, ``COPY`` into a staging table and one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` on PostgreSQL. The conflict target is the row's
idempotency key: ``(account_id, observed_on)`` for usage, ``(source, external_id)`` for the
others (the sender's id, or one derived from the natural key), so a row sent twice is stored
once and a changed resend updates it. Two rows of one batch with the same key are one row (the
later wins).

In the same transaction every account that received a row gets ``signals_changed_at`` = now,
which makes the next recompute select it (``app.db.health_store.due_condition``). After the
commit the stamp is set once more: a recompute that read the account between the first stamp
and the commit (and so did not see the rows) recorded a ``health_computed_at`` older than the
second stamp, and selects the account again. A kill between the two loses nothing: the first
stamp is committed with the rows.

Stamps are written with plain SQL so that ``accounts.updated_at`` (which says the account itself
changed) does not move.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import count
from typing import Any

from sqlalchemy import Connection, bindparam, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import Base
from app.db.models import Account, Contact
from app.db.types import UTCDateTime
from app.domain.signal_rows import (
    DEFAULT_SOURCES,
    MAX_BATCH,
    RowError,
    SignalRow,
    derived_external_id,
    validate_rows,
)

_stages = count(1)
_IN_CHUNK = 5_000  # ids per IN list (SQLite allows 32,766 variables; PostgreSQL 65,535)

#: Per kind: the columns written besides ``account_id``, the keys and the stamps.
_VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "usage": (
        "observed_on",
        "active_users_30d",
        "licensed_seats",
        "logins_30d",
        "key_features_used_30d",
        "key_features_defined",
        "last_login_at",
    ),
    "tickets": ("opened_at", "closed_at", "priority", "escalated", "first_contact_resolved"),
    "nps": ("contact_id", "contact_email", "respondent_role", "score", "responded_on", "comment"),
    "surveys": (
        "kind",
        "topic",
        "score",
        "scale_min",
        "scale_max",
        "responded_on",
        "contact_email",
    ),
    "touchpoints": (
        "contact_id",
        "contact_email",
        "kind",
        "direction",
        "occurred_at",
        "two_way",
        "scheduled",
    ),
    "invoices": ("amount", "currency", "due_on", "paid_on"),
    "success_criteria": ("text", "status", "assessed_on"),
}
_TABLES: dict[str, str] = {
    "usage": "usage_snapshots",
    "tickets": "support_tickets",
    "nps": "nps_responses",
    "surveys": "survey_responses",
    "touchpoints": "touchpoints",
    "invoices": "invoices",
    "success_criteria": "success_criteria",
}
_WITH_CONTACT = frozenset({"nps", "touchpoints"})
_TIMESTAMPED = frozenset({"success_criteria"})  # created_at / updated_at (TimestampMixin)


@dataclass
class IngestResult:
    """What one batch did: which rows (by index) were stored, which were refused and why."""

    kind: str
    received: int
    stored: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    created: int = 0  # rows that were not stored before
    updated: int = 0  # rows already stored (the same key): their values replaced
    accounts: int = 0  # accounts whose signals_changed_at moved

    @property
    def rejected(self) -> list[int]:
        return sorted({e.index for e in self.errors})

    def as_dict(self) -> dict[str, Any]:
        """The API's answer (docs/signals.md): counts, the stored rows as index ranges, and
        one error per bad field."""
        return {
            "kind": self.kind,
            "received": self.received,
            "stored": len(self.stored),
            "created": self.created,
            "updated": self.updated,
            "rejected": len(self.rejected),
            "accounts": self.accounts,
            "stored_rows": index_ranges(self.stored),
            "rejected_rows": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
        }


def index_ranges(indexes: Iterable[int]) -> list[list[int]]:
    """``[0, 1, 2, 5, 7, 8]`` -> ``[[0, 2], [5, 5], [7, 8]]`` (inclusive)."""
    out: list[list[int]] = []
    for i in sorted(indexes):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


class BatchTooLargeError(ValueError):
    """More rows than :data:`MAX_BATCH` in one batch."""


def ingest(
    factory: sessionmaker[Session],
    kind: str,
    raw_rows: Sequence[Any],
    *,
    lines: Sequence[int] | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Validate and store one batch of ``kind`` (at most :data:`MAX_BATCH` rows), committing
    the good rows; ``lines`` (CSV) numbers the rows for the errors."""
    if len(raw_rows) > MAX_BATCH:
        raise BatchTooLargeError(f"{len(raw_rows)} rows; a batch holds at most {MAX_BATCH:,}")
    result = IngestResult(kind, len(raw_rows))
    good, errors = validate_rows(kind, raw_rows)
    stamp = now or datetime.now(UTC)
    touched: list[int] = []
    if good:
        with factory() as session:
            conn = session.connection()
            resolved, unknown = resolve_accounts(conn, good)
            errors.extend(unknown)
            if resolved:
                result.created, result.updated = write_rows(conn, kind, resolved, stamp)
                touched = sorted({account_id for _i, _row, account_id in resolved})
                stamp_accounts(conn, touched, stamp)
                result.stored = [i for i, _row, _a in resolved]
            session.commit()
        if touched:
            with factory() as session:
                stamp_accounts(session.connection(), touched, datetime.now(UTC))
                session.commit()
    result.accounts = len(touched)
    if lines is not None:
        errors = [
            RowError(e.index, e.field, e.message, e.type, e.input, lines[e.index]) for e in errors
        ]
    result.errors = sorted(errors, key=lambda e: e.index)
    return result


# --------------------------------------------------------------------------------------------
# accounts
# --------------------------------------------------------------------------------------------


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]


def resolve_accounts(
    conn: Connection, rows: Sequence[tuple[int, SignalRow]]
) -> tuple[list[tuple[int, SignalRow, int]], list[RowError]]:
    """The CS account id of each row, or a row error naming the field that names no live
    account (or, for a domain, more than one)."""
    wanted: dict[str, set[Any]] = {}
    for _i, row in rows:
        ref = row.account_ref()
        assert ref is not None  # validate_rows checked it
        wanted.setdefault(ref[0], set()).add(ref[1])
    a = Account.__table__.c
    column = {"account_id": a.id, "sf_id": a.sf_id, "hs_id": a.hs_id, "domain": a.domain}
    found: dict[tuple[str, Any], list[int]] = {}
    for name, values in wanted.items():
        for part in _chunks(sorted(values)):
            stmt = select(column[name], a.id).where(
                column[name].in_(list(part)), a.deleted_at.is_(None)
            )
            for value, account_id in conn.execute(stmt):
                found.setdefault((name, value), []).append(account_id)
    out: list[tuple[int, SignalRow, int]] = []
    errors: list[RowError] = []
    for index, row in rows:
        ref = row.account_ref()
        assert ref is not None
        ids = found.get(ref)
        if not ids:
            errors.append(
                RowError(index, ref[0], "no such account", "unknown_account", str(ref[1]))
            )
        elif len(ids) > 1:
            errors.append(
                RowError(
                    index,
                    ref[0],
                    f"names {len(ids)} accounts (CS ids {', '.join(map(str, sorted(ids)))}); "
                    "name one by account_id, sf_id or hs_id",
                    "ambiguous_account",
                    str(ref[1]),
                )
            )
        else:
            out.append((index, row, ids[0]))
    return out, errors


def stamp_accounts(conn: Connection, account_ids: Sequence[int], at: datetime) -> None:
    """``signals_changed_at = at`` on these accounts (never moving ``updated_at``)."""
    stmt = text(
        "UPDATE accounts SET signals_changed_at = :at WHERE id IN :ids "
        "AND (signals_changed_at IS NULL OR signals_changed_at < :at)"
    ).bindparams(bindparam("at", type_=UTCDateTime()), bindparam("ids", expanding=True))
    for part in _chunks(list(account_ids)):
        conn.execute(stmt, {"at": at, "ids": list(part)})


# --------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------


def _contacts(conn: Connection, account_ids: Sequence[int]) -> dict[tuple[int, str], int]:
    """(account id, lower-case e-mail) -> contact id, for matching respondents."""
    k = Contact.__table__.c
    out: dict[tuple[int, str], int] = {}
    for part in _chunks(sorted(set(account_ids))):
        stmt = select(k.account_id, k.email, k.id).where(
            k.account_id.in_(list(part)), k.email.is_not(None), k.deleted_at.is_(None)
        )
        for account_id, email, contact_id in conn.execute(stmt):
            out.setdefault((account_id, str(email).strip().lower()), contact_id)
    return out


def _keyed(
    conn: Connection, kind: str, rows: Sequence[tuple[int, SignalRow, int]], at: datetime
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The table rows by idempotency key (a later row of the batch replaces an earlier one)."""
    contacts = _contacts(conn, [a for _i, _r, a in rows]) if kind in _WITH_CONTACT else {}
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _index, row, account_id in rows:
        values = row.columns()
        values["account_id"] = account_id
        values["received_at"] = at
        if kind in _WITH_CONTACT:
            email = values.get("contact_email")
            values["contact_id"] = None if email is None else contacts.get((account_id, email))
        if kind in _TIMESTAMPED:
            values["created_at"] = at
            values["updated_at"] = at
        if kind == "usage":
            key: tuple[Any, ...] = (account_id, row.natural_key()[0])
        else:
            source = getattr(row, "source", None) or DEFAULT_SOURCES[kind]
            external_id = getattr(row, "external_id", None) or derived_external_id(row, account_id)
            values["source"], values["external_id"] = source, external_id
            key = (source, external_id)
        out[key] = values
    return out


def _existing(conn: Connection, kind: str, keys: Iterable[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """Which of ``keys`` are stored already (for the created / updated counts)."""
    table = Base.metadata.tables[_TABLES[kind]]
    keys = list(keys)
    found: set[tuple[Any, ...]] = set()
    if kind == "usage":
        by_account: dict[int, set[Any]] = {}
        for account_id, day in keys:
            by_account.setdefault(account_id, set()).add(day)
        days = [d for ds in by_account.values() for d in ds]
        for part in _chunks(sorted(by_account)):
            stmt = select(table.c.account_id, table.c.observed_on).where(
                table.c.account_id.in_(list(part)),
                table.c.observed_on >= min(days),
                table.c.observed_on <= max(days),
            )
            found.update((a, d) for a, d in conn.execute(stmt) if d in by_account.get(a, ()))
        return found
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    for source, external_ids in by_source.items():  # the unique index leads with source
        for part in _chunks(sorted(external_ids)):
            stmt = select(table.c.external_id).where(
                table.c.source == source, table.c.external_id.in_(list(part))
            )
            found.update((source, e) for e in conn.scalars(stmt))
    return found


def write_rows(
    conn: Connection, kind: str, rows: Sequence[tuple[int, SignalRow, int]], at: datetime
) -> tuple[int, int]:
    """Upsert the rows of one batch in one statement; returns (created, updated)."""
    by_key = _keyed(conn, kind, rows, at)
    before = _existing(conn, kind, by_key)
    conflict: tuple[str, ...] = (
        ("account_id", "observed_on") if kind == "usage" else ("source", "external_id")
    )
    columns = ("account_id", *_VALUE_COLUMNS[kind], "received_at")
    if kind != "usage":
        columns = (*columns, "source", "external_id")
    if kind in _TIMESTAMPED:
        columns = (*columns, "created_at", "updated_at")
    _upsert(conn, _TABLES[kind], columns, list(by_key.values()), conflict)
    return len(by_key) - len(before), len(before)


@cache
def _processors(table_name: str, columns: tuple[str, ...], dialect: Dialect) -> tuple[Any, ...]:
    table = Base.metadata.tables[table_name]
    return tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)


def _upsert(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    conflict: tuple[str, ...],
) -> None:
    """``INSERT ... ON CONFLICT (conflict) DO UPDATE`` of every row, in one statement, through
    the driver with SQLAlchemy's bind processors (values stored exactly as the ORM would)."""
    if not rows:
        return
    processors = _processors(table, columns, conn.dialect)
    pairs = list(zip(columns, processors, strict=True))
    records = [tuple(p(r[c]) if p is not None else r[c] for c, p in pairs) for r in rows]
    keep = {*conflict, "created_at"}
    cols = ", ".join(columns)
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keep)
    on_conflict = f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {sets}"
    driver = conn.connection.driver_connection
    assert driver is not None
    if conn.dialect.name == "postgresql":
        stage = f"crmsync_signals_{table}_{next(_stages)}"
        with driver.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS "
                f"SELECT {cols} FROM {table} WITH NO DATA"
            )
            with cursor.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                for record in records:
                    copy.write_row(record)
            cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} {on_conflict}")
            cursor.execute(f"DROP TABLE {stage}")
        return
    marks = ", ".join("?" for _ in columns)
    cursor = driver.cursor()
    try:
        cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks}) {on_conflict}", records)
    finally:
        cursor.close()


__all__ = [
    "BatchTooLargeError",
    "IngestResult",
    "index_ranges",
    "ingest",
    "resolve_accounts",
    "stamp_accounts",
    "write_rows",
]
