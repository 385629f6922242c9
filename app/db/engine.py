"""Engine and session factory for SQLite (embedded default) and PostgreSQL (production).

SQLite gets a check that its JSON functions exist (page lookups bind id lists as JSON arrays)
and the pragmas a concurrent service needs: foreign keys on (off by default in SQLite),
WAL so readers do not block the writer, and a busy timeout instead of instant ``database is
locked`` errors. PostgreSQL gets a pre-ping pool so a restarted server does not fail requests.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def _ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a file-backed SQLite database (``./var`` on a fresh clone)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


class SqliteTooOldError(RuntimeError):
    """The linked SQLite lacks the JSON functions crmsync's id lookups use (``json_each``)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT count(*) FROM json_each('[]')")
    except Exception as exc:  # sqlite3.OperationalError: no such table: json_each
        raise SqliteTooOldError(
            f"this Python's SQLite ({sqlite3.sqlite_version}) has no JSON functions; crmsync "
            "needs SQLite 3.38 or later (or one built with JSON1), or use PostgreSQL"
        ) from exc
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine for ``url`` with the per-dialect settings described above."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
