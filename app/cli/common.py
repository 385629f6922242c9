"""Helpers shared by the CLI commands: settings loading with a clear error, console output."""

from __future__ import annotations

import sys
from enum import IntEnum

import typer
from pydantic import ValidationError
from rich.console import Console

from app.settings import InsecureSettingsError, Settings


class ExitCode(IntEnum):
    """The exit codes of every ``crmsync`` command, the contract a scheduler relies on.

    Documented in the README ("Exit codes"); every command maps its outcome onto these four.
    """

    OK = 0  # everything done
    FAILED = 1  # a run failed or could not start
    USAGE = 2  # bad input or configuration
    PARTIAL = 3  # done, but some records failed (run status ``partial``)


# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; give them room.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def load_settings() -> Settings:
    """Build settings from the environment; a bad setting is a message and exit code 2."""
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["loc"]:
                name = "CRMSYNC_" + "__".join(str(part) for part in error["loc"]).upper()
                print(f"crmsync: invalid setting {name}: {message}", file=sys.stderr)
            else:
                print(f"crmsync: {message}", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE) from None
    except InsecureSettingsError as exc:
        print(f"crmsync: {exc}", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE) from None
    check_mapping_file(settings)
    return settings


def check_mapping_file(settings: Settings) -> None:
    """Validate ``CRMSYNC_MAPPING_FILE`` whole (every CRM's sections) when a command starts.

    Otherwise a mistake in the ``hubspot`` sections would surface only when HubSpot first syncs,
    possibly in a nightly job. Imported lazily: most commands have no mapping file.
    """
    if settings.mapping_file is None:
        return
    from app.mappers.config import load_mapping_sets
    from app.mappers.errors import MappingConfigError

    try:
        load_mapping_sets(settings.mapping_file, default_currency=settings.default_currency)
    except MappingConfigError as exc:
        print(f"crmsync: invalid mapping file (CRMSYNC_MAPPING_FILE) {exc}", file=sys.stderr)
        hint = "fix it (see docs/mapping.md) or unset CRMSYNC_MAPPING_FILE"
        print(f"crmsync: {hint}", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE) from None
