"""Which database errors are a row's fault (retried without the row) and which are not
(raised as before): one function decides, for raw driver and SQLAlchemy-wrapped errors."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from app.db.bulk import row_error_message

NUMERIC = psycopg.errors.NumericValueOutOfRange(
    "numeric field overflow\nDETAIL:  A field with precision 18, scale 2 must round to an "
    "absolute value less than 10^16.\nCONTEXT:  COPY crmsync_stage_opportunities_3, line 1"
)


def wrapped(cls: type[sa_exc.DBAPIError], orig: Exception) -> sa_exc.DBAPIError:
    return cls("INSERT ...", {}, orig)


@pytest.mark.parametrize(
    ("error", "row_fault"),
    [
        (NUMERIC, True),
        (psycopg.errors.StringDataRightTruncation("value too long"), True),
        (psycopg.errors.NotNullViolation("null value in column name"), True),
        (psycopg.errors.ForeignKeyViolation("violates foreign key"), True),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), True),
        (sqlite3.IntegrityError("NOT NULL constraint failed: accounts.name"), True),
        (sqlite3.DataError("string or blob too big"), True),
        (wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE")), True),
        (wrapped(sa_exc.DataError, psycopg.DataError("bad")), True),
        # not a row's fault: the pass fails as before
        (psycopg.OperationalError("server closed the connection unexpectedly"), False),
        (sqlite3.OperationalError("database is locked"), False),
        (psycopg.errors.CardinalityViolation("ON CONFLICT DO UPDATE ... a second time"), False),
        (wrapped(sa_exc.OperationalError, sqlite3.OperationalError("disk I/O error")), False),
        (sqlite3.ProgrammingError("Error binding parameter 1"), False),
        (ValueError("a bug"), False),
    ],
)
def test_row_errors_are_told_from_the_others(error: Exception, row_fault: bool) -> None:
    assert (row_error_message(error) is not None) is row_fault


def test_the_message_is_the_databases_without_the_staging_context() -> None:
    message = row_error_message(NUMERIC)
    assert message is not None
    assert message.startswith("numeric field overflow")
    assert "10^16" in message
    assert "crmsync_stage" not in message
