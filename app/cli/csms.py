"""``crmsync csms import FILE`` and ``crmsync csms list``: the CSM roster (domain.md 8).

The CSV file has a header row naming its columns: ``name`` and ``email`` are required; ``tiers``
(``key;high``), ``capacity_units``, ``region``, ``language``, ``is_pool``, ``active``
(true/false, yes/no, 1/0), ``out_of_office_until`` (YYYY-MM-DD), ``sf_user_id`` and
``hs_owner_id`` are optional. Rows are matched by e-mail (case-insensitive): an existing CSM is
updated, a new one created; a column the file leaves out, or an empty cell, keeps the stored
value. Importing the same file twice changes nothing.

All or nothing: the whole file is checked first, each problem printed as ``FILE:LINE: column:
message``, and nothing is written when there is one. Exit codes (the README's): 0 imported;
1 the database failed; 2 bad input (an unreadable file, a bad row) or configuration.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from pathlib import Path

import typer

from app.cli.common import ExitCode, load_settings, open_database

csms_app = typer.Typer(help="The CSM roster (domain.md 8).", no_args_is_help=True)

#: At most this many row errors are printed; the rest are counted.
MAX_ERRORS_SHOWN = 20


def _fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    print(f"crmsync: {message}", file=sys.stderr)
    return typer.Exit(code=code)


def _read(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise _fail(f"{path}: no such file") from None
    except IsADirectoryError:
        raise _fail(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError:
        raise _fail(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise _fail(f"{path}: cannot read: {exc.strerror}") from None
    try:
        sample = text[:4096]
        dialect: type[csv.Dialect] | csv.Dialect = (
            csv.Sniffer().sniff(sample, delimiters=",;\t") if sample.strip() else csv.excel
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(), dialect)
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    try:
        for cells in reader:
            if header is None:
                if any(c.strip() for c in cells):
                    header = cells
                continue
            rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise _fail(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None
    if header is None:
        raise _fail(f"{path}: empty file; the first row must name the columns (name,email,...)")
    return header, rows


@csms_app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="CSV file with a header row (name,email,tiers,...)."),
) -> None:
    """Create or update CSMs from a CSV file, matched by e-mail; all or nothing."""
    # The database layer loads with the command, not with the CLI.
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.csm_store import import_csms, parse_csm_rows
    from app.db.engine import make_session_factory

    header, rows = _read(file)
    parsed, errors = parse_csm_rows(header, rows)
    settings = load_settings()
    if not errors:
        engine = open_database(settings, migrated=True)
        try:
            with make_session_factory(engine)() as session, session.begin():
                result = import_csms(session, parsed, settings.scoring.config)
                errors = list(result.errors)
                if errors:
                    session.rollback()
        except SQLAlchemyError as exc:
            raise _fail(
                f"the database failed: {exc.__class__.__name__}: {exc}", ExitCode.FAILED
            ) from None
        finally:
            engine.dispose()
    if errors:
        for error in errors[:MAX_ERRORS_SHOWN]:
            print(f"crmsync: {error.text(str(file))}", file=sys.stderr)
        if len(errors) > MAX_ERRORS_SHOWN:
            print(f"crmsync: ... and {len(errors) - MAX_ERRORS_SHOWN} more", file=sys.stderr)
        print(f"crmsync: nothing imported ({len(errors)} problem(s) in {file})", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE)
    summary = {
        "file": str(file),
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "reassigned_accounts": len(result.reassigned_account_ids),
    }
    if result.reassigned_account_ids:
        # 8.3 step 7: the new CSMs to the CRM now (best effort; stamped, so a push sends them)
        from app.wiring.account_writeback import push_accounts

        engine = open_database(settings, migrated=True)
        try:
            push_accounts(settings, make_session_factory(engine), result.reassigned_account_ids)
        finally:
            engine.dispose()
    typer.echo(json.dumps(summary))
    raise typer.Exit(code=ExitCode.OK)


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


@csms_app.command("list")
def list_command() -> None:
    """Print every CSM as one JSON document per line."""
    from sqlalchemy import select

    from app.db.csm_store import csm_dict
    from app.db.engine import make_session_factory
    from app.db.models import Csm

    settings = load_settings()
    engine = open_database(settings, migrated=True)
    try:
        with make_session_factory(engine)() as session:
            for csm in session.scalars(select(Csm).order_by(Csm.id)):
                typer.echo(json.dumps(csm_dict(csm), default=_iso))
    finally:
        engine.dispose()
