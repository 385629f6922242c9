"""Engine and session factory for SQLite (embedded default) and PostgreSQL (production).

SQLite gets a check that its JSON functions exist (page lookups bind id lists as JSON arrays)
and the pragmas a concurrent service needs: foreign keys on (off by default in SQLite),
WAL so readers do not block the writer, and a busy timeout instead of instant ``database is
locked`` errors. PostgreSQL gets a pre-ping pool so a restarted server does not fail requests.

:func:`check_connection` turns a failed first connection into a
:class:`~app.errors.DatabaseConfigError` that names the cause and the setting to fix; a SQLite
file whose folder does not exist is refused rather than created (except the default ``./var``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import DatabaseConfigError

# The folder of the default database (``sqlite:///./var/crmsync.db``), relative to the working
# directory: created on a fresh clone. Any other missing folder is a typo, not a wish.
DEFAULT_SQLITE_DIR = Path("var")

# libpq reports connect-time failures (no such database, role, refused) without a SQLSTATE, so
# the message quotes the driver's first line, which names the problem, and gives one advice.
CONNECT_ADVICE = (
    "fix CRMSYNC_DATABASE_URL (host, port, user, password, database name) or start the server"
)


def _sqlite_folder(url: str | URL) -> Path | None:
    """The folder of a file-backed SQLite database, None for PostgreSQL or ``:memory:``."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).expanduser().resolve().parent


def _ensure_sqlite_dir(url: str) -> None:
    """Create ``./var`` for the default database; any other folder must already exist."""
    folder = _sqlite_folder(url)
    if folder is not None and folder == DEFAULT_SQLITE_DIR.resolve():
        folder.mkdir(parents=True, exist_ok=True)


def _check_sqlite_folder(url: str | URL) -> None:
    folder = _sqlite_folder(url)
    if folder is not None and not folder.is_dir():
        raise DatabaseConfigError(
            f"CRMSYNC_DATABASE_URL names a SQLite file in {folder}, which does not exist: "
            "create the folder or fix the path (crmsync does not create a new empty database "
            "in a folder that is not there)"
        )


def describe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def check_connection(engine: Engine) -> None:
    """Connect once; a failure becomes a :class:`DatabaseConfigError` naming cause and fix."""
    _check_sqlite_folder(engine.url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        words = str(exc.orig).strip()
        cause = words.splitlines()[0] if words else type(exc.orig).__name__
        raise DatabaseConfigError(
            f"cannot connect to the database {describe_url(engine.url)}: {cause}; {CONNECT_ADVICE}"
        ) from exc


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
