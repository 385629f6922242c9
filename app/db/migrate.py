"""Run and inspect Alembic migrations from code (``crmsync db upgrade``, ``/readyz``, tests).

Alembic is imported by the functions that use it: the check every command makes before it runs
(:func:`require_current_schema`) answers the common case, a database at the code's head, with a
plain ``SELECT`` and the migration files' names, without loading Alembic and its scripts (about
a tenth of a second, most of a quick command's own time).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from app.errors import SchemaError

if TYPE_CHECKING:
    from alembic.config import Config

# The migration scripts ship inside the package (package-data in pyproject.toml), so a wheel, a
# non-editable install and the Docker image find them beside this code, like a checkout does.
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
# Revision file names; alembic.ini repeats it for `alembic revision` run by hand from a checkout.
FILE_TEMPLATE = "%%(rev)s_%%(slug)s"


#: A revision file's name: ``0012_accounts_to_create.py`` is revision ``0012`` (kept so by
#: ``tests/migrations``), so the code's head is the highest number, the chain being linear.
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url``, built in code: no alembic.ini, any working directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def shipped_head() -> str | None:
    """The code's head revision from the migration files' names, without Alembic."""
    found = (_REVISION_FILE.match(p.name) for p in (MIGRATIONS_DIR / "versions").iterdir())
    revisions = sorted(m.group(1) for m in found if m is not None)
    return revisions[-1] if revisions else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def stamped_revision(engine: Engine) -> str | None:
    """The database's revision read with plain SQL (None without crmsync's tables); a database
    stamped with several heads (never crmsync's own) reads as None here and takes the full
    check."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return str(rows[0]) if len(rows) == 1 else None


# -- checks: a schema that does not match the code is a message, not a traceback ------------

UPGRADE_HINT = "run `crmsync db upgrade`"


def known_revision(url: str, revision: str) -> None:
    """Refuse a target revision the code does not have (``crmsync db upgrade <rev>``)."""
    if revision in ("head", "heads", "base") or "+" in revision or "-" in revision:
        return  # relative and symbolic targets: Alembic resolves them against known revisions
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError as AlembicError

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
    from alembic.script import ScriptDirectory

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
    stamped = stamped_revision(engine)
    if stamped is not None and stamped == shipped_head():
        return  # the common case, answered without loading Alembic
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
    from alembic.util.exc import CommandError as AlembicError

    try:
        yield
    except AlembicError as exc:
        raise SchemaError(
            f"cannot migrate to {target!r}: {exc}; `crmsync db current` shows where the database is"
        ) from exc
