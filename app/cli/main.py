"""The ``crmsync`` command line: one sub-command per operator task, each a thin wrapper.

:func:`main` is the one place that turns crmsync's own errors (:class:`app.errors.CrmsyncError`:
a database URL that does not connect, an unmigrated schema, a rejected credential, ...) into
``crmsync: <message>`` on stderr and the exit code of their category, without a traceback.
``CRMSYNC_DEBUG=1`` lets the traceback through. typer/click usage errors keep their own handling
(they are raised and printed inside ``cli()``, exit 2), and any other exception is a bug: it
keeps its traceback.
"""

from __future__ import annotations

import importlib.util
import sys

import typer

from app.cli.common import debug_enabled, report_error
from app.cli.crm import crm_app
from app.cli.db import db_app
from app.cli.serve import serve
from app.cli.sync import sync_app
from app.errors import CrmsyncError
from app.logging import configure_logging

cli = typer.Typer(
    name="crmsync",
    help="Keep a CRM (Salesforce or HubSpot) and the customer-success database in step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.add_typer(db_app, name="db")
cli.add_typer(sync_app, name="sync")
cli.add_typer(crm_app, name="crm")
cli.command("serve")(serve)

SANDBOX_MISSING = (
    "the CRM sandbox is not installed: pip install 'crmsync[sandbox]' (or `make dev`) "
    "to get the `sandbox` and `demo` commands"
)


def _sandbox_installed() -> bool:
    return importlib.util.find_spec("crmsync_sandbox") is not None


if _sandbox_installed():
    # Imported only when present: the sandbox is an extra, not part of the product wheel.
    from app.cli.demo import demo
    from app.cli.sandbox import sandbox

    cli.command("demo")(demo)
    cli.command("sandbox")(sandbox)
else:

    @cli.command("demo", hidden=True, context_settings={"ignore_unknown_options": True})
    def demo_missing() -> None:
        """Not installed: the demo needs the sandbox extra."""
        typer.echo(f"crmsync: {SANDBOX_MISSING}", err=True)
        raise typer.Exit(2)

    @cli.command("sandbox", hidden=True, context_settings={"ignore_unknown_options": True})
    def sandbox_missing() -> None:
        """Not installed: the CRM emulator is the sandbox extra."""
        typer.echo(f"crmsync: {SANDBOX_MISSING}", err=True)
        raise typer.Exit(2)


def main() -> None:
    # Logs (retries, warnings) go to stderr from the start; load_settings() applies the level.
    configure_logging()
    try:
        cli()
    except CrmsyncError as exc:
        if debug_enabled():
            raise
        sys.exit(report_error(exc))


if __name__ == "__main__":
    main()
