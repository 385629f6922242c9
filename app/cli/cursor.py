"""``crmsync sync cursor show|reset``: see where each stream of a CRM object stands, and repair it.

``show`` lists the stored cursors (watermark stamp and id, state, last update): a table on a
terminal, JSON otherwise. ``reset`` clears a stream (its next pass reads everything) or, with
``--to``, sets its watermark to a moment that is not in the future. It takes the stream's sync
lease for the change (``sync:<crm>:<object>``; a partition's checkpoint ``backfill:p<i>`` of a
partitioned backfill, ADR 0008, is held by that partition's own lease ``sync:<crm>:<object>:p<i>``),
so it refuses (exit 1) while a pass on it is running, and prints what it changed. Only the
objects named on the command line are touched.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from app.cli.common import ExitCode, console, load_settings
from app.cli.dates import parse_past_instant
from app.crm.base import CrmName
from app.errors import ConfigError
from app.sync.partitions import MAX_PARTITIONS, STREAM_PREFIX, stream_index

# The database layer, the mapping files' loader, the cursor state and rich's table load inside
# the commands: the CLI's start-up (every command's, `sync cursor` being a sub-command of `sync`)
# does not pay for them.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from app.db.models import SyncCursor
    from app.settings import Settings
    from app.sync.cursor import CursorState

cursor_app = typer.Typer(help="Show and repair sync cursors (where each object's streams stand).")

STREAMS = ("changes", "backfill")
#: What ``--stream`` accepts, for messages.
STREAM_CHOICES = f"changes, backfill or {STREAM_PREFIX}<0..{MAX_PARTITIONS - 1}>"
# A reset holds the object's lease for milliseconds; a short expiry if it dies meanwhile.
RESET_LEASE_TTL = timedelta(minutes=1)


def _crm(value: str) -> CrmName:
    if value == "salesforce":
        return "salesforce"
    if value == "hubspot":
        return "hubspot"
    console.print(f"crmsync: --crm {value!r}: expected salesforce or hubspot")
    raise typer.Exit(code=ExitCode.USAGE)


def _check_objects(settings: Settings, crm: CrmName, objects: list[str]) -> None:
    from app.mappers.config import load_mapping_set

    try:
        known = load_mapping_set(
            crm, settings.mapping_file, default_currency=settings.default_currency
        ).object_names
    except ConfigError as exc:
        console.print(f"crmsync: {exc}")
        raise typer.Exit(code=ExitCode.USAGE) from None
    unknown = [o for o in objects if o not in known]
    if unknown:
        console.print(
            f"crmsync: unknown {crm} object(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
        raise typer.Exit(code=ExitCode.USAGE)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return aware.astimezone(UTC).isoformat()


def _as_dict(row: SyncCursor) -> dict[str, Any]:
    return {
        "crm": row.crm,
        "object": row.object,
        "stream": row.stream,
        "watermark_at": _iso(row.watermark_at),
        "watermark_id": row.watermark_id,
        "state": dict(row.state or {}),
        "updated_at": _iso(row.updated_at),
    }


def _is_backfill(stream: str) -> bool:
    """A backfill's checkpoint: the object's own, or one partition's (``backfill:p<i>``)."""
    return stream == "backfill" or stream_index(stream) is not None


def _lease(crm: str, object_name: str, stream: str) -> str:
    """The lease a pass writing ``stream`` holds: a partition's own, else the object's."""
    index = stream_index(stream)
    base = f"sync:{crm}:{object_name}"
    return base if index is None else f"{base}:p{index}"


def _state_text(stream: str, state: CursorState) -> str:
    """A few words for the table; the JSON output has the whole state."""
    parts: list[str] = []
    if state.in_progress:
        parts.append("in progress")
    elif _is_backfill(stream) and state.completed_at is not None:
        parts.append("complete")
    from app.sync import backfill as backfills

    generation = backfills.read_generation(state) if _is_backfill(stream) else None
    if generation is not None:
        since = _iso(generation.since)
        parts.append(f"since {since[:10]}" if since else "everything")
    if state.resume:
        parts.append("resumable")
    return ", ".join(parts)


