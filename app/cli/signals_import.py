"""``crmsync signals import FILE --kind KIND``: signals from a CSV file (issue #18 item 1).

The same validation and storage as ``POST /api/v1/signals/{kind}``
(:func:`app.db.signal_store.ingest`): the header names the columns of the kind
(docs/signals.md), an empty cell is a value not given, and the file is stored in batches of
10,000 rows, each committed on its own. A bad row is reported with its line number and field
and the others are stored; a file sent again is stored once (idempotent), so an interrupted
import is finished by running it again.

(Not :mod:`app.cli.signals`: that module handles SIGINT/SIGTERM.)

Output: the refused rows on stderr (``line 7: priority: Input should be ...``, the first
:data:`MAX_SHOWN`), one JSON summary on stdout. Exit codes: 0 every row stored; 2 the file cannot
be read, or its header lacks a column every row needs or names one the kind does not have
(nothing stored); 3 some rows refused (the others stored); 1 interrupted, or the database failed.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import typer

from app.cli.common import ExitCode, load_settings, open_database
from app.cli.signals import interrupts_raised

# The row models (pydantic classes, a tenth of a second to build) and the database layer load
# when a file is imported, not whenever the CLI starts.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from app.db.signal_store import IngestResult
    from app.domain.signal_rows import RowError

#: The kinds of :data:`app.domain.signal_rows.KINDS`, in its order, written out so that the
#: command's help does not build the row models; tests/unit/test_cli_lazy_imports.py keeps the
#: two the same.
KINDS: tuple[str, ...] = (
    "usage",
    "tickets",
    "nps",
    "surveys",
    "touchpoints",
    "invoices",
    "success_criteria",
)

#: Refused rows printed; the summary counts them all.
MAX_SHOWN = 50

signals_app = typer.Typer(
    help="Signals from the usage feed, helpdesk, survey tool and billing (docs/signals.md).",
    no_args_is_help=True,
)


class HeaderError(ValueError):
    """The CSV header cannot carry this kind's rows."""


def check_header(kind: str, header: list[str] | None) -> list[str]:
    """The header's column names, or :class:`HeaderError` naming what is wrong."""
    from app.domain.signal_rows import ACCOUNT_FIELDS, ROW_MODELS

    if not header:
        raise HeaderError("the file is empty: the first line must name the columns")
    names = [h.strip() for h in header]
    model = ROW_MODELS[kind]
    unknown = [n for n in names if n not in model.model_fields]
    if unknown:
        raise HeaderError(
            f"column {unknown[0]!r} is not a {kind} column "
            f"(they are: {', '.join(model.model_fields)})"
        )
    required = [n for n, f in model.model_fields.items() if f.is_required() and n not in names]
    if required:
        raise HeaderError(f"column {required[0]!r} is missing: every {kind} row needs it")
    if not any(n in names for n in ACCOUNT_FIELDS):
        raise HeaderError(f"no account column: give one of {', '.join(ACCOUNT_FIELDS)}")
    if len(set(names)) != len(names):
        raise HeaderError("a column is named twice")
    return names


def read_batches(
    reader: Any, names: list[str], size: int | None = None
) -> Iterator[tuple[list[dict[str, str]], list[int]]]:
    """Rows (empty cells left out) with their line numbers, ``size`` (default
    :data:`~app.domain.signal_rows.MAX_BATCH`) at a time."""
    if size is None:
        from app.domain.signal_rows import MAX_BATCH

        size = MAX_BATCH
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue  # a blank line
        row = {n: c for n, c in zip(names, cells, strict=False) if c.strip() != ""}
        if len(cells) > len(names):
            row["(extra cell)"] = cells[len(names)]
        rows.append(row)
        lines.append(reader.line_num)
        if len(rows) == size:
            yield rows, lines
            rows, lines = [], []
    if rows:
        yield rows, lines


def _line(error: RowError) -> str:
    where = f"line {error.line}" if error.line is not None else f"row {error.index}"
    field = f"{error.field}: " if error.field else ""
    shown = f" (got {error.input!r})" if error.input is not None else ""
    return f"{where}: {field}{error.message}{shown}"


