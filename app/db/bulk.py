"""Page upserts at the database driver, with SQLAlchemy's own types but not its per-row machinery.

A pull writes pages of 2,000 rows keyed on a CRM id. Through ``session.execute(insert, rows)``
SQLAlchemy rebuilds every row's parameters (defaults, bind processors, key checks) and, on
PostgreSQL, psycopg pipelines one ``INSERT`` per row; together that was about a third of a
backfill (see ``docs/benchmarks.md``). Here each (table, column set) gets a plan once: the SQL
text, the bind processor of each column (taken from SQLAlchemy's type for the dialect, so values
are stored exactly as the ORM stores them) and the table's Python-side insert defaults. Then:

* **SQLite**: one ``INSERT ... ON CONFLICT (id) DO UPDATE`` through ``sqlite3``'s
  ``executemany``;
* **PostgreSQL**: ``COPY`` into a temporary staging table (dropped at the end), then one
  ``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE``: the pattern bulk loaders use, and what
  psycopg's documentation recommends for loading many rows.

The ``UPDATE`` part sets only the columns the rows carry; columns filled from insert defaults
(``created_at``, empty JSON documents) are written on insert only, so an update never resets
them. Rows must carry the plan's columns and have unique ids (the engine merges a page by CRM id
first). The decision and its consequences: ``docs/adr/0002-page-writes-at-the-driver.md``.

:func:`upsert_isolating` wraps the upsert in a savepoint: when the database refuses a row (a
data or integrity error: a number or text that does not fit, a NOT NULL or foreign-key
violation), the savepoint is rolled back and the rows are bisected, each half in its own
savepoint, until the refused rows are found; they are returned and the others written, in the
page's transaction. The common case costs one ``SAVEPOINT`` and one ``RELEASE``. Which errors
are a row's fault is decided by :func:`row_error_message` alone; any other error (connection
lost, database locked) is raised as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from itertools import count
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any]

_stage_names = count(1)
_savepoint_names = count(1)


@cache
def _row_errors() -> tuple[type[BaseException], ...]:
    """Driver errors that a row's values cause: retried without that row. Everything else (an
    ``OperationalError``: connection lost, database locked; a ``ProgrammingError``: a bug) is
    not. psycopg is imported here, on the first failed write, rather than with the module: a
    command on SQLite (`crmsync health recompute`) does not load the PostgreSQL driver."""
    import psycopg

    return (sqlite3.DataError, sqlite3.IntegrityError, psycopg.DataError, psycopg.IntegrityError)


@dataclass(frozen=True)
class UpsertPlan:
    """What one (table, id column, column set) upsert needs, resolved once per dialect."""

    table: str
    table_sql: str  # the table name, quoted for the dialect
    columns: tuple[str, ...]  # row columns first, then insert-only default columns
    row_width: int  # how many of ``columns`` come from the rows
    processors: tuple[Processor | None, ...]
    defaults: tuple[Any, ...]  # SQLAlchemy ColumnDefault objects of the insert-only columns
    insert_sql: str  # SQLite: the VALUES upsert; PostgreSQL: the INSERT ... SELECT upsert
    stage_columns_sql: str  # quoted column list (PostgreSQL staging table)


def build_plan(
    dialect: Dialect,
    table: Table,
    id_column: str,
    row_columns: Sequence[str],
    *,
    new_rows: bool = False,
) -> UpsertPlan:
    """``new_rows``: the rows were absent when the page was read, so the update part only covers
    a row created concurrently since; it then leaves foreign-key columns alone. SQLite runs an
    upsert whose ``SET`` names a foreign-key column about three times slower per row, inserts
    included; the row created concurrently keeps its own links (missing ones are filled after
    the pass, see ``link_orphans``)."""
    quote = dialect.identifier_preparer.quote
    given = set(row_columns)
    insert_only = [
        c.name
        for c in table.columns
        if c.name not in given and not c.primary_key and c.default is not None
    ]
    columns = (*row_columns, *insert_only)
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    )
    defaults = tuple(table.c[name].default for name in insert_only)
    keep = {id_column, "id", "created_at"}
    if new_rows:
        keep |= {c.name for c in table.columns if c.foreign_keys}
    updatable = [c for c in row_columns if c not in keep]
    column_list = ", ".join(quote(c) for c in columns)
    conflict = f"ON CONFLICT ({quote(id_column)}) DO " + (
        "UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in updatable)
        if updatable
        else "NOTHING"
    )
    if dialect.name == "postgresql":
        # In key order: two transactions upserting the same rows (two webhook batches with the
        # same deals, a pull beside them) then take the rows' locks in the same order, and one
        # waits for the other instead of both deadlocking (rows staged in arrival order could
        # lock A then B in one and B then A in the other).
        source = f"SELECT {column_list} FROM {{stage}} ORDER BY {quote(id_column)}"
    else:
        source = f"VALUES ({', '.join('?' for _ in columns)})"
    insert_sql = f"INSERT INTO {quote(table.name)} ({column_list}) {source} {conflict}"
    return UpsertPlan(
        table=table.name,
        table_sql=quote(table.name),
        columns=columns,
        row_width=len(row_columns),
        processors=processors,
        defaults=defaults,
        insert_sql=insert_sql,
        stage_columns_sql=column_list,
    )


def default_value(default: Any) -> Any:
    """A fresh value of a column's Python-side default (``ColumnDefault``): its scalar, or its
    callable (``utcnow``, ``dict``) called, as SQLAlchemy would on an insert."""
    arg = getattr(default, "arg", None)
    return arg(None) if callable(arg) else arg


@cache
def required_columns(table: Table) -> frozenset[str]:
    """Columns that must have a value on insert: NOT NULL without a default or a key."""
    return frozenset(
        c.name
        for c in table.columns
        if not c.nullable and c.default is None and c.server_default is None and not c.primary_key
    )


def insert_defaults(table: Table) -> dict[str, Any]:
    """Fresh values of the table's insert defaults (``[]``, ``{}``, ``False``, now)."""
    return {
        column.name: default_value(column.default)
        for column in table.columns
        if column.default is not None and not column.primary_key
    }


