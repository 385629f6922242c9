"""Helpers shared by the CLI commands: settings loading with a clear error, console output,
opening the database with its checks, and the mapping of crmsync's errors to exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from enum import IntEnum
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from app.errors import CrmsyncError, ErrorCategory
from app.logging import configure_logging

# Settings (pydantic, SQLAlchemy URLs) and the database load when a command first needs them, not
# when the CLI starts: `crmsync --help` and light commands do not pay for them.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from app.settings import Settings
    from app.sync.pull import PullResult

DEBUG_ENV = "CRMSYNC_DEBUG"


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
    from pydantic import ValidationError

    from app.settings import InsecureSettingsError, Settings

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
    configure_logging(settings.log_level)
    check_mapping_file(settings)
    return settings


# Categories the user fixes in settings or credentials: "bad input or configuration" (2).
USAGE_CATEGORIES = frozenset({ErrorCategory.CONFIG, ErrorCategory.AUTH})


def exit_code_for(category: ErrorCategory) -> ExitCode:
    """The exit code of a command stopped by an error of ``category``."""
    return ExitCode.USAGE if category in USAGE_CATEGORIES else ExitCode.FAILED


def debug_enabled() -> bool:
    """``CRMSYNC_DEBUG=1`` (or true/yes): show the traceback instead of the one-line message."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def report_error(error: CrmsyncError) -> ExitCode:
    """Print ``crmsync: <message>`` (the message names the fix) and return the exit code."""
    print(f"crmsync: {error}", file=sys.stderr)
    if not debug_enabled():
        print(f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
    return exit_code_for(error.category)


def open_database(settings: Settings, *, migrated: bool = False) -> Engine:
    """An engine that has connected once; with ``migrated``, at the code's head revision.

    Raises :class:`~app.errors.DatabaseConfigError` / :class:`~app.errors.SchemaError`, which
    the CLI's handler prints as one line with exit code 2.
    """
    from app.db import migrate
    from app.db.engine import check_connection, make_engine

    engine = make_engine(settings.database_url)
    try:
        check_connection(engine)
        if migrated:
            migrate.require_current_schema(engine, settings.database_url)
    except BaseException:
        engine.dispose()
        raise
    return engine


def report_usage_failures(results: Iterable[PullResult]) -> bool:
    """Print each distinct configuration/credential failure of a sync once (stderr).

    True if there was one: the command then exits 2, since every pass will fail the same way
    until the user fixes a setting (a wrong CA file, a rejected token).
    """
    seen: list[str] = []
    for result in results:
        if result.error_category in USAGE_CATEGORIES and result.error and result.error not in seen:
            seen.append(result.error)
            print(f"crmsync: {result.crm} {result.object_name}: {result.error}", file=sys.stderr)
    return bool(seen)


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
