"""SOQL for incremental pulls, built with ``simple_salesforce.format_soql``. Pure, no I/O.

Datetime literals are UTC with no fractional seconds (crm-api.md A§4; ``format_soql`` strips
microseconds); naive datetimes are refused here because ``format_soql`` would read them as local
time. The change query is ordered by ``SystemModstamp, Id``: stamps have 1 s precision and many
rows share one, so the Id breaks ties (A§11). The lower bound comes from the engine, lookback
included (:func:`app.sync.cursor.read_from`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from simple_salesforce.format import format_soql

STAMP_FIELD = "SystemModstamp"
ID_FIELD = "Id"
DELETED_FIELD = "IsDeleted"
REQUIRED_FIELDS = (ID_FIELD, STAMP_FIELD, DELETED_FIELD)


def ensure_utc(value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are a bug (the engine keeps everything tz-aware)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} given; pass a timezone-aware value")
    return value.astimezone(UTC)


def select_fields(fields: Iterable[str]) -> list[str]:
    """The requested fields plus Id, SystemModstamp and IsDeleted, without duplicates."""
    result: list[str] = []
    seen: set[str] = set()
    for name in (*REQUIRED_FIELDS, *fields):
        key = name.lower()
        if key not in seen:
            seen.add(key)
            result.append(name)
    return result


def is_record_id(value: str) -> bool:
    """Whether ``value`` has the shape of a Salesforce record id (15 or 18 letters/digits)."""
    return len(value) in (15, 18) and value.isalnum() and value.isascii()


def _check_identifier(name: str) -> str:
    if not name.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"{name!r} is not a valid Salesforce field or object name")
    return name


def changes_where(
    lower: datetime | None,
    after: tuple[datetime, str] | None = None,
    upper: datetime | None = None,
) -> str:
    """``WHERE`` clause of the change query ('' when unbounded).

    ``after`` = (stamp, id) adds the keyset predicate used to restart a stream mid-way:
    ``(SystemModstamp > t OR (SystemModstamp = t AND Id > id))``. ``upper`` (exclusive, a whole
    second: a partition of a partitioned backfill) adds ``SystemModstamp < upper``.
    """
    clauses: list[str] = []
    if lower is not None:
        clauses.append(format_soql("SystemModstamp >= {}", ensure_utc(lower)))
    if upper is not None:
        clauses.append(format_soql("SystemModstamp < {}", _whole_second(upper)))
    if after is not None:
        stamp, record_id = ensure_utc(after[0]), after[1]
        clauses.append(
            format_soql(
                "(SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > {id}))",
                t=stamp,
                id=record_id,
            )
        )
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _whole_second(value: datetime) -> datetime:
    """An exclusive upper bound must be a whole second: ``format_soql`` drops the fraction,
    which would move ``< 12:00:00.5`` to ``< 12:00:00`` and lose the records of that second."""
    value = ensure_utc(value)
    if value.microsecond:
        raise ValueError(f"upper bound {value.isoformat()} is not a whole second")
    return value


def changes_query(
    object_name: str,
    fields: Sequence[str],
    lower: datetime | None,
    *,
    after: tuple[datetime, str] | None = None,
    order: bool = True,
    upper: datetime | None = None,
) -> str:
    """``SELECT .. FROM X WHERE SystemModstamp >= lower [AND < upper] [keyset]
    ORDER BY SystemModstamp, Id``."""
    names = ", ".join(_check_identifier(f) for f in select_fields(fields))
    where = changes_where(lower, after, upper)
    soql = f"SELECT {names} FROM {_check_identifier(object_name)}{where}"
    if order:
        soql += " ORDER BY SystemModstamp, Id"
    return soql


def records_query(object_name: str, fields: Sequence[str], record_ids: Sequence[str]) -> str:
    """``SELECT .. FROM X WHERE Id IN (...)``: records read by id (a retry), run through
    ``queryAll`` so a deleted one comes back with ``IsDeleted`` true."""
    if not record_ids:
        raise ValueError("records_query needs at least one id")
    names = ", ".join(_check_identifier(f) for f in select_fields(fields))
    where = format_soql("Id IN {}", list(record_ids))
    return f"SELECT {names} FROM {_check_identifier(object_name)} WHERE {where}"


def count_query(object_name: str, lower: datetime | None, upper: datetime | None = None) -> str:
    """``SELECT COUNT() FROM X WHERE SystemModstamp >= lower [AND < upper]`` (run through
    queryAll)."""
    where = changes_where(lower, None, upper)
    return f"SELECT COUNT() FROM {_check_identifier(object_name)}{where}"


def parse_datetime(value: str) -> datetime:
    """Parse Salesforce's ``2021-11-06T17:38:40.000+0000`` (or ``...Z``) into an aware UTC value."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