def uniform(
    table: Table, pending: Sequence[tuple[Mapping[str, Any] | None, dict[str, Any]]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """One column set for every row of a group: one statement per group, not per row.

    ``pending`` pairs each row to write with the stored row it updates (None: a new row). A
    column some rows set and others do not is filled in (in place) with the row's current value
    (updates) or the table's insert default (creates), so the upsert writes it back as it is.
    Columns no row sets are left out: the insert takes the table's defaults and the update does
    not touch them. NOT NULL columns are always included, because both databases check them on
    the proposed insert row before resolving the conflict.
    """
    if not pending:
        return [], []
    columns: set[str] = set(required_columns(table))
    for _current, row in pending:
        columns.update(row)
    ordered = sorted(columns)
    defaults: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    for current, row in pending:
        if len(row) != len(ordered):
            if current is None and defaults is None:
                defaults = insert_defaults(table)
            source = current if current is not None else (defaults or {})
            for column in ordered:
                if column not in row:
                    row[column] = source.get(column)
        rows.append(row)
    return ordered, rows


def _fresh_defaults(plan: UpsertPlan) -> list[Any]:
    """One value per insert-only column for this call (callables evaluated once, like now())."""
    return [default_value(default) for default in plan.defaults]


def _encoded_columns(plan: UpsertPlan, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Column-major driver values: each column's bind processor mapped over it in one pass."""
    out: list[list[Any]] = []
    names = plan.columns[: plan.row_width]
    size = len(rows)
    for name, processor in zip(names, plan.processors, strict=False):
        values = [row[name] for row in rows]
        if processor is None:
            out.append(values)
        elif all(value is values[0] for value in values):
            # One object for the whole page (``updated_at``): encode it once. Identity, not
            # equality: Decimal("1.0") == Decimal("1.00") but they are stored differently.
            out.append([processor(values[0])] * size)
        else:
            out.append(list(map(processor, values)))
    for value, processor in zip(
        _fresh_defaults(plan), plan.processors[plan.row_width :], strict=True
    ):
        encoded = processor(value) if processor is not None else value
        out.append([encoded] * size)
    return out


def upsert_rows(
    connection: Connection, plan: UpsertPlan, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Write ``rows`` (each carrying the plan's row columns) in the connection's transaction."""
    if not rows:
        return
    records = list(zip(*_encoded_columns(plan, rows), strict=True))
    driver = connection.connection.driver_connection
    assert driver is not None
    if connection.dialect.name == "postgresql":
        _copy_upsert(driver, plan, records)
    else:
        cursor = driver.cursor()
        try:
            cursor.executemany(plan.insert_sql, records)
        finally:
            cursor.close()


def _copy_upsert(driver: Any, plan: UpsertPlan, records: list[tuple[Any, ...]]) -> None:
    # Unique per call (a page may upsert twice); plain identifier characters, no quoting needed.
    stage = f"crmsync_stage_{plan.table}_{next(_stage_names)}"
    with driver.cursor() as cursor:
        # Column types only (no constraints, no defaults): the target table checks them on insert.
        cursor.execute(
            f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {plan.stage_columns_sql} FROM {plan.table_sql} WITH NO DATA"
        )
        with cursor.copy(f"COPY {stage} ({plan.stage_columns_sql}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(record)
        cursor.execute(plan.insert_sql.format(stage=stage))
        cursor.execute(f"DROP TABLE {stage}")


def row_error_message(exc: BaseException) -> str | None:
    """The database's message if ``exc`` is a row's fault (a data or integrity error, raw from
    the driver or wrapped by SQLAlchemy), else None: the one place that classifies write errors.

    PostgreSQL's ``CONTEXT`` lines (which name the staging table) are left out."""
    if isinstance(exc, sa_exc.DBAPIError):
        if not isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError):
            return None
        exc = exc.orig if exc.orig is not None else exc
    elif not isinstance(exc, _row_errors()):
        return None
    lines = [line for line in str(exc).splitlines() if not line.startswith("CONTEXT:")]
    return "\n".join(lines).strip() or type(exc).__name__


def upsert_isolating(
    connection: Connection, plan: UpsertPlan, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[int, str]]:
    """:func:`upsert_rows`, leaving out rows the database refuses: returns (index, message)
    of each of them; the other rows are written. Non-row errors are raised."""
    if not rows:
        return []
    try:
        _in_savepoint(connection, partial(upsert_rows, connection, plan, rows))
    except Exception as exc:
        message = row_error_message(exc)
        if message is None:
            raise
        return _bisect(connection, plan, rows, list(range(len(rows))), message)
    return []


def _bisect(
    connection: Connection,
    plan: UpsertPlan,
    rows: Sequence[Mapping[str, Any]],
    indexes: list[int],
    message: str,
) -> list[tuple[int, str]]:
    """``indexes`` failed together with ``message``: find which of them fail on their own."""
    if len(indexes) == 1:
        return [(indexes[0], message)]
    middle = len(indexes) // 2
    rejected: list[tuple[int, str]] = []
    for half in (indexes[:middle], indexes[middle:]):
        subset = [rows[i] for i in half]
        try:
            _in_savepoint(connection, partial(upsert_rows, connection, plan, subset))
        except Exception as exc:
            found = row_error_message(exc)
            if found is None:
                raise
            rejected.extend(_bisect(connection, plan, rows, half, found))
    return rejected


def _in_savepoint(connection: Connection, work: Callable[[], None]) -> None:
    """Run ``work`` in a savepoint of the connection's transaction; roll it back when ``work``
    fails with a row error (then the transaction goes on), re-raise in every case.

    Issued on the driver connection, as the upsert is. pysqlite opens its transaction only
    before a data-changing statement, and a ``SAVEPOINT`` outside a transaction would become
    the transaction (its ``RELEASE`` would commit the page early): so a ``BEGIN`` comes first."""
    driver = connection.connection.driver_connection
    assert driver is not None
    name = f"crmsync_rows_{next(_savepoint_names)}"
    cursor = driver.cursor()
    try:
        if connection.dialect.name == "sqlite" and not driver.in_transaction:
            cursor.execute("BEGIN")
        cursor.execute(f"SAVEPOINT {name}")
        try:
            work()
        except Exception as exc:
            if row_error_message(exc) is not None:
                cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
                cursor.execute(f"RELEASE SAVEPOINT {name}")
            raise
        cursor.execute(f"RELEASE SAVEPOINT {name}")
    finally:
        cursor.close()
