"""Helpers shared by the CLI commands: settings loading with a clear error, console output,
opening the database with its checks, and the mapping of crmsync's errors to exit codes."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import typer

from app.errors import CrmsyncError, ErrorCategory
from app.logging import configure_logging

# Settings (pydantic, SQLAlchemy URLs) and the database load when a command first needs them, not
# when the CLI starts: `crmsync --help` and light commands do not pay for them. So does rich's
# Console, on its first line (LazyConsole).
if TYPE_CHECKING:
    from rich.console import Console
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


class LazyConsole:
    """rich's Console on stderr (or stdout), made when the command first prints.

    Importing rich.console and building a Console cost about 0.02 s, which a command that
    prints only JSON (``crmsync health recompute`` off a terminal, issue #18 item 10) never
    needs. ``print`` is the Console's; :meth:`get` gives the Console itself (a progress bar's).
    Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; ``width`` gives them
    room.
    """

    __slots__ = ("_console", "_stderr", "_width")

    def __init__(self, *, stderr: bool, width: int) -> None:
        self._stderr = stderr
        self._width = width
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            width = None if stream.isatty() else self._width
            self._console = Console(stderr=self._stderr, width=width)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.get().print(*objects, **kwargs)


console = LazyConsole(stderr=True, width=120)


def start_up() -> None:
    """Pause the cyclic garbage collector while a command starts, until :func:`startup_done`.

    Starting a command imports a few hundred modules, whose classes, functions and tables all
    live as long as the process; the collector's passes over them, some two hundred while they
    load, free nothing and took about a tenth of a no-input recompute's CPU (issue #18 item 10).
    :func:`app.cli.main.main` calls this first and :func:`startup_done` when the command ends,
    at the latest; :func:`load_settings` calls :func:`startup_done`, so every command that works
    on the database or a CRM runs its work with the collector on. A command that loads no
    settings (``sandbox``, ``demo``) calls :func:`startup_done` itself.
    """
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def startup_done() -> None:
    """The command has loaded what it needs: what is alive now is left out of the collector's
    passes for good (:func:`gc.freeze`: a recompute's passes between chunks no longer walk the
    modules), and the collector runs again. Does nothing unless :func:`start_up` paused it."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


_paused = False


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
    startup_done()
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
