"""Database fixtures shared by the whole suite.

The suite runs on SQLite by default and on PostgreSQL when ``CRMSYNC_TEST_DATABASE_URL`` names a
PostgreSQL database (CI runs both). Every test gets its own database, so tests are parallel-safe:

* SQLite: a migrated template file is made once per worker and copied per test.
* PostgreSQL: a migrated template database is made once per worker and cloned per test with
  ``CREATE DATABASE ... TEMPLATE`` (fast), then dropped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db.engine import make_engine, make_session_factory
from app.db.migrate import upgrade

TEST_DATABASE_URL = os.environ.get("CRMSYNC_TEST_DATABASE_URL", "")
USE_POSTGRES = TEST_DATABASE_URL.startswith("postgres")


def _pg_admin_engine() -> Engine:
    url = make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg", database="postgres")
    return create_engine(url, isolation_level="AUTOCOMMIT")


def _pg_url(name: str) -> str:
    url = make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _pg_prefix() -> str:
    base = make_url(TEST_DATABASE_URL).database or "crmsync_test"
    return base[:30]


@pytest.fixture(scope="session")
def db_backend() -> str:
    return "postgresql" if USE_POSTGRES else "sqlite"


class DatabaseFactory:
    """Makes fresh databases for one worker; drops what it made at the end of the session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.token = uuid.uuid4().hex[:8]
        self._made: list[str] = []
        self._template: str | None = None
        self._admin = _pg_admin_engine() if USE_POSTGRES else None

    def empty(self) -> str:
        """A new, empty database URL."""
        name = f"{self.token}_{len(self._made)}"
        if self._admin is None:
            path = self.workdir / f"{name}.db"
            self._made.append(str(path))
            return f"sqlite:///{path}"
        dbname = f"{_pg_prefix()}_{name}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{dbname}"'))
        self._made.append(dbname)
        return _pg_url(dbname)

    def migrated(self) -> str:
        """A new database at the migration head, cloned from a per-worker template."""
        if self._template is None:
            url = self.empty()
            upgrade(url)
            self._template = url
        name = f"{self.token}_{len(self._made)}"
        if self._admin is None:
            src = make_url(self._template).database
            assert src is not None
            path = self.workdir / f"{name}.db"
            shutil.copyfile(src, path)
            self._made.append(str(path))
            return f"sqlite:///{path}"
        template = make_url(self._template).database
        dbname = f"{_pg_prefix()}_{name}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"'))
        self._made.append(dbname)
        return _pg_url(dbname)

    def drop(self, url: str) -> None:
        if self._admin is None:
            return
        dbname = make_url(url).database
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        if dbname in self._made:
            self._made.remove(dbname)

    def close(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as conn:
                for dbname in reversed(self._made):
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
            self._admin.dispose()


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.close()


@pytest.fixture
def database_url(database_factory: DatabaseFactory) -> Iterator[str]:
    """A fresh database at the migration head, for this test only."""
    url = database_factory.migrated()
    yield url
    database_factory.drop(url)


@pytest.fixture
def empty_database_url(database_factory: DatabaseFactory) -> Iterator[str]:
    """A fresh empty database (no tables), for migration tests."""
    url = database_factory.empty()
    yield url
    database_factory.drop(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_session_factory(engine)() as s:
        yield s


@pytest.fixture(autouse=True)
def _no_stray_api_usage() -> None:
    """CRM calls made outside runs wait in a per-process ledger until stored
    (:mod:`app.crm.usage`); each test starts with none left over from another test's database,
    and with no store hook bound to another test's database."""
    from app.crm import usage

    usage.install(None)
    usage.take()
