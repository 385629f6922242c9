"""SQLite connection set-up (app/db/engine.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from app.db.engine import SqliteTooOldError, _sqlite_pragmas


class _NoJsonCursor:
    """A cursor of an SQLite built without JSON functions."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        if "json_each" in sql:
            raise sqlite3.OperationalError("no such table: json_each")
        self.statements.append(sql)

    def close(self) -> None:
        pass


class _Connection:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def cursor(self) -> Any:
        return self._cursor


def test_an_sqlite_without_json_functions_is_refused_with_the_requirement() -> None:
    with pytest.raises(SqliteTooOldError, match=r"SQLite 3\.38 or later"):
        _sqlite_pragmas(_Connection(_NoJsonCursor()), None)


def test_a_current_sqlite_gets_the_pragmas() -> None:
    conn = sqlite3.connect(":memory:")
    _sqlite_pragmas(conn, None)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (30000,)
    conn.close()
