"""Run and inspect Alembic migrations from code (``crmsync db upgrade``, ``/readyz``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

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
