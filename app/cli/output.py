"""Output of the admin commands (keys, runs, errors, inbox, status, audit): a rich table on a
terminal, JSON (on stdout) with ``--json`` or when stdout is not a terminal, so scripts and
pipes always get JSON. Also the audit actor of a command line user."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import typer

from app.cli.common import LazyConsole

# rich loads with the first table or line printed (LazyConsole), not with the CLI.
stdout = LazyConsole(stderr=False, width=160)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def wants_json(flag: bool) -> bool:
    return flag or not sys.stdout.isatty()


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=_encode))


def cell(value: Any) -> str:
    """A table cell: '-' for nothing, datetimes to the second, the rest as text."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        return value[:19].replace("T", " ")
    if isinstance(value, dict | list):
        return json.dumps(value, default=_encode)
    return str(value)


def _key(name: str) -> Callable[[dict[str, Any]], Any]:
    def get(row: dict[str, Any]) -> Any:
        return row.get(name)

    return get


def print_table(
    title: str,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str | tuple[str, Callable[[dict[str, Any]], Any]]],
    *,
    empty: str,
) -> None:
    """A table with one row per dict; a column is a key, or (header, function of the row)."""
    if not rows:
        stdout.print(empty)
        return
    from rich.table import Table

    table = Table(title=title)
    getters: list[Callable[[dict[str, Any]], Any]] = []
    for column in columns:
        if isinstance(column, str):
            table.add_column(column, overflow="fold")
            getters.append(_key(column))
        else:
            table.add_column(column[0], overflow="fold")
            getters.append(column[1])
    for row in rows:
        table.add_row(*(cell(get(row)) for get in getters))
    stdout.print(table)


def cli_actor() -> str:
    """Who runs this command, for the audit log: ``cli:<login>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"
