"""Dates given on the command line (``--since``, ``--to``): parsed once, future ones refused.

A date (``2026-01-01``, midnight UTC) or an ISO datetime (``2026-01-01T08:00:00Z``; without an
offset it is UTC). A moment after ``now`` is refused: a cursor set to it would skip every real
edit made before that moment arrives (``sync backfill --since 2030-01-01`` once did exactly that).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import typer

from app.cli.common import ExitCode, console


def parse_instant(value: str, option: str) -> datetime:
    """``value`` as an aware UTC datetime, or a one-line message and exit 2."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        console.print(f"crmsync: {option} {value!r} is not a date (YYYY-MM-DD) or ISO datetime")
        raise typer.Exit(code=ExitCode.USAGE) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_past_instant(value: str, option: str, now: datetime | None = None) -> datetime:
    """Like :func:`parse_instant`, refusing a moment after ``now`` (default: the clock)."""
    parsed = parse_instant(value, option)
    current = now or datetime.now(UTC)
    if parsed > current:
        console.print(
            f"crmsync: {option} {value} is in the future (it is {current:%Y-%m-%d %H:%M} UTC "
            "now); a cursor never moves past now"
        )
        raise typer.Exit(code=ExitCode.USAGE)
    return parsed
