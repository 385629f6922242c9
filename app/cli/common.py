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
        return Settings()
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
