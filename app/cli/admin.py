"""The admin commands, twins of the admin API for those who live in a terminal:
``crmsync runs list|show``, ``crmsync errors list|retry|resolve``, ``crmsync inbox list|replay``
and ``crmsync status``.

They work on the database directly, with the same functions as the routes (no HTTP, no key:
whoever runs commands on the server holds its database), and print a rich table on a terminal,
JSON with ``--json`` or when stdout is not a terminal. Writes are audited as ``cli:<login>``.
Exit codes: 0 done; 1 a retry failed (the CRM failed, or a pass holds the object's lease);
2 bad input (an unknown id or filter value); 3 a retried record failed again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from app.cli.common import ExitCode, load_settings, open_database
from app.cli.output import JSON_OPTION, cli_actor, print_json, print_table, stdout, wants_json
from app.core.runs import RunStatus, SyncKind
from app.db.enums import STATUS_FILTERS

# The database layer and the wiring load inside the commands that use them: `crmsync --help`
# and the other commands do not pay for them (tests/unit/test_cli_lazy_imports.py).
if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from app.settings import Settings
    from app.wiring.error_retry import RetryReport

runs_app = typer.Typer(help="Sync runs: list them, show one with its progress.")
errors_app = typer.Typer(help="Records that failed to sync: list, retry, resolve.")
inbox_app = typer.Typer(help="The webhook inbox: list events by status, replay one.")

CRMS = ("salesforce", "hubspot", "cs")


def _fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    typer.echo(f"crmsync: {message}", err=True)
    return typer.Exit(code=code)


def _choice(option: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise _fail(f"{option} {value!r}: expected one of {', '.join(allowed)}")


def _database() -> tuple[Settings, sessionmaker[Session], Any]:
    from app.db.engine import make_session_factory

    settings = load_settings()
    engine = open_database(settings, migrated=True)
    return settings, make_session_factory(engine), engine


def _bool(option: str, value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise _fail(f"{option} {value!r}: expected true or false")


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------


def _rate(row: dict[str, Any]) -> Any:
    rate = row["progress"]["records_per_second"]
    return f"{rate}/s" if rate is not None else None


def _eta(row: dict[str, Any]) -> Any:
    eta = row["progress"]["eta_seconds"]
    return f"{eta:.0f} s" if eta is not None else None


@runs_app.command("list")
def runs_list(
    crm: str = typer.Option(None, "--crm", help="salesforce, hubspot or cs."),
    object_name: str = typer.Option(None, "--object", help="e.g. Account, companies."),
    kind: str = typer.Option(None, "--kind", help=", ".join(k.value for k in SyncKind)),
    status: str = typer.Option(None, "--status", help=", ".join(s.value for s in RunStatus)),
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="Runs to show."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The latest sync runs, newest first."""
    from app.db.run_views import RunFilters, list_runs, run_dict

    _choice("--crm", crm, CRMS)
    _choice("--kind", kind, tuple(k.value for k in SyncKind))
    _choice("--status", status, tuple(s.value for s in RunStatus))
    _settings, factory, engine = _database()
    try:
        with factory() as session:
            filters = RunFilters(crm=crm, object=object_name, kind=kind, status=status)
            rows = [run_dict(r) for r in list_runs(session, filters, limit=limit)]
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json({"runs": rows})
        return
    print_table(
        "sync runs",
        rows,
        [
            "id",
            "kind",
            "crm",
            "object",
            "status",
            "started_at",
            ("read", lambda r: r["counts"]["read"]),
            ("failed", lambda r: r["counts"]["failed"]),
            "api_calls",
            ("rate", _rate),
            ("ETA", _eta),
        ],
        empty="no sync runs match",
    )


