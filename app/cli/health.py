"""``crmsync health recompute [--account ID]... [--all] [--push]`` (issue #18 items 6 and 8).

Recomputes health, tier, renewal and lifecycle of the accounts whose inputs changed since their
last computation (all of them with ``--all``; only the given ones with ``--account``), as one
``sync_runs`` row of kind ``recompute``; with ``--push`` it then pushes both configured CRMs, so
the changed fields reach the CRM records (an unchanged account costs no API call).

On a terminal a progress bar counts the accounts and a table sums up; otherwise one JSON
document goes to stdout. Exit codes (the README's): 0 done; 1 the run failed or could not start
(another recompute holds the lease), a push failed, or the command was interrupted; 2 bad input
(an unknown account) or configuration (a push refused for missing CRM fields); 3 done, but some
accounts (or pushed records) failed.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

from app.cli.common import ExitCode, console, load_settings, open_database
from app.cli.signals import interrupts_raised
from app.cli.sync import exit_code
from app.core.runs import RunStatus
from app.errors import ConfigError

# The recompute wiring (the database layer, the scoring) loads when the command runs, rich's
# progress bar only on a terminal: the CLI's start-up is most of a no-input recompute's time.
if TYPE_CHECKING:
    from app.sync.run_scope import RunResult
    from app.wiring.recompute import RecomputeOutcome, RecomputeProgress

health_app = typer.Typer(
    help="Health, tier, renewal and lifecycle (domain.md 2-5).", no_args_is_help=True
)


@health_app.command("recompute")
def recompute(
    account: list[int] = typer.Option(
        None, "--account", min=1, help="Recompute only this account (CS id); repeatable."
    ),
    everything: bool = typer.Option(
        False, "--all", help="Recompute every account, changed inputs or not."
    ),
    push: bool = typer.Option(
        False, "--push", help="Then push the changed fields to every configured CRM."
    ),
) -> None:
    """Recompute the accounts whose inputs changed since their last computation."""
    from app.db.engine import make_session_factory
    from app.wiring.recompute import RecomputeInterrupted

    settings = load_settings()
    engine = open_database(settings, migrated=True)
    interactive = sys.stdout.isatty()
    interrupted = False
    factory = make_session_factory(engine)
    try:
        with interrupts_raised():
            outcome = _run(settings, factory, account or None, everything, push, interactive)
    except RecomputeInterrupted as exc:
        outcome, interrupted = exc.outcome, True
    except ConfigError as exc:
        console.print(f"crmsync: {exc}")
        if not interactive:
            typer.echo(json.dumps({"kind": "recompute", "error": str(exc)}, indent=2))
        raise typer.Exit(code=ExitCode.USAGE) from None
    finally:
        engine.dispose()
    _print(outcome, interactive)
    if interrupted:
        console.print("interrupted: run the same command again to resume")
    raise typer.Exit(code=command_exit_code(outcome, interrupted=interrupted))


def command_exit_code(outcome: RecomputeOutcome, *, interrupted: bool = False) -> ExitCode:
    """The worst of the recompute's run and the pushes after it; a refused push is exit 2."""
    if outcome.push_errors and not interrupted:
        return ExitCode.USAGE
    results: list[RunResult] = [] if outcome.result is None else [outcome.result]
    for push in outcome.pushes:
        results.extend(push.results)
    if outcome.result is None and not interrupted:
        return ExitCode.FAILED
    return exit_code(results, interrupted=interrupted)


def _run(
    settings: Any,
    factory: Any,
    accounts: list[int] | None,
    everything: bool,
    push: bool,
    interactive: bool,
) -> RecomputeOutcome:
    from app.wiring.recompute import run_recompute

    if not interactive:
        return run_recompute(
            settings,
            account_ids=accounts,
            everything=everything,
            push=push,
            session_factory=factory,
        )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("recompute"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console.get(),
        # Redrawn after each chunk, not by rich's refresh thread: with no thread but the run's
        # heartbeat, the recompute may fork its workers (docs/recompute.md, Worker processes).
        auto_refresh=False,
    ) as progress:
        task = progress.add_task("recompute", total=None, detail="")

        def on_progress(p: RecomputeProgress) -> None:
            progress.update(task, completed=p.done, total=p.total, detail=f"{p.changed} changed")
            progress.refresh()

        return run_recompute(
            settings,
            account_ids=accounts,
            everything=everything,
            push=push,
            session_factory=factory,
            on_progress=on_progress,
        )


def _print(outcome: RecomputeOutcome, interactive: bool) -> None:
    if not interactive:
        typer.echo(json.dumps(outcome.summary(), indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"recompute as of {outcome.as_of.isoformat()}")
    columns = (
        "status",
        "selected",
        "changed",
        "unchanged",
        "failed",
        "events",
        "stamped",
        "workers",
    )
    for column in columns:
        table.add_column(column)
    status = "-" if outcome.status is None else str(outcome.status)
    table.add_row(
        status,
        *(
            str(v)
            for v in (
                outcome.selected,
                outcome.changed,
                outcome.unchanged,
                outcome.failed,
                outcome.events,
                outcome.stamped_columns,
                outcome.workers,
            )
        ),
    )
    console.print(table)
    if outcome.result is not None and outcome.result.error:
        color = "yellow" if outcome.status is RunStatus.CANCELLED else "red"
        console.print(f"[{color}]{outcome.result.error}[/{color}]")
    for push in outcome.pushes:
        calls = sum(r.counts.api_calls for r in push.results)
        written = sum(r.counts.created + r.counts.updated for r in push.results)
        console.print(f"push {push.crm}: {written} record(s) written, {calls} API call(s)")
        for r in push.results:
            if r.error:
                console.print(f"[red]{r.crm} {r.object_name}: {r.error}[/red]")
    for crm, error in outcome.push_errors.items():
        console.print(f"[red]push {crm} refused: {error}[/red]")
