"""Decide, per field, whether a pulled CRM value replaces the CS value (direction + policy).

:func:`merge_incoming` takes the existing CS row (or None), a :class:`MappedRecord` and the row's
``field_stamps`` (column -> when the CS side last changed it) and returns what to write:

* no existing row: ``create`` with every mapped value plus the CRM id and modified stamp;
* ``crm_to_cs`` fields: the CRM value wins;
* ``both`` fields, by :class:`~app.mappers.spec.ConflictPolicy`:

  - ``prefer_crm``: the CRM value wins;
  - ``prefer_cs``: the CRM value only fills a CS null (``None``, ``[]`` or ``{}``);
  - ``newest_wins``: the CRM record's modified stamp against the column's CS stamp; the newer
    wins, a tie goes to the CRM. No CS stamp: the CRM wins (the CS side never changed it). No
    CRM stamp but a CS stamp: the CS value stays.

* values compare normalised (``Decimal("1.50") == 1.5``, aware datetimes, naive read as UTC,
  lists vs tuples), so re-reading an unchanged record reports ``unchanged``.

``values`` of an ``update`` holds the changed columns plus the modified stamp column when it
moved; an ``unchanged`` result may still carry the moved stamp (the engine may write it or not).
Deletes (``MappedRecord.deleted``) are left to the engine, which knows the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from app.mappers.convert import datetime_to_cs
from app.mappers.errors import ConversionError
from app.mappers.record import MappedRecord
from app.mappers.spec import ConflictPolicy, Direction, ObjectMapping


class MergeAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class MergeResult:
    """What to write. ``changed``: data columns taking a new value; ``kept_cs``: ``both`` columns
    where the CS value differed and won (a push candidate)."""

    action: MergeAction
    values: dict[str, Any] = field(default_factory=dict)
    changed: tuple[str, ...] = ()
    kept_cs: tuple[str, ...] = ()


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, list | tuple | dict) and len(value) == 0)


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def values_equal(a: Any, b: Any) -> bool:
    """Equality across the types a value may take between the CRM and the database."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    num_a, num_b = _as_number(a), _as_number(b)
    if num_a is not None and num_b is not None:
        return num_a == num_b
    if isinstance(a, datetime) and isinstance(b, datetime):
        return _as_utc(a) == _as_utc(b)
    if isinstance(a, datetime) or isinstance(b, datetime):
        return False
    if isinstance(a, date) and isinstance(b, date):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _stamp(value: Any) -> datetime | None:
    try:
        return datetime_to_cs(value)
    except ConversionError:
        return None


def crm_wins(
    policy: ConflictPolicy,
    cs_value: Any,
    crm_modified_at: datetime | None,
    cs_stamp: datetime | None,
) -> bool:
    """Whether the CRM value of a ``both`` field replaces ``cs_value`` under ``policy``."""
    if policy is ConflictPolicy.PREFER_CRM:
        return True
    if policy is ConflictPolicy.PREFER_CS:
        return _is_empty(cs_value)
    if cs_stamp is None:
        return True
    if crm_modified_at is None:
        return False
    return _as_utc(crm_modified_at) >= _as_utc(cs_stamp)


def merge_incoming(
    mapping: ObjectMapping,
    existing: Mapping[str, Any] | None,
    incoming: MappedRecord,
    existing_field_stamps: Mapping[str, str | datetime] | None = None,
) -> MergeResult:
    """Merge a pulled record into the existing CS row (see the module docstring)."""
    if existing is None:
        values = dict(incoming.values)
        values[mapping.id_column] = incoming.crm_id
        values[mapping.modified_column] = incoming.modified_at
        return MergeResult(MergeAction.CREATE, values, tuple(incoming.values))

    stamps = existing_field_stamps or {}
    changes: dict[str, Any] = {}
    kept_cs: list[str] = []
    for column, crm_value in incoming.values.items():
        cs_value = existing.get(column)
        if values_equal(cs_value, crm_value):
            continue
        fm = mapping.field_for_column(column)
        if fm is not None and fm.direction is Direction.BOTH:
            cs_stamp = _stamp(stamps.get(column))
            if not crm_wins(fm.conflict_policy, cs_value, incoming.modified_at, cs_stamp):
                kept_cs.append(column)
                continue
        changes[column] = crm_value

    values = dict(changes)
    if incoming.modified_at is not None and not values_equal(
        existing.get(mapping.modified_column), incoming.modified_at
    ):
        values[mapping.modified_column] = incoming.modified_at
    action = MergeAction.UPDATE if changes else MergeAction.UNCHANGED
    return MergeResult(action, values, tuple(changes), tuple(kept_cs))
