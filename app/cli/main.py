"""The ``crmsync`` command line: one sub-command per operator task, each a thin wrapper."""

from __future__ import annotations

import typer

from app.cli.db import db_app
from app.cli.demo import demo
from app.cli.sandbox import sandbox
from app.cli.serve import serve
from app.cli.sync import sync_app

cli = typer.Typer(
    name="crmsync",
    help="Keep a CRM (Salesforce or HubSpot) and the customer-success database in step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.add_typer(db_app, name="db")
cli.add_typer(sync_app, name="sync")
cli.command("serve")(serve)
cli.command("demo")(demo)
cli.command("sandbox")(sandbox)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
