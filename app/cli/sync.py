"""``crmsync sync ...``: incremental passes and backfills, with progress and a summary.

On a terminal a rich progress bar shows each object's pages and a table sums them up; otherwise
(cron, CI, pipes) the command prints one JSON summary on stdout. The summary is printed whatever
happens: passes that failed, could not start or were interrupted are in it with their error.

Exit codes (:class:`~app.cli.common.ExitCode`, the README's "Exit codes"): 0 every pass
succeeded; 1 a pass failed, could not start (another pass holds its lease) or the command was
interrupted (SIGINT/SIGTERM: the run is ``cancelled`` at its last committed page, and the same
command resumes it); 2 bad input or configuration, before any pass starts; 3 every pass ran but
some records failed (``partial``: they are in ``sync_errors``).

``crmsync sync run --push`` chains the push (``crmsync push``, ADR 0006) after the pull, per
CRM: the push then decides its conflicts against what the pull just read. A CRM whose pull did
not succeed (``failed`` or ``cancelled``) is not pushed. The runs of both are in one summary;
the exit code is the worst of both (1 over 2 over 3 over 0), a push refused for missing target
fields counting as 2.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from app.cli.common import ExitCode, console, load_settings, open_database, report_usage_failures
from app.cli.cursor import cursor_app
from app.cli.dates import parse_past_instant
from app.cli.signals import interrupts_raised
from app.core.runs import RunStatus, SyncKind
from app.crm.base import CrmName
from app.errors import ConfigError
from app.sync.partitions import MAX_PARTITIONS

# The sync wiring (CRM clients, the database layer) and rich's progress bar load when a pass
# runs: other commands (`crmsync health recompute` uses exit_code) do not pay for them.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from app.settings import Settings
    from app.sync.pull import PageProgress, PullResult

sync_app = typer.Typer(help="Pull accounts, opportunities and handover notes from the CRM.")
sync_app.add_typer(cursor_app, name="cursor")


def _parse_since(value: str | None) -> datetime | None:
    """``--since`` as aware UTC; a bad or future date is a message and exit 2."""
    return None if value is None else parse_past_instant(value, "--since")


def exit_code(results: list[PullResult], *, interrupted: bool = False) -> ExitCode:
    """The command's exit code from its passes: the worst outcome wins."""
    if interrupted or any(r.status in (RunStatus.FAILED, RunStatus.CANCELLED) for r in results):
        return ExitCode.FAILED
    if any(r.status is RunStatus.PARTIAL for r in results):
        return ExitCode.PARTIAL
    return ExitCode.OK


def _run(
    kind: SyncKind,
    crms: list[CrmName] | None,
    objects: list[str] | None,
    since: datetime | None,
    restart: bool = False,
    *,
    budget_check: bool = False,
    push: bool = False,
) -> None:
    from app.db.engine import make_session_factory
    from app.wiring.sync import SyncInterrupted, run_sync

    settings = load_settings()
    engine = open_database(settings, migrated=True)
    interactive = sys.stdout.isatty()
    interrupted = False
    pushed: list[PullResult] = []
    push_errors: dict[str, str] = {}
    try:
        if budget_check:  # the API budget guard (docs/budget.md): OverBudgetError is exit 2
            from app.wiring.budget import check_backfill

            check_backfill(settings, make_session_factory(engine), crms, objects, since)
        with interrupts_raised():
            if interactive:
                results = _with_progress(settings, engine, kind, crms, objects, since, restart)
            else:
                results = run_sync(
                    settings,
                    make_session_factory(engine),
                    kind=kind,
                    crms=crms,
                    objects=objects,
                    since=since,
                    restart=restart,
                )
            if push:
                pushed, push_errors = _push_after(settings, engine, crms, results)
    except SyncInterrupted as exc:
        results, interrupted = exc.results, True
    except _PushAfterInterrupted as exc:
        results, pushed, push_errors = exc.pulled, exc.pushed, exc.errors
        interrupted = True
    except ConfigError as exc:
        console.print(f"crmsync: {exc}")
        _print_summary([], interactive, error=str(exc))
        raise typer.Exit(code=ExitCode.USAGE) from None
    finally:
        engine.dispose()
    _print_summary([*results, *pushed], interactive, push_errors=push_errors if push else None)
    if interrupted:
        console.print("interrupted: run the same command again to resume")
    for crm, message in push_errors.items():
        console.print(f"crmsync: {crm} push: {message}")
    # A setting to fix (a rejected credential, a CA file) is 2 before anything else, as ever.
    if report_usage_failures([*results, *pushed]):
        raise typer.Exit(code=ExitCode.USAGE)
    code = exit_code([*results, *pushed], interrupted=interrupted)
    if code is ExitCode.FAILED:
        raise typer.Exit(code=code)
    if any(not m.startswith(SKIPPED) for m in push_errors.values()):
        raise typer.Exit(code=ExitCode.USAGE)
    raise typer.Exit(code=code)


