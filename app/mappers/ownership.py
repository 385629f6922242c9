"""Merge a pulled CRM record into the CS row: per field, three ways, against the push ledger.

:func:`merge_incoming` takes the existing CS row (or None), a :class:`MappedRecord`, the row's
``field_stamps`` (column -> when a CS-side write last changed it) and the record's ledger entries
(CRM field -> :class:`~app.mappers.ledger.LedgerEntry`), and returns what to write:

* no existing row: ``create`` with every mapped value plus the CRM id and modified stamp, and an
  agreed ledger entry for each ``both`` field;
* ``crm_to_cs`` fields: the CRM value wins (crmsync never writes them, so they cannot echo);
* ``both`` fields: the three-way table of ADR 0006, with ``L`` the ledger's agreed hash, ``C``
  the hash of the pulled value and ``S`` the hash of the CS value
  (:func:`~app.mappers.ledger.classify`):

  ===========================  ==========================================================
  S == L, C == L               nobody changed it: nothing (an **echo** of a push lands here)
  S != L, C == L               the CS side changed it: the CS value stays (a push candidate)
  S == L, C != L               the CRM changed it: taken; ledger := C
  S == C (!= L or no row)      both changed it the same way: ledger := C, nothing to write
  S != L, C != L, S != C       a true conflict: the field's :class:`ConflictPolicy`
  no ledger row, S != C        never synced: the CRM wins unless a CS stamp is on record for
                               one of the field's columns (then: a conflict)
  ===========================  ==========================================================

  Policies (:func:`resolve_conflict`): ``prefer_crm`` takes the CRM value, ``prefer_cs`` keeps
  the CS value, ``newest_wins`` compares the CRM record's modification stamp with the field's CS
  change stamp, **only** on a true conflict (so an unrelated CRM edit never reverts an unpushed
  CS edit); ties go to the CRM. A CS stamp that does not parse decides for neither side: the
  field is reported in ``MergeResult.conflicts`` and neither the row nor the ledger changes.

  The columns of other inbound fields that read the same CRM field (the handover columns parsed
  from ``Body``) follow the ``both`` field's decision (:attr:`ObjectMapping.two_way_fields`).

* values compare normalised (``Decimal("1.50") == 1.5``, aware datetimes, naive read as UTC,
  lists vs tuples), so re-reading an unchanged record reports ``unchanged``.

``values`` of an ``update`` holds the changed columns plus the modified stamp column when it
moved; an ``unchanged`` result may still carry the moved stamp (the engine stores it as sync
bookkeeping, without touching ``updated_at``). ``ledger`` holds the entries to store: ``crm_hash``
is always the pulled value's hash; ``value_hash`` (and ``value``) become the CRM value when it was
taken or equals the CS value, and stay otherwise. A pull never writes ``field_stamps`` or
``cs_changed_at``. Deletes (``MappedRecord.deleted``) are left to the engine, which knows the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from app.core.types import CrmName
from app.mappers.convert import datetime_to_cs
from app.mappers.errors import ConversionError
from app.mappers.ledger import (
    FieldCase,
    LedgerEntry,
    classify,
    field_hash,
    normalise,
    outbound_value,
    wire_value,
)
from app.mappers.record import MappedRecord
from app.mappers.spec import ConflictPolicy, FieldMapping, ObjectMapping


class MergeAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class FieldConflict:
    """A ``both`` field whose conflict could not be decided (a CS stamp that does not parse):
    neither side is written and the engine records a ``conflict`` error for ``crm_field``."""

    crm_field: str
    columns: tuple[str, ...]
    message: str
    stamp: Any = None


@dataclass(frozen=True)
class MergeResult:
    """What to write.

    ``changed``: data columns taking a new value; ``kept_cs``: columns of ``both`` fields where
    the CS value differed and stays (a push candidate). ``ledger``: CRM field -> the entry to
    store for it (only entries that differ from the stored one: nothing for an echo);
    ``conflicts``: fields left alone because their conflict could not be decided.
    """

    action: MergeAction
    values: dict[str, Any] = field(default_factory=dict)
    changed: tuple[str, ...] = ()
    kept_cs: tuple[str, ...] = ()
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)
    conflicts: tuple[FieldConflict, ...] = ()


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


class Side(StrEnum):
    """Which side's value a conflict keeps."""

    CRM = "crm"
    CS = "cs"


class UnreadableStampError(ValueError):
    """A CS field stamp that does not parse: it decides for neither side (a ``conflict`` error)."""

    def __init__(self, column: str, stamp: Any) -> None:
        super().__init__(
            f"newest_wins cannot decide: the CS change stamp of column {column!r} "
            f"({stamp!r}) is not a date-time; neither side is written"
        )
        self.column = column
        self.stamp = stamp


def newest_cs_stamp(stamps: Mapping[str, Any], columns: Iterable[str]) -> datetime | None:
    """The newest CS change stamp of ``columns`` (None: none of them was changed on the CS side).

    Raises :class:`UnreadableStampError` for a stamp that does not parse.
    """
    newest: datetime | None = None
    for column in columns:
        raw = stamps.get(column)
        if raw is None:
            continue
        try:
            parsed = datetime_to_cs(raw)
        except ConversionError:
            raise UnreadableStampError(column, raw) from None
        if parsed is None:
            raise UnreadableStampError(column, raw)
        if newest is None or parsed > newest:
            newest = parsed
    return newest


