"""``crmsync demo``: the main job end to end on the embedded default (SQLite under ./var)."""

from __future__ import annotations

from app.cli.common import console, load_settings
from app.db import migrate


def demo() -> None:
    """Migrate the embedded database and report what is ready."""
    settings = load_settings()
    migrate.upgrade(settings.database_url)
    console.print(
        f"[bold]database[/bold] {settings.database_url} at revision "
        f"{migrate.head_revision(settings.database_url)}"
    )