def _short(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


@cursor_app.command("show")
def show(
    crm: str = typer.Option(None, "--crm", help="salesforce or hubspot (default: all)."),
    object_name: list[str] = typer.Option(
        None, "--object", help="Object(s) to show (default: all)."
    ),
) -> None:
    """Show each stream's cursor: watermark (stamp, id), state and when it last moved."""
    from app.db import cursors
    from app.db.engine import make_engine, make_session_factory

    settings = load_settings()
    chosen = _crm(crm) if crm else None
    if chosen is not None and object_name:
        _check_objects(settings, chosen, object_name)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            stored = cursors.list_cursors(session, chosen, object_name)
            rows = [(_as_dict(c), cursors.row_cursor(c)) for c in stored]
    finally:
        engine.dispose()
    if not sys.stdout.isatty():
        typer.echo(json.dumps({"cursors": [r for r, _ in rows]}, indent=2))
        return
    from rich.table import Table

    table = Table(title="sync cursors")
    for column in ("crm", "object", "stream", "watermark (UTC)", "id", "state", "updated"):
        table.add_column(column, overflow="fold")
    for r, state in rows:
        table.add_row(
            r["crm"],
            r["object"],
            r["stream"],
            _short(r["watermark_at"]),
            r["watermark_id"] or "-",
            _state_text(r["stream"], state),
            _short(r["updated_at"]),
        )
    console.print(table if rows else "no cursors stored: the next pass reads everything")


@cursor_app.command("reset")
def reset(
    crm: str = typer.Option(..., "--crm", help="salesforce or hubspot."),
    object_name: list[str] = typer.Option(..., "--object", help="Object(s) to reset."),
    to: str = typer.Option(
        None, "--to", help="Set the watermark to this date (default: clear, read everything)."
    ),
    stream: str = typer.Option(
        "changes",
        "--stream",
        help="changes (incremental passes), backfill, or backfill:p<i> (partition i's "
        "checkpoint of a partitioned backfill).",
    ),
) -> None:
    """Clear a stream's cursor, or set its watermark with --to; refused while a pass runs."""
    from app.db.engine import make_engine, make_session_factory

    chosen = _crm(crm)
    if stream not in STREAMS and stream_index(stream) is None:
        console.print(f"crmsync: --stream {stream!r}: expected {STREAM_CHOICES}")
        raise typer.Exit(code=ExitCode.USAGE)
    when = parse_past_instant(to, "--to") if to is not None else None
    if when is not None and _is_backfill(stream):
        console.print(
            "crmsync: --to applies to --stream changes only; clear a backfill stream "
            "without it, or run `crmsync sync backfill --restart`"
        )
        raise typer.Exit(code=ExitCode.USAGE)
    settings = load_settings()
    _check_objects(settings, chosen, object_name)
    objects = list(dict.fromkeys(object_name))
    engine = make_engine(settings.database_url)
    try:
        changes = _reset(make_session_factory(engine), chosen, objects, stream, when)
    finally:
        engine.dispose()
    for change in changes:
        console.print(_change_text(change))
    if not sys.stdout.isatty():
        typer.echo(json.dumps({"reset": changes}, indent=2))


def _reset(
    factory: sessionmaker[Session],
    crm: str,
    objects: list[str],
    stream: str,
    when: datetime | None,
) -> list[dict[str, Any]]:
    """Hold the lease of every object's stream, change the cursors in one transaction, release
    the leases."""
    from app.db import leases

    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    held: list[str] = []
    try:
        for object_name in objects:
            name = _lease(crm, object_name, stream)
            with factory() as session:
                try:
                    leases.acquire(session, name, holder, datetime.now(UTC), RESET_LEASE_TTL)
                except leases.LeaseHeld as exc:
                    console.print(
                        f"crmsync: not reset: a sync pass is running ({exc}); nothing was "
                        "changed. Run the reset again once it has finished."
                    )
                    raise typer.Exit(code=ExitCode.FAILED) from None
            held.append(name)
        with factory() as session, session.begin():
            return [_reset_one(session, crm, o, stream, when) for o in objects]
    finally:
        for name in held:
            with factory() as session:
                leases.release(session, name, holder)


def _reset_one(
    session: Session, crm: str, object_name: str, stream: str, when: datetime | None
) -> dict[str, Any]:
    from app.db import cursors
    from app.sync.cursor import CursorState

    rows = cursors.list_cursors(session, crm, [object_name])
    before = next((_as_dict(r) for r in rows if r.stream == stream), None)
    after: dict[str, Any] | None = None
    if when is None:
        cursors.delete_cursor(session, crm, object_name, stream)
    else:
        mark = CursorState(at=when)
        cursors.save_cursor(session, crm, object_name, stream, mark)
        after = {
            "watermark_at": _iso(when),
            "watermark_id": None,
            "state": cursors.state_column(mark),
        }
    return {"crm": crm, "object": object_name, "stream": stream, "before": before, "after": after}


def _change_text(change: dict[str, Any]) -> str:
    label = f"{change['crm']} {change['object']} {change['stream']}"
    before, after = change["before"], change["after"]
    was = f"{_short(before['watermark_at'])} (id {before['watermark_id'] or '-'})" if before else ""
    if after is None:
        if before is None:
            return f"{label}: no cursor stored, nothing to clear (the next pass reads everything)"
        return f"{label}: {was} -> cleared: the next pass reads everything"
    return f"{label}: {was or 'no cursor'} -> {_short(after['watermark_at'])} UTC: read from there"
