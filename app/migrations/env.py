"""Alembic environment: metadata from the models, URL from the caller or crmsync's settings."""

from __future__ import annotations

import warnings
from typing import Any

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.exc import SAWarning

from app.db import models  # noqa: F401  (registers every table on the metadata)
from app.db.base import Base
from app.db.engine import make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from app.settings import get_settings

    return get_settings().database_url


#: Indexes on expressions (``lower(name)``): SQLite's reflection cannot read them back, so
#: ``alembic check`` would report them missing. Their presence is tested instead
#: (tests/migrations/test_migrations.py). A batch rebuild of ``accounts`` on SQLite drops them:
#: a migration that batch-alters ``accounts`` must create them again.
EXPRESSION_INDEXES = frozenset({"ix_accounts_name_lower", "ix_accounts_domain_lower"})
warnings.filterwarnings(
    "ignore", "Skipped unsupported reflection of expression-based index", SAWarning
)
warnings.filterwarnings(
    "ignore", "autogenerate skipping metadata-specified expression-based index", UserWarning
)


def _include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include,
        compare_type=True,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