#: How a CRM's push that was not attempted (its pull did not succeed) is reported.
SKIPPED = "not pushed:"


class _PushAfterInterrupted(KeyboardInterrupt):
    def __init__(
        self, pulled: list[PullResult], pushed: list[PullResult], errors: dict[str, str]
    ) -> None:
        super().__init__("interrupted")
        self.pulled, self.pushed, self.errors = pulled, pushed, errors


def _push_after(
    settings: Settings,
    engine: Engine,
    crms: list[CrmName] | None,
    pulled: list[PullResult],
) -> tuple[list[PullResult], dict[str, str]]:
    """``--push``: each CRM pulled, pushed in turn (``crmsync push --crm X``), unless its pull
    failed or could not start. Returns the push runs and, per CRM, why it was not pushed."""
    # Imported here: the push's wiring is only loaded by commands that push.
    from app.db.engine import make_session_factory
    from app.wiring.push import PushInterrupted, run_push

    factory = make_session_factory(engine)
    runs: list[PullResult] = []
    errors: dict[str, str] = {}
    for crm in crms or list(settings.enabled_crms):
        bad = [
            r
            for r in pulled
            if r.crm == crm and r.status in (RunStatus.FAILED, RunStatus.CANCELLED)
        ]
        if bad:
            errors[crm] = (
                f"{SKIPPED} the pull of {', '.join(r.object_name for r in bad)} did not succeed"
            )
            continue
        try:
            runs.extend(run_push(settings, crm, session_factory=factory).results)
        except PushInterrupted as exc:
            runs.extend(exc.outcome.results)
            raise _PushAfterInterrupted(pulled, runs, errors) from exc
        except ConfigError as exc:
            errors[crm] = str(exc)
    return runs, errors


def _print_summary(
    results: list[PullResult],
    interactive: bool,
    error: str | None = None,
    push_errors: dict[str, str] | None = None,
) -> None:
    """The table on a terminal, else one JSON document on stdout (``error``: none ran)."""
    if interactive:
        if results:
            _print_table(results)
        return
    summary: dict[str, Any] = {"runs": [r.summary() for r in results]}
    if push_errors is not None:
        summary["push_errors"] = push_errors
    if error is not None:
        summary["error"] = error
    typer.echo(json.dumps(summary, indent=2))


def _with_progress(
    settings: Settings,
    engine: Engine,
    kind: SyncKind,
    crms: list[CrmName] | None,
    objects: list[str] | None,
    since: datetime | None,
    restart: bool = False,
) -> list[PullResult]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from app.db.engine import make_session_factory
    from app.wiring.sync import run_sync

    tasks: dict[tuple[str, str], TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console.get(),
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
            restart=restart,
        )


def _print_table(results: list[PullResult]) -> None:
    from rich.table import Table

    table = Table(title="sync summary")
    for column in ("crm", "object", "kind", "status", "read", "created", "updated", "unchanged"):
        table.add_column(column)
    for column in ("deleted", "failed", "api calls"):
        table.add_column(column)
    for r in results:
        c = r.counts
        table.add_row(
            r.crm,
            r.object_name,
            r.kind,
            str(r.status),
            *(str(v) for v in (c.read, c.created, c.updated, c.unchanged, c.deleted, c.failed)),
            str(c.api_calls),
        )
    console.print(table)
    for r in results:
        done = r.extra.get("backfill", {})
        if done.get("step") == "already_complete":
            console.print(
                f"{r.crm} {r.object_name}: already complete in the backfill started "
                f"{done['generation']} (not read again; --restart begins a new one)"
            )
        if r.error:
            console.print(f"[red]{r.crm} {r.object_name}: {r.error}[/red]")


@sync_app.command("run")
def run(
    crm: list[str] = typer.Option(None, "--crm", help="salesforce or hubspot (default: all)."),
    push: bool = typer.Option(
        False,
        "--push",
        help="Then push each CRM whose pull succeeded (as `crmsync push --crm X`).",
    ),
) -> None:
    """One incremental pass over every object of the configured CRMs (and with --push, the
    push of CS changes after it)."""
    _run(SyncKind.PULL, _crms(crm), None, None, push=push)


