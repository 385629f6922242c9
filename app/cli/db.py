"""``crmsync db ...``: schema migrations."""

from __future__ import annotations

import typer

from app.cli.common import console, load_settings
from app.db.engine import make_engine

db_app = typer.Typer(help="Database schema: upgrade, downgrade, show the current revision.")


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database (CRMSYNC_DATABASE_URL) up to REVISION."""
    from app.db import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url, revision)
    console.print(f"database at revision {migrate.head_revision(settings.database_url)}")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Migrate the database down to REVISION (data in dropped tables is lost)."""
    from app.db import migrate

    settings = load_settings()
    migrate.downgrade(settings.database_url, revision)
    console.print(f"database downgraded to {revision}")


@db_app.command("current")
def current() -> None:
    """Print the database's revision and the code's head revision."""
    from app.db import migrate

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        rev = migrate.current_revision(engine)
    finally:
        engine.dispose()
    head = migrate.head_revision(settings.database_url)
    typer.echo(f"current: {rev or 'none'}\nhead:    {head}")
    if rev != head:
        raise typer.Exit(code=1)
