"""``crmsync db ...``: schema migrations.

Every command connects first (:func:`app.cli.common.open_database`), so a wrong
``CRMSYNC_DATABASE_URL`` is one line and exit 2, and checks revisions against the ones the code
ships, so an unknown target or a database migrated by a newer crmsync is refused by name.
"""

from __future__ import annotations

import typer

from app.cli.common import console, load_settings, open_database

db_app = typer.Typer(help="Database schema: upgrade, downgrade, show the current revision.")


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database (CRMSYNC_DATABASE_URL) up to REVISION."""
    from app.db import migrate

    settings = load_settings()
    url = settings.database_url
    engine = open_database(settings)
    try:
        migrate.check_stamp_known(engine, url)
        migrate.known_revision(url, revision)
        with migrate.revision_errors_explained(revision):
            migrate.upgrade(url, revision)
        reached = migrate.current_revision(engine)
    finally:
        engine.dispose()
    console.print(f"database at revision {reached or 'none (base)'}")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Migrate the database down to REVISION (data in dropped tables is lost)."""
    from app.db import migrate

    settings = load_settings()
    url = settings.database_url
    engine = open_database(settings)
    try:
        migrate.check_stamp_known(engine, url)
        migrate.known_revision(url, revision)
    finally:
        engine.dispose()
    with migrate.revision_errors_explained(revision):
        migrate.downgrade(url, revision)
    console.print(f"database downgraded to {revision}")


@db_app.command("current")
def current() -> None:
    """Print the database's revision and the code's head revision."""
    from app.db import migrate

    settings = load_settings()
    engine = open_database(settings)
    try:
        rev = migrate.check_stamp_known(engine, settings.database_url)
    finally:
        engine.dispose()
    head = migrate.head_revision(settings.database_url)
    typer.echo(f"current: {rev or 'none'}\nhead:    {head}")
    if rev != head:
        raise typer.Exit(code=1)