@sync_app.command("backfill")
def backfill(
    crm: str = typer.Option(..., "--crm", help="salesforce or hubspot."),
    object_name: list[str] = typer.Option(
        None, "--object", help="Object(s) to backfill (default: all mapped objects)."
    ),
    since: str = typer.Option(None, "--since", help="Only records modified since this date."),
    restart: bool = typer.Option(
        False, "--restart", help="Begin a new backfill even if one is unfinished."
    ),
    allow_over_budget: bool = typer.Option(
        False,
        "--allow-over-budget",
        help="Start even if the estimate exceeds crmsync's share of the API budget.",
    ),
    partitions: int = typer.Option(
        1,
        "--partitions",
        min=1,
        max=MAX_PARTITIONS,
        help="Split each object's backfill into up to N stamp ranges and queue them for "
        "`crmsync worker` processes to run at once (docs/jobs.md); 1: run here, now.",
    ),
) -> None:
    """Pull everything (or everything since --since).

    An interrupted backfill is resumed: objects it finished are skipped, the one it was in goes
    on from its last committed page. Once complete, running it again begins a new one. With a
    budget share set (docs/budget.md) it first estimates its API calls and refuses (exit 2)
    when they exceed the share left, unless --allow-over-budget.

    With --partitions N (N > 1) nothing runs here: one partitioned backfill per object is
    queued for the workers and its run id printed (watch it with `crmsync runs show ID`). One
    whose last partitioned backfill failed resumes it (only the partitions not done, each from
    its checkpoint) unless --restart.
    """
    crms, since_at = _crms([crm]), _parse_since(since)
    if partitions > 1:
        _queue_partitioned(
            crm, object_name or None, since_at, partitions, allow_over_budget, restart
        )
        return
    _run(
        SyncKind.BACKFILL,
        crms,
        object_name or None,
        since_at,
        restart,
        budget_check=not allow_over_budget,
    )


def _queue_partitioned(
    crm: str,
    objects: list[str] | None,
    since: datetime | None,
    partitions: int,
    allow_over_budget: bool,
    restart: bool = False,
) -> None:
    """Queue one partitioned backfill per object (as ``POST /api/v1/sync/runs`` does) and print
    the run ids as JSON; a worker splits each into its partitions."""
    from app.cli.output import cli_actor
    from app.db import job_store
    from app.db.audit import record_audit
    from app.db.engine import make_session_factory
    from app.jobs.tasks import JobQueue
    from app.wiring.sync import plan_sync

    settings = load_settings()
    try:
        plans = plan_sync(settings, [_crms([crm])[0]], objects)  # type: ignore[index]
    except ConfigError as exc:
        console.print(f"crmsync: {exc}")
        raise typer.Exit(code=ExitCode.USAGE) from None
    engine = open_database(settings, migrated=True)
    params: dict[str, Any] = {"partitions": partitions}
    if since is not None:
        params["since"] = since.isoformat()
    if allow_over_budget:
        params["allow_over_budget"] = True
    if restart:  # plan anew instead of resuming an unfinished one (docs/jobs.md)
        params["restart"] = True
    factory = make_session_factory(engine)
    queued: list[dict[str, Any]] = []
    try:
        with factory() as session:
            for object_name in plans[0].objects:
                run_id, _ = job_store.queue_run(
                    session,
                    kind=str(SyncKind.BACKFILL),
                    crm=crm,
                    object_name=object_name,
                    triggered_by="cli",
                    params=params,
                )
                record_audit(
                    session,
                    cli_actor(),
                    "sync_run.trigger",
                    f"sync_run:{run_id}",
                    {"kind": "backfill", "crm": crm, "object": object_name, "params": params},
                )
                queued.append({"run_id": run_id, "crm": crm, "object": object_name})
            session.commit()
        enqueued = True
        jobs = JobQueue(settings, session_factory=factory, periodic=False)
        try:
            for row in queued:
                jobs.enqueue_run(int(row["run_id"]))
        except Exception as exc:  # the broker is down: the sweeper enqueues the queued rows
            console.print(
                f"crmsync: the job broker could not be reached ({exc}); the sweeper "
                "will enqueue the runs"
            )
            enqueued = False
        finally:
            jobs.close()
    finally:
        engine.dispose()
    print(
        json.dumps(
            {
                "status": "queued",
                "partitions": partitions,
                "enqueued": enqueued,
                "runs": queued,
            }
        )
    )


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
            raise typer.Exit(code=ExitCode.USAGE)
    return chosen