@dataclass
class ImportOutcome:
    """A whole file: the totals over its batches and every refused row (with its line)."""

    kind: str
    rows: int = 0
    stored: int = 0
    created: int = 0
    updated: int = 0
    accounts: int = 0
    errors: list[RowError] = field(default_factory=list)

    def add(self, done: IngestResult) -> None:
        self.rows += done.received
        self.stored += len(done.stored)
        self.created += done.created
        self.updated += done.updated
        self.accounts += done.accounts
        self.errors.extend(done.errors)

    def summary(self, file: Path) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": str(file),
            "rows": self.rows,
            "stored": self.stored,
            "created": self.created,
            "updated": self.updated,
            "rejected": len({e.line for e in self.errors}),
            "accounts": self.accounts,
        }


def ingest(
    factory: sessionmaker[Session],
    kind: str,
    raw_rows: Sequence[Any],
    *,
    lines: Sequence[int] | None = None,
) -> IngestResult:
    """:func:`app.db.signal_store.ingest`, imported on first use (a module attribute, so that a
    test can wrap it)."""
    from app.db.signal_store import ingest as store_ingest

    return store_ingest(factory, kind, raw_rows, lines=lines)


def import_csv(
    factory: sessionmaker[Session],
    handle: TextIO,
    kind: str,
    outcome: ImportOutcome,
    on_error: Callable[[RowError], None] | None = None,
) -> ImportOutcome:
    """Store the rows of an open CSV file of ``kind`` into ``outcome`` (batch by batch, each
    committed); :class:`HeaderError` before anything is stored when the header cannot work.
    Also what ``crmsync demo`` calls (with its own database, never the settings')."""
    reader = csv.reader(handle)
    names = check_header(kind, next(reader, None))
    for rows, lines in read_batches(reader, names):
        done = ingest(factory, kind, rows, lines=lines)
        if on_error is not None:
            for error in done.errors:
                on_error(error)
        outcome.add(done)
    return outcome


@signals_app.command("import")
def import_file(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="CSV file, UTF-8, a header line naming the columns."
    ),
    kind: str = typer.Option(..., "--kind", help=f"What the rows are: {', '.join(KINDS)}."),
) -> None:
    """Store the rows of a CSV file of one kind of signal; errors carry line numbers."""
    kind_name = kind.strip().lower()
    if kind_name not in KINDS:
        print(
            f"crmsync signals import: --kind {kind!r}: not a kind of signal; "
            f"one of {', '.join(KINDS)}",
            file=sys.stderr,
        )
        raise typer.Exit(code=ExitCode.USAGE)
    try:
        handle = file.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        print(f"crmsync signals import: cannot read {file}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE) from None
    from app.db.engine import make_session_factory

    settings = load_settings()
    engine = open_database(settings, migrated=True)
    factory = make_session_factory(engine)
    outcome = ImportOutcome(kind_name)
    shown = 0

    def show(error: RowError) -> None:
        nonlocal shown
        if shown < MAX_SHOWN:
            print(_line(error), file=sys.stderr)
        shown += 1

    interrupted = False
    try:
        with handle, interrupts_raised():
            import_csv(factory, handle, kind_name, outcome, show)
    except HeaderError as exc:
        print(f"crmsync signals import: {file}: {exc}", file=sys.stderr)
        print("crmsync signals import: nothing was stored", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        print(f"crmsync signals import: {file}: {exc}", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE) from None
    except KeyboardInterrupt:
        interrupted = True
    finally:
        engine.dispose()
    if shown > MAX_SHOWN:
        print(f"... and {shown - MAX_SHOWN} more refused row error(s)", file=sys.stderr)
    typer.echo(json.dumps(outcome.summary(file), indent=2))
    if interrupted:
        print(
            "interrupted: the batches committed are stored; run the same command again "
            "to finish (rows already stored are not stored twice)",
            file=sys.stderr,
        )
        raise typer.Exit(code=ExitCode.FAILED)
    raise typer.Exit(code=ExitCode.PARTIAL if outcome.errors else ExitCode.OK)
