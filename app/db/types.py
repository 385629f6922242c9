"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no time zones and no JSONB; these decorators keep Python values identical on both, so
code above the database never branches on the dialect.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# A surrogate primary key: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")

# JSON documents written once and read whole, never queried inside: ``json`` on PostgreSQL,
# which stores the text as given instead of parsing it into ``jsonb`` (a recompute's snapshot
# documents, docs/adr/0009-recompute-workers-and-snapshot-json.md).
JSONText = JSON()


def _as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is refused (a naive value is a bug: whose local time?)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: crmsync stores aware UTC datetimes only")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases.

    Refuses naive datetimes on the way in (a naive value is a bug: whose local time?) and returns
    aware UTC values on the way out, including from SQLite, which stores no offset.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, one step to the stored text instead of two (this method, then the
        ``DATETIME`` formatter): bulk page writes encode one per row. Same text as SQLAlchemy's
        default SQLite storage format, ``2026-03-02 08:15:30.000000``."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_sqlite(value: datetime | None) -> str | None:
            if value is None:
                return None
            return _as_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")

        return to_sqlite

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: orjson's options for :func:`json_text`: keys that are not strings are written as strings, as
#: ``json.dumps`` writes them; dates, datetimes and dataclasses are refused, as ``json.dumps``
#: refuses them (orjson would write them as text that reads back as a different value).
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_text(value: Any) -> str:
    """``value`` as the JSON text of a :data:`JSONDoc` column, for bulk writes that bypass
    SQLAlchemy's bind processor (``json.dumps``, about ten times slower).

    It reads back (``json.loads``, JSONB) as the value ``json.dumps`` would have written, but
    for NaN and infinities, which it writes as ``null`` (PostgreSQL's JSONB refuses them
    anyway). The text is compact, without ``json.dumps``'s spaces, and keeps non-ASCII
    characters as they are instead of ``\\u`` escapes.
    """
    return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
