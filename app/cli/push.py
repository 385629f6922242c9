"""``crmsync push --crm X [--object O] [--dry-run]``: CS changes to the CRM (ADR 0006).

A push writes only the changed fields of the records changed on the CS side since the last push,
at the CRM's call floor; with nothing changed it makes no API call. ``--dry-run`` writes nothing:
it lists per record each field's old -> new value and the exact number of API calls the push
would make (the same number the push then makes, without faults).

On a terminal a progress bar shows the records written and a table sums them up; otherwise one
JSON document goes to stdout. Exit codes (the README's "Exit codes"): 0 done; 1 a run failed or
could not start, or the command was interrupted; 2 bad input or configuration, including
target fields missing in the CRM (``crmsync crm setup`` creates them); 3 done, but some records
failed (they are ``sync_errors`` rows, direction ``push``).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

from app.cli.common import ExitCode, console, load_settings, open_database, report_usage_failures
from app.cli.signals import interrupts_raised
from app.cli.sync import exit_code
from app.core.types import CrmName
from app.errors import ConfigError

# The push wiring (the CRM clients: simple_salesforce, the HubSpot client) loads when the command
# runs, not whenever the CLI starts.
if TYPE_CHECKING:
    from app.sync.push import PushProgress
    from app.wiring.push import PushOutcome


def push(
    crm: str = typer.Option(..., "--crm", help="salesforce or hubspot."),
    object_name: list[str] = typer.Option(
        None, "--object", help="Object(s) to push (default: every object with write-backs)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write nothing: list old -> new per record and the API calls."
    ),
    limit: int = typer.Option(
        200, "--limit", min=0, help="Records listed per object by --dry-run (all are counted)."
    ),
) -> None:
    """Push CS-side changes (write-backs, two-way fields, notes) to the CRM."""
    from app.wiring.push import PushInterrupted

    name = _crm(crm)
    settings = load_settings()
    engine = open_database(settings, migrated=True)
    interactive = sys.stdout.isatty()
    interrupted = False
    try:
        with interrupts_raised():
            outcome = _run(settings, engine, name, object_name or None, dry_run, interactive)
    except PushInterrupted as exc:
        outcome, interrupted = exc.outcome, True
    except ConfigError as exc:
        console.print(f"crmsync: {exc}")
        if not interactive:
            typer.echo(json.dumps({"crm": name, "error": str(exc)}, indent=2))
        raise typer.Exit(code=ExitCode.USAGE) from None
    finally:
        engine.dispose()
    _print(outcome, interactive, limit)
    if interrupted:
        console.print("interrupted: run the same command again to resume")
    if report_usage_failures(outcome.results):
        raise typer.Exit(code=ExitCode.USAGE)
    raise typer.Exit(code=exit_code(outcome.results, interrupted=interrupted))


def _crm(value: str) -> CrmName:
    if value == "salesforce":
        return "salesforce"
    if value == "hubspot":
        return "hubspot"
    console.print(f"crmsync: --crm {value!r}: expected salesforce or hubspot")
    raise typer.Exit(code=ExitCode.USAGE)


def _run(
    settings: Any,
    engine: Any,
    crm: CrmName,
    objects: list[str] | None,
    dry_run: bool,
    interactive: bool,
) -> PushOutcome:
    from rich.progress import BarColumn, Progress, TaskID, TextColumn

    from app.db.engine import make_session_factory
    from app.wiring.push import run_push

    factory = make_session_factory(engine)
    if not interactive or dry_run:
        return run_push(settings, crm, objects, dry_run=dry_run, session_factory=factory)
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} written"),
        TextColumn("{task.fields[detail]}"),
        console=console.get(),
    ) as progress:

        def on_commit(p: PushProgress) -> None:
            if p.object_name not in tasks:
                tasks[p.object_name] = progress.add_task(
                    f"{p.crm} {p.object_name}", total=None, detail=""
                )
            c = p.counts
            progress.update(
                tasks[p.object_name],
                completed=p.planned,
                total=c.read or None,
                detail=f"+{c.created} ~{c.updated} ={c.unchanged} !{c.failed}",
            )

        return run_push(settings, crm, objects, session_factory=factory, on_commit=on_commit)


def _print(outcome: PushOutcome, interactive: bool, limit: int) -> None:
    if not interactive:
        typer.echo(json.dumps(outcome.summary(limit), indent=2, default=str))
        return
    if outcome.dry_run:
        _print_preview(outcome, limit)
        return
    from rich.table import Table

    table = Table(title=f"push summary ({outcome.crm})")
    for column in ("object", "status", "planned", "created", "updated", "unchanged", "failed"):
        table.add_column(column)
    table.add_column("api calls")
    for r in outcome.results:
        c = r.counts
        table.add_row(
            r.object_name,
            str(r.status),
            str(r.extra.get("planned", c.read)),
            *(str(v) for v in (c.created, c.updated, c.unchanged, c.failed, c.api_calls)),
        )
    console.print(table)
    for r in outcome.results:
        if r.error:
            console.print(f"[red]{r.crm} {r.object_name}: {r.error}[/red]")


def _print_preview(outcome: PushOutcome, limit: int) -> None:
    from rich.table import Table

    for preview in outcome.previews:
        table = Table(
            title=(
                f"{outcome.crm} {preview.object_name}: {len(preview.records)} record(s), "
                f"{preview.planned_calls} API call(s)"
            )
        )
        for column in ("record", "kind", "field", "old", "new", "reason"):
            table.add_column(column)
        for record in preview.records[:limit]:
            label = record.crm_id or f"row {record.row_id} (new)"
            kind = "create" if record.crm_id is None else "update"
            for change in record.changes:
                table.add_row(
                    label, kind, change.crm_field, repr(change.old), repr(change.new), change.reason
                )
        console.print(table)
        if len(preview.records) > limit:
            console.print(f"... and {len(preview.records) - limit} more record(s) (--limit)")
        for error in preview.errors:
            console.print(f"[red]row {error.row_id} {error.crm_field}: {error.message}[/red]")
    console.print(f"total: {outcome.planned_calls} API call(s)")
