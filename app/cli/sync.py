"""``crmsync sync ...``: incremental passes and backfills, with progress and a summary.

On a terminal a rich progress bar shows each object's pages; otherwise (cron, CI, pipes) the
command prints one JSON summary on stdout. Exit code 0 when every pass succeeded (or only some
records failed: those are in ``sync_errors``), 1 when a pass failed, 2 for bad input.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from sqlalchemy import Engine

from app.cli.common import ExitCode, console, load_settings, open_database, report_usage_failures
from app.crm.base import CrmName
from app.db.engine import make_session_factory
from app.db.enums import RunStatus, SyncKind
from app.errors import ConfigError
from app.settings import Settings
from app.sync.pull import PageProgress, PullResult
from app.sync.service import run_sync

sync_app = typer.Typer(help="Pull accounts, opportunities and handover notes from the CRM.")


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        console.print(f"crmsync: --since {value!r} is not a date (YYYY-MM-DD) or ISO datetime")
        raise typer.Exit(code=2) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _run(
    kind: SyncKind,
    crms: list[CrmName] | None,
    objects: list[str] | None,
    since: datetime | None,
) -> None:
    settings = load_settings()
    engine = open_database(settings, migrated=True)
    interactive = sys.stdout.isatty()
    try:
        if interactive:
            results = _with_progress(settings, engine, kind, crms, objects, since)
        else:
            results = run_sync(
                settings,
                make_session_factory(engine),
                kind=kind,
                crms=crms,
                objects=objects,
                since=since,
            )
    except ConfigError as exc:
        console.print(f"crmsync: {exc}")
        raise typer.Exit(code=2) from None
    finally:
        engine.dispose()
    if interactive:
        _print_table(results)
    else:
        typer.echo(json.dumps({"runs": [r.summary() for r in results]}, indent=2))
    if report_usage_failures(results):
        raise typer.Exit(code=ExitCode.USAGE)
    if any(r.status is RunStatus.FAILED for r in results):
        raise typer.Exit(code=1)


def _with_progress(
    settings: Settings,
    engine: Engine,
    kind: SyncKind,
    crms: list[CrmName] | None,
    objects: list[str] | None,
    since: datetime | None,
) -> list[PullResult]:
    tasks: dict[tuple[str, str], TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
    ) as progress:

        def on_page(p: PageProgress) -> None:
            key = (p.crm, p.object_name)
            if key not in tasks:
                tasks[key] = progress.add_task(
                    f"{p.crm} {p.object_name}", total=p.expected, detail=""
                )
            c = p.counts
            progress.update(
                tasks[key],
                completed=c.read,
                detail=f"+{c.created} ~{c.updated} ={c.unchanged} -{c.deleted} !{c.failed}",
            )

        return run_sync(
            settings,
            make_session_factory(engine),
            kind=kind,
            crms=crms,
            objects=objects,
            since=since,
            on_page=on_page,
        )


def _print_table(results: list[PullResult]) -> None:
    table = Table(title="sync summary")
    for column in ("crm", "object", "status", "read", "created", "updated", "unchanged"):
        table.add_column(column)
    for column in ("deleted", "failed", "api calls"):
        table.add_column(column)
    for r in results:
        c = r.counts
        table.add_row(
            r.crm,
            r.object_name,
            str(r.status),
            *(str(v) for v in (c.read, c.created, c.updated, c.unchanged, c.deleted, c.failed)),
            str(c.api_calls),
        )
    console.print(table)
    for r in results:
        if r.error:
            console.print(f"[red]{r.crm} {r.object_name}: {r.error}[/red]")


@sync_app.command("run")
def run(
    crm: list[str] = typer.Option(None, "--crm", help="salesforce or hubspot (default: all)."),
) -> None:
    """One incremental pass over every object of the configured CRMs."""
    _run(SyncKind.PULL, _crms(crm), None, None)


@sync_app.command("backfill")
def backfill(
    crm: str = typer.Option(..., "--crm", help="salesforce or hubspot."),
    object_name: list[str] = typer.Option(
        None, "--object", help="Object(s) to backfill (default: all mapped objects)."
    ),
    since: str = typer.Option(None, "--since", help="Only records modified since this date."),
) -> None:
    """Pull everything (or everything since --since); resumes an interrupted backfill."""
    _run(SyncKind.BACKFILL, _crms([crm]), object_name or None, _parse_since(since))


def _crms(values: list[str] | None) -> list[CrmName] | None:
    if not values:
        return None
    chosen: list[CrmName] = []
    for value in values:
        if value == "salesforce":
            chosen.append("salesforce")
        elif value == "hubspot":
            chosen.append("hubspot")
        else:
            console.print(f"crmsync: --crm {value!r}: expected salesforce or hubspot")
            raise typer.Exit(code=2)
    return chosen