def resolve_conflict(
    policy: ConflictPolicy,
    crm_modified_at: datetime | None,
    cs_stamp: datetime | None,
) -> Side:
    """Who wins a true conflict (both sides changed the field, to different values).

    ``prefer_crm``: the CRM; ``prefer_cs``: the CS side; ``newest_wins``: the CRM record's
    modification stamp against the field's CS change stamp (the newest of its columns'), ties to
    the CRM; no CS stamp: the CRM (the CS side never recorded its change); no CRM stamp: the CS
    side. A stamp that does not parse is the caller's :class:`UnreadableStampError`.
    """
    if policy is ConflictPolicy.PREFER_CRM:
        return Side.CRM
    if policy is ConflictPolicy.PREFER_CS:
        return Side.CS
    if cs_stamp is None:
        return Side.CRM
    if crm_modified_at is None:
        return Side.CS
    return Side.CRM if _as_utc(crm_modified_at) >= _as_utc(cs_stamp) else Side.CS


def _differing(
    existing: Mapping[str, Any], incoming: Mapping[str, Any], columns: Iterable[str]
) -> list[str]:
    return [c for c in columns if c in incoming and not values_equal(existing.get(c), incoming[c])]


def _agreed(fm: FieldMapping, crm_value: Any, crm_hash: str, crm: CrmName) -> LedgerEntry:
    return LedgerEntry(crm_hash, crm_hash, wire_value(fm, normalise(fm, crm_value, crm), crm))


def merge_incoming(
    mapping: ObjectMapping,
    existing: Mapping[str, Any] | None,
    incoming: MappedRecord,
    existing_field_stamps: Mapping[str, Any] | None = None,
    ledger: Mapping[str, LedgerEntry] | None = None,
) -> MergeResult:
    """Merge a pulled record into the existing CS row (see the module docstring).

    ``ledger``: the record's ledger entries by CRM field (only ``both`` fields are read).
    """
    crm = mapping.crm
    if existing is None:
        values = dict(incoming.values)
        values[mapping.id_column] = incoming.crm_id
        values[mapping.modified_column] = incoming.modified_at
        created: dict[str, LedgerEntry] = {}
        for fm, _columns in mapping.two_way_fields:
            if fm.column in incoming.values:
                crm_value = incoming.values[fm.column]
                created[fm.crm_field] = _agreed(fm, crm_value, field_hash(fm, crm_value, crm), crm)
        return MergeResult(MergeAction.CREATE, values, tuple(incoming.values), ledger=created)

    stamps = existing_field_stamps or {}
    entries = ledger or {}
    changes: dict[str, Any] = {}
    kept_cs: list[str] = []
    conflicts: list[FieldConflict] = []
    new_entries: dict[str, LedgerEntry] = {}
    governed: set[str] = set()
    for fm, columns in mapping.two_way_fields:
        governed.update(columns)
        if fm.column not in incoming.values:
            continue  # not read (an optional field the org lacks)
        crm_value = incoming.values[fm.column]
        crm_hash = field_hash(fm, crm_value, crm)
        cs_hash = field_hash(fm, outbound_value(fm, existing, crm), crm)
        entry = entries.get(fm.crm_field)
        case = classify(entry.value_hash if entry else None, crm_hash, cs_hash)
        if case in (FieldCase.CRM_CHANGED, FieldCase.SAME_CHANGE):
            take = True
        elif case in (FieldCase.UNCHANGED, FieldCase.CS_CHANGED):
            take = False
        elif case is FieldCase.NEVER_SYNCED and not any(stamps.get(c) for c in columns):
            take = True  # the CS side never changed it: the CRM's value stands
        else:  # a true conflict, or never synced with a CS change on record
            try:
                cs_stamp = (
                    newest_cs_stamp(stamps, columns)
                    if fm.conflict_policy is ConflictPolicy.NEWEST_WINS
                    else None
                )
            except UnreadableStampError as exc:
                conflicts.append(FieldConflict(fm.crm_field, columns, str(exc), exc.stamp))
                continue
            side = resolve_conflict(fm.conflict_policy, incoming.modified_at, cs_stamp)
            take = side is Side.CRM
        differing = _differing(existing, incoming.values, columns)
        if take:
            changes.update((c, incoming.values[c]) for c in differing)
            new_entry: LedgerEntry | None = _agreed(fm, crm_value, crm_hash, crm)
        else:
            kept_cs.extend(differing)
            new_entry = replace(entry, crm_hash=crm_hash) if entry is not None else None
        if new_entry is not None and (
            entry is None
            or (entry.value_hash, entry.crm_hash) != (new_entry.value_hash, new_entry.crm_hash)
        ):
            new_entries[fm.crm_field] = new_entry

    for column, crm_value in incoming.values.items():
        if column not in governed and not values_equal(existing.get(column), crm_value):
            changes[column] = crm_value

    values = dict(changes)
    if incoming.modified_at is not None and not values_equal(
        existing.get(mapping.modified_column), incoming.modified_at
    ):
        values[mapping.modified_column] = incoming.modified_at
    action = MergeAction.UPDATE if changes else MergeAction.UNCHANGED
    return MergeResult(
        action, values, tuple(changes), tuple(kept_cs), new_entries, tuple(conflicts)
    )