@runs_app.command("show")
def runs_show(
    run_id: int = typer.Argument(..., help="The run's id (crmsync runs list)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """One run: live counts, API calls, rate, ETA, cursors and open errors."""
    from app.db.models import SyncRun
    from app.db.run_views import run_detail

    _settings, factory, engine = _database()
    try:
        with factory() as session:
            run = session.get(SyncRun, run_id)
            if run is None:
                raise _fail(f"no sync run with id {run_id}")
            detail = run_detail(session, run)
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json(detail)
        return
    progress = detail["progress"]
    lines = [
        f"run {detail['id']}: {detail['kind']} {detail['crm']} {detail['object']} "
        f"[{detail['status']}] by {detail['triggered_by'] or '-'}",
        f"started {detail['started_at']}, finished {detail['finished_at'] or '-'}",
        "counts: " + ", ".join(f"{k} {v}" for k, v in detail["counts"].items()),
        f"API calls {detail['api_calls']}; {progress['records_per_second'] or '-'} records/s; "
        f"expected {progress['expected'] if progress['expected'] is not None else '?'}; "
        f"ETA {progress['eta_seconds'] if progress['eta_seconds'] is not None else '-'} s",
        f"open errors {detail['open_errors']}",
    ]
    if detail["error"]:
        lines.append(f"error: {detail['error']}")
    for line in lines:
        stdout.print(line, markup=False, highlight=False)


@runs_app.command("cancel")
def runs_cancel(
    run_id: int = typer.Argument(..., help="The run's id (crmsync runs list)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Cancel a run: a queued one at once, a running one after its current page (its cursor
    stays at that page). Exit 2 for an unknown or finished run."""
    from app.db.audit import record_audit
    from app.db.models import SyncRun
    from app.db.runs import request_cancel

    _settings, factory, engine = _database()
    try:
        with factory() as session:
            was = session.get(SyncRun, run_id)
            if was is None:
                raise _fail(f"no sync run with id {run_id}")
            if was.status not in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLING):
                raise _fail(f"run {run_id} already finished ({was.status})")
            status = request_cancel(session, run_id)
            record_audit(
                session, cli_actor(), "sync_run.cancel", f"sync_run:{run_id}", {"status": status}
            )
            session.commit()
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json({"run_id": run_id, "status": status})
        return
    stdout.print(f"run {run_id}: {status}", markup=False, highlight=False)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@errors_app.command("list")
def errors_list(
    crm: str = typer.Option(None, "--crm", help="salesforce, hubspot or cs."),
    object_name: str = typer.Option(None, "--object", help="e.g. Account, companies."),
    category: str = typer.Option(None, "--category", help="e.g. invalid_field, transient."),
    retriable: str = typer.Option(None, "--retriable", help="true or false."),
    resolved: str = typer.Option(
        "false", "--resolved", help="false (default: open ones), true, or all."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="Errors to show."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Failed records, newest first, with their payload (in --json)."""
    from app.db.error_views import ErrorFilters, error_dict, list_errors

    _choice("--crm", crm, CRMS)
    filters = ErrorFilters(
        crm=crm,
        object=object_name,
        category=category,
        retriable=_bool("--retriable", retriable),
        resolved=None if resolved == "all" else _bool("--resolved", resolved),
    )
    _settings, factory, engine = _database()
    try:
        with factory() as session:
            rows = [error_dict(r) for r in list_errors(session, filters, limit=limit)]
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json({"errors": rows})
        return
    print_table(
        "sync errors",
        rows,
        [
            "id",
            "crm",
            "object",
            "record_id",
            "category",
            "retriable",
            "attempts",
            "last_seen_at",
            ("message", lambda r: (r["message"] or "")[:120]),
            "resolution",
        ],
        empty="no sync errors match",
    )


def _report(report: RetryReport, as_json: bool) -> None:
    if wants_json(as_json):
        print_json(report.as_dict())
    elif not report.outcomes:
        stdout.print("nothing to retry")
    else:
        print_table(
            "retried",
            [o.as_dict() for o in report.outcomes],
            ["error_id", "outcome", "run_id", "message"],
            empty="nothing to retry",
        )
    outcomes = {o.outcome for o in report.outcomes}
    if outcomes & {"busy", "crm_failed"}:
        raise typer.Exit(code=ExitCode.FAILED)
    if "failed_again" in outcomes:
        raise typer.Exit(code=ExitCode.PARTIAL)
    if outcomes == {"not_retriable"}:
        raise typer.Exit(code=ExitCode.USAGE)


@errors_app.command("retry")
def errors_retry(
    error_id: int | None = typer.Argument(None, help="One error's id; without it, use --all."),
    all_: bool = typer.Option(False, "--all", help="Every open retriable error matching."),
    crm: str = typer.Option(None, "--crm", help="With --all: salesforce or hubspot."),
    object_name: str = typer.Option(None, "--object", help="With --all: e.g. Account."),
    category: str = typer.Option(None, "--category", help="With --all: e.g. transient."),
    limit: int = typer.Option(500, "--limit", min=1, max=5000, help="With --all: at most."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Read the failed record(s) from the CRM again and sync them."""
    from app.db.error_views import ErrorFilters, ErrorNotFound, get_error
    from app.wiring.error_retry import retriable_error_ids, retry_errors

    if (error_id is None) == (not all_):
        raise _fail("give an error id, or --all (with --crm/--object/--category)")
    if error_id is not None and (crm or object_name or category):
        raise _fail("--crm, --object and --category filter --all; an error id needs none")
    _choice("--crm", crm, CRMS)
    settings, factory, engine = _database()
    try:
        if error_id is not None:
            with factory() as session:
                try:
                    get_error(session, error_id)
                except ErrorNotFound as exc:
                    raise _fail(str(exc)) from None
            report = retry_errors(settings, factory, [error_id], actor=cli_actor())
        else:
            filters = ErrorFilters(crm=crm, object=object_name, category=category)
            with factory() as session:
                ids = retriable_error_ids(session, filters, limit)
            report = retry_errors(
                settings,
                factory,
                ids,
                actor=cli_actor(),
                action="sync_error.retry_all",
                target="sync_errors",
                audit_detail={"filters": {**filters.as_dict(), "limit": limit}},
            )
    finally:
        engine.dispose()
    _report(report, as_json)


@errors_app.command("resolve")
def errors_resolve(
    error_id: int = typer.Argument(..., help="The error's id."),
    comment: str = typer.Option(..., "--comment", help="Why it needs no retry."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Mark an error resolved by hand, with a comment (audited)."""
    from app.db.error_views import AlreadyResolved, ErrorNotFound, error_dict, resolve_error

    if not comment.strip():
        raise _fail("--comment: say why the error is resolved")
    _settings, factory, engine = _database()
    try:
        with factory() as session:
            try:
                row = resolve_error(session, error_id, actor=cli_actor(), comment=comment.strip())
            except (ErrorNotFound, AlreadyResolved) as exc:
                raise _fail(str(exc)) from None
            out = error_dict(row, payload=False)
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json(out)
        return
    stdout.print(f"sync error {out['id']} resolved by {out['resolved_by']}", markup=False)


# --------------------------------------------------------------------------------------------
# inbox
# --------------------------------------------------------------------------------------------


@inbox_app.command("list")
def inbox_list(
    status: str = typer.Option(None, "--status", help=", ".join(STATUS_FILTERS)),
    source: str = typer.Option(None, "--source", help="e.g. hubspot, salesforce."),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="Events to show."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Webhook events, newest first (bodies in --json)."""
    from app.db.inbox_admin import event_dict, list_inbox

    _choice("--status", status, STATUS_FILTERS)
    _settings, factory, engine = _database()
    try:
        with factory() as session:
            rows = [
                event_dict(e)
                for e in list_inbox(session, status=status, source=source, limit=limit)
            ]
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json({"events": rows})
        return
    print_table(
        "webhook inbox",
        rows,
        [
            "id",
            "source",
            "event_type",
            "object_id",
            "status",
            "attempts",
            "received_at",
            ("outcome / last error", lambda r: (r["last_error"] or r["outcome"] or "")[:100]),
        ],
        empty="no webhook events match",
    )


@inbox_app.command("replay")
def inbox_replay(
    event_id: int = typer.Argument(..., help="The event's id (crmsync inbox list)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Put a dead (or done) event back in the queue; the webhook worker's sweep processes it."""
    from app.db.inbox_admin import (
        EventNotFound,
        NotReplayable,
        event_dict,
        get_event,
        replay_event,
    )
    from app.wiring.inbox_replay import hand_over

    _settings, factory, engine = _database()
    try:
        with factory() as session:
            try:
                replay_event(session, event_id, actor=cli_actor())
            except (EventNotFound, NotReplayable) as exc:
                raise _fail(str(exc)) from None
        processing = hand_over(None, event_id)  # the worker's sweep processes it
        with factory() as session:
            out = {**event_dict(get_event(session, event_id), body=False), "processing": processing}
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json(out)
    else:
        stdout.print(
            f"webhook event {event_id} replayed: {out['status']} ({processing})", markup=False
        )


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def status(as_json: bool = JSON_OPTION) -> None:
    """Per CRM and object: last successful run, lag, records, open errors; the inbox."""
    from app.wiring.admin_status import status as build_status

    settings, factory, engine = _database()
    try:
        with factory() as session:
            data = build_status(settings, session, queue=_queue_state(settings))
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json(data)
        return

    def last_ok(row: dict[str, Any]) -> Any:
        run = row["last_successful_run"]
        return f"{run['finished_at'][:19].replace('T', ' ')} ({run['kind']})" if run else None

    def lag(row: dict[str, Any]) -> Any:
        seconds = row["lag_seconds"]
        if seconds is None:
            return None
        return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"

    print_table(
        "status",
        data["objects"],
        [
            "crm",
            "object",
            ("last successful run", last_ok),
            ("running", lambda r: r["running_run_id"]),
            ("lag", lag),
            "records",
            "open_errors",
            ("retriable", lambda r: r["open_retriable_errors"]),
        ],
        empty="no CRM configured and no runs yet",
    )
    inbox = ", ".join(f"{k} {v}" for k, v in data["inbox"].items() if v)
    stdout.print(f"webhook inbox: {inbox or 'empty'}", markup=False)
    for crm, budget in data["budget"].items():
        if budget["allowed"] is None:
            line = f"{budget['used_24h']} calls in 24 h, no daily limit known"
        else:
            line = (
                f"{budget['used_24h']} of {budget['allowed']} calls in 24 h, {budget['left']} left"
            )
        stdout.print(f"API budget {crm}: {line}", markup=False)
    queue = data["queue"]
    if queue is not None:
        state = f"{queue['queued_messages']} waiting" if queue["ok"] else "not reachable"
        stdout.print(f"job queue ({queue['kind']}): {state}", markup=False)


def _queue_state(settings: Settings) -> dict[str, Any]:
    """The broker's answer for ``crmsync status``; building a queue touches no message."""
    from app.jobs.queue import broker_status, build_huey

    return broker_status(build_huey(settings), settings)
