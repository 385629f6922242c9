"""Run and inspect Alembic migrations from code (``crmsync db upgrade``, ``/readyz``, tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import Engine

from app.errors import SchemaError

# The migration scripts ship inside the package (package-data in pyproject.toml), so a wheel, a
# non-editable install and the Docker image find them beside this code, like a checkout does.
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
# Revision file names; alembic.ini repeats it for `alembic revision` run by hand from a checkout.
FILE_TEMPLATE = "%%(rev)s_%%(slug)s"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url``, built in code: no alembic.ini, any working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# -- checks: a schema that does not match the code is a message, not a traceback ------------

UPGRADE_HINT = "run `crmsync db upgrade`"


def known_revision(url: str, revision: str) -> None:
    """Refuse a target revision the code does not have (``crmsync db upgrade <rev>``)."""
    if revision in ("head", "heads", "base") or "+" in revision or "-" in revision:
        return  # relative and symbolic targets: Alembic resolves them against known revisions
    try:
        found = ScriptDirectory.from_config(alembic_config(url)).get_revision(revision)
    except AlembicError:
        found = None
    if found is None:
        raise SchemaError(
            f"unknown migration revision {revision!r}; known: {', '.join(all_revisions(url))} "
            "(or head, base)"
        )


def all_revisions(url: str) -> list[str]:
    """Every revision id the code ships, oldest first."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def check_stamp_known(engine: Engine, url: str) -> str | None:
    """The database's revision; a revision this code does not ship is a :class:`SchemaError`."""
    current = current_revision(engine)
    if current is not None and current not in all_revisions(url):
        raise SchemaError(
            f"the database is at migration revision {current!r}, which this crmsync does not "
            "know: it was migrated by a newer crmsync; run that version, or point "
            "CRMSYNC_DATABASE_URL at another database"
        )
    return current


def require_current_schema(engine: Engine, url: str) -> None:
    """Refuse to sync against a database that is not migrated to the code's head revision."""
    current = check_stamp_known(engine, url)
    head = head_revision(url)
    if current is None:
        raise SchemaError(f"the database has no crmsync tables yet: {UPGRADE_HINT}")
    if current != head:
        raise SchemaError(
            f"the database schema is at revision {current}, the code expects {head}: {UPGRADE_HINT}"
        )


@contextmanager
def revision_errors_explained(target: str) -> Iterator[None]:
    """Alembic's refusals of a target (``-1`` below base, ``+2`` past head) as a SchemaError."""
    try:
        yield
    except AlembicError as exc:
        raise SchemaError(
            f"cannot migrate to {target!r}: {exc}; `crmsync db current` shows where the database is"
        ) from exc
