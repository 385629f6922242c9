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

from app.cli.admin import errors_app, inbox_app, runs_app, status
from app.cli.common import debug_enabled, report_error, start_up, startup_done
from app.cli.crm import crm_app
from app.cli.csms import csms_app
from app.cli.db import db_app
from app.cli.health import health_app
from app.cli.keys import keys_app
from app.cli.push import push
from app.cli.serve import serve
from app.cli.signals_import import signals_app
from app.cli.sync import sync_app
from app.cli.worker import worker
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
cli.add_typer(health_app, name="health")
cli.add_typer(csms_app, name="csms")
cli.add_typer(signals_app, name="signals")
cli.add_typer(keys_app, name="keys")
cli.add_typer(runs_app, name="runs")
cli.add_typer(errors_app, name="errors")
cli.add_typer(inbox_app, name="inbox")
cli.command("status")(status)
cli.command("push")(push)
cli.command("serve")(serve)
cli.command("worker")(worker)

# What `crmsync sandbox` and `crmsync demo` import beyond the product's own dependencies: the
# crmsync-sandbox distribution (the `sandbox` extra) and the modules only it depends on
# (crmsync_sandbox/pyproject.toml; tests/unit/test_sandbox_package.py keeps the two in step).
SANDBOX_MODULES = ("crmsync_sandbox", "lark", "trustme")
SANDBOX_COMMANDS = ("sandbox", "demo")


def sandbox_missing_message(command: str) -> str:
    """The one line a user gets for a sandbox command that is not installed."""
    return (
        f"crmsync {command}: the CRM sandbox is not installed; "
        "pip install 'crmsync[sandbox]' (in a checkout: make dev) adds `crmsync sandbox` and "
        "`crmsync demo`"
    )


def sandbox_installed() -> bool:
    """Whether the sandbox extra can be imported: the package and its own dependencies.

    Checked with ``find_spec``, which imports nothing, so that commands which never start a
    sandbox do not pay for it. The dependencies count too: a checkout's ``crmsync_sandbox/`` on
    ``sys.path`` (``python -m app.cli.main``) without lark or trustme is not an installed sandbox.
    """
    return all(importlib.util.find_spec(name) is not None for name in SANDBOX_MODULES)


def _not_installed(command: str) -> None:
    """Register ``command`` hidden, answering any arguments (``--help`` too) with how to get it,
    exit 2 (a configuration problem), rather than click's "No such command"."""

    def missing() -> None:
        typer.echo(sandbox_missing_message(command), err=True)
        raise typer.Exit(2)

    cli.command(
        command,
        hidden=True,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )(missing)


if sandbox_installed():
    # Imported only when present: the sandbox is an extra, not part of the product wheel.
    from app.cli.demo import demo
    from app.cli.sandbox import sandbox

    cli.command("demo")(demo)
    cli.command("sandbox")(sandbox)
else:
    for _command in SANDBOX_COMMANDS:
        _not_installed(_command)


def main() -> None:
    # No collector passes over the modules a command loads as it starts (start_up's docstring).
    start_up()
    # Logs (retries, warnings) go to stderr from the start; load_settings() applies the level.
    configure_logging()
    try:
        cli()
    except CrmsyncError as exc:
        if debug_enabled():
            raise
        sys.exit(report_error(exc))
    finally:
        startup_done()


if __name__ == "__main__":
    main()
