"""The push planner: CS rows + the push ledger -> what to write to the CRM (ADR 0006). Pure.

For each row and each outbound field (``cs_to_crm`` and ``both``) the planner compares three
hashes (:mod:`app.mappers.ledger`): ``S``, the CS value; ``L``, the ledger's ``value_hash`` (what
both sides last agreed on); ``C``, the ledger's ``crm_hash`` (the CRM value as last pulled,
None when unknown: never pulled, or a ``cs_to_crm`` field the pull does not read).

| case | outcome |
|---|---|
| S == L | unchanged: nothing to do |
| S == C (C != L) | ``agreed``: the CRM holds it already; the ledger takes it, no call |
| no ledger row | write, reason ``never_pushed`` (an empty CS value is not written) |
| S != L, C unknown or C == L | write, reason ``cs_changed`` |
| S != L, C != L, S != C | a conflict the pull has not settled: the field's policy decides |

A conflict follows :class:`~app.mappers.spec.ConflictPolicy`: ``prefer_crm`` leaves the field to
the next pull (``skipped``); ``prefer_cs`` writes unless the CS value is empty (the CRM value
fills a CS null); ``newest_wins`` compares the CRM record's modification stamp with the column's
CS field stamp, ties to the CRM. A CS stamp that does not parse decides for neither side: the
field is a :class:`PlanError` (category ``conflict``) and nothing is written for it.

A row without the CRM's id is created: a :class:`~app.crm.writes.WriteKind` ``UPSERT`` on the
row's ``crmsync_id`` (the store assigns and commits one before the call when the row has none),
carrying every outbound field plus what the optional ``creates`` hook adds (a note's parent,
associations). A row the hook says is not ready (``None``: its parent has no id in this CRM yet)
is left out (``waiting``).

Speed: the planner runs over every changed row of a push, and over every row in the preview.
Each mapping's outbound side is compiled once (converters looked up), and a field's hash is
memoised per hashable value (``health_band`` has four values, ``renewal_on`` a few hundred), so
planning 100,000 unchanged accounts costs a dict lookup per field (``make bench``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from app.core.types import CrmName
from app.crm.writes import Association, WriteKind, WriteOp, WriteTuning, planned_calls
from app.mappers.convert import WriteContext, get_converter, is_blank
from app.mappers.errors import ConversionError
from app.mappers.ledger import LedgerEntry, field_hash, outbound_value
from app.mappers.spec import ConflictPolicy, FieldMapping, ObjectMapping

__all__ = [
    "AgreedField",
    "CreateExtras",
    "FieldChange",
    "LedgerIndex",
    "PlanError",
    "PushPlan",
    "Reason",
    "RecordPlan",
    "SkippedField",
    "plan_push",
]


class Reason(StrEnum):
    """Why a field is written."""

    NEVER_PUSHED = "never_pushed"  # no ledger row: crmsync never agreed a value with the CRM
    CS_CHANGED = "cs_changed"  # the CS value moved away from the agreed one
    CONFLICT_CS_WINS = "conflict_cs_wins"  # both changed; the field's policy keeps the CS value


class FieldChange(NamedTuple):
    """One field to write: ``old`` is the ledger's agreed wire value (None: never pushed),
    ``new`` the wire value to send, ``new_hash`` the ledger hash it is recorded with once the CRM
    confirms it. (A named tuple: a push of 50,000 records makes hundreds of thousands.)"""

    column: str
    crm_field: str
    old: Any
    new: Any
    new_hash: str
    reason: Reason


@dataclass(frozen=True)
class RecordPlan:
    """One record's write. ``kind`` ``UPDATE`` names ``crm_id``; ``UPSERT`` creates (or
    matches) the record through ``crmsync_id`` (None: the store assigns one before the call)."""

    row_id: int
    crm_id: str | None
    crmsync_id: str | None
    kind: WriteKind
    changes: tuple[FieldChange, ...]
    #: Fields a create needs besides the mapped ones (a note's ``ParentId``, ``hs_timestamp``).
    create_fields: Mapping[str, Any] = field(default_factory=dict)
    associations: tuple[Association, ...] = ()

    def fields(self) -> dict[str, Any]:
        """CRM field -> wire value, as sent."""
        out = {c.crm_field: c.new for c in self.changes}
        out.update(self.create_fields)
        return out

    def to_op(self) -> WriteOp:
        return WriteOp(
            key=self.row_id,
            kind=self.kind,
            fields=self.fields(),
            crm_id=self.crm_id,
            external_id=self.crmsync_id,
            associations=self.associations,
        )

    def with_crmsync_id(self, crmsync_id: str) -> RecordPlan:
        return replace(self, crmsync_id=crmsync_id)


@dataclass(frozen=True)
class AgreedField:
    """The CRM already holds the CS value (both changed the same way): the ledger takes it."""

    row_id: int
    crm_id: str
    crm_field: str
    value_hash: str
    value: Any


@dataclass(frozen=True)
class SkippedField:
    """A field not written: a conflict the CRM wins (the next pull takes its value), or a
    create that waits for its parent (``crm_field`` None)."""

    row_id: int
    crm_id: str | None
    crm_field: str | None
    column: str | None
    reason: str


@dataclass(frozen=True)
class PlanError:
    """A field (or record) the planner cannot decide or convert: a ``sync_errors`` row."""

    row_id: int
    record_id: str | None
    crm_field: str | None
    column: str | None
    category: str
    message: str
    payload: Mapping[str, Any] | None = None


@dataclass
class PushPlan:
    """What a push of one object's rows will do."""

    records: list[RecordPlan] = field(default_factory=list)
    agreed: list[AgreedField] = field(default_factory=list)
    skipped: list[SkippedField] = field(default_factory=list)
    unchanged: int = 0  # rows with nothing to write (agreed-only rows count here too)
    errors: list[PlanError] = field(default_factory=list)

    @property
    def updates(self) -> int:
        return sum(1 for r in self.records if r.kind is WriteKind.UPDATE)

    @property
    def upserts(self) -> int:
        return sum(1 for r in self.records if r.kind is WriteKind.UPSERT)

    def planned_calls(self, crm: CrmName, tuning: WriteTuning | None = None) -> int:
        """API calls writing :attr:`records` costs without faults (the adapters' chunking)."""
        if not self.records:
            return 0
        return planned_calls(crm, self.updates, self.upserts, tuning)

    def extend(self, other: PushPlan) -> None:
        self.records.extend(other.records)
        self.agreed.extend(other.agreed)
        self.skipped.extend(other.skipped)
        self.unchanged += other.unchanged
        self.errors.extend(other.errors)


CreateExtras = Callable[[Mapping[str, Any]], tuple[Mapping[str, Any], Sequence[Association]] | None]
"""A create's extra fields and associations for a row, or None when it cannot be created yet
(its parent has no id in the CRM). See :func:`app.mappers.notes.create_extras`."""


# --------------------------------------------------------------------------------------------
# the compiled mapping
# --------------------------------------------------------------------------------------------

_ABSENT = object()


class LedgerIndex(Mapping[tuple[str, str], LedgerEntry]):
    """Ledger entries grouped by CRM record id: the planner looks a record up once, then its
    fields by name. Also a plain mapping keyed by (record id, field), as :func:`plan_push`
    takes; the store builds one directly (:meth:`add`)."""

    def __init__(self) -> None:
        self.by_record: dict[str, dict[str, LedgerEntry]] = {}

    def add(self, record_id: str, crm_field: str, entry: LedgerEntry) -> None:
        fields = self.by_record.get(record_id)
        if fields is None:
            fields = self.by_record[record_id] = {}
        fields[crm_field] = entry

    @classmethod
    def of(cls, ledger: Mapping[tuple[str, str], LedgerEntry]) -> LedgerIndex:
        if isinstance(ledger, LedgerIndex):
            return ledger
        index = cls()
        for (record_id, crm_field), entry in ledger.items():
            index.add(record_id, crm_field, entry)
        return index

    def __getitem__(self, key: tuple[str, str]) -> LedgerEntry:
        return self.by_record[key[0]][key[1]]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for record_id, fields in self.by_record.items():
            for crm_field in fields:
                yield record_id, crm_field

    def __len__(self) -> int:
        return sum(len(fields) for fields in self.by_record.values())


class _Field:
    """One outbound field, compiled: its converter and a memo of CS value -> (hash, wire)."""

    __slots__ = (
        "column",
        "composite",
        "crm_field",
        "derived",
        "fm",
        "memo",
        "policy",
        "to_crm",
    )

    def __init__(self, fm: FieldMapping) -> None:
        converter = get_converter(fm.convert)
        assert converter.to_crm is not None  # outbound_fields keeps writable converters only
        self.fm = fm
        self.column = fm.column
        self.crm_field = fm.crm_field
        self.to_crm = converter.to_crm
        self.derived = converter.derived
        self.composite = bool(getattr(converter, "composite", False))
        self.policy = fm.conflict_policy
        # memo key: the value itself (a bool as (bool, value): True == 1), per ``today`` for
        # derived fields (see _compiled)
        self.memo: dict[Any, tuple[str, Any]] = {}

    def evaluate(self, row: Mapping[str, Any], ctx: WriteContext) -> tuple[str, Any]:
        """(ledger hash of the CS side's value, wire value to send). Raises ConversionError.

        The hash is :func:`app.mappers.ledger.field_hash` of
        :func:`~app.mappers.ledger.outbound_value`: exactly what the pull's merge hashes, so a
        value pushed and read back is recognised (no echo)."""
        if self.composite:
            wire = self.to_crm(row, ctx)
            cs_value = outbound_value(self.fm, row, ctx.crm, today=ctx.today)
            return field_hash(self.fm, cs_value, ctx.crm), wire
        value = row.get(self.column)
        key: Any = (bool, value) if type(value) is bool else value
        try:
            found = self.memo.get(key)
        except TypeError:  # unhashable (a list, a dict): not memoised
            key, found = _ABSENT, None
        if found is not None:
            return found
        wire = self.to_crm(value, ctx)
        # A derived field's CS-side value is its wire value (outbound_value does the same).
        result = (field_hash(self.fm, wire if self.derived else value, ctx.crm), wire)
        if key is not _ABSENT:
            self.memo[key] = result
        return result


@dataclass
class _Compiled:
    fields: tuple[_Field, ...]
    policies: dict[str, ConflictPolicy]
    today: date | None = None


_PLAN_ATTRIBUTE = "_crmsync_push_plan"


def _compiled(mapping: ObjectMapping, today: date) -> _Compiled:
    """The mapping's outbound side, compiled once and kept on the (frozen) mapping, as
    :mod:`app.mappers.record` does. Derived fields' memos hold for one ``today``."""
    cached: _Compiled | None = mapping.__dict__.get(_PLAN_ATTRIBUTE)
    if cached is None:
        fields = tuple(_Field(fm) for fm in mapping.outbound_fields)
        cached = _Compiled(fields, {f.crm_field: f.policy for f in fields})
        mapping.__dict__[_PLAN_ATTRIBUTE] = cached
    if cached.today != today:
        for f in cached.fields:
            if f.derived:
                f.memo.clear()
        cached.today = today
    return cached


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------


def _parse_stamp(raw: Any) -> datetime | object | None:
    """A stamp as an aware datetime; None when absent; ``_ABSENT`` when it does not parse."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return _ABSENT
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return _ABSENT


def _conflict(f: _Field, row: Mapping[str, Any], mapping: ObjectMapping) -> tuple[bool, str | None]:
    """(CS wins, error message) for a true three-way conflict under the field's policy."""
    if f.policy is ConflictPolicy.PREFER_CRM:
        return False, None
    if f.policy is ConflictPolicy.PREFER_CS:
        value = row.get(f.column)
        empty = is_blank(value) or (isinstance(value, list | tuple | dict) and not value)
        return not empty, None
    stamps = row.get("field_stamps") or {}
    cs_stamp = _parse_stamp(stamps.get(f.column) if isinstance(stamps, Mapping) else None)
    crm_stamp = _parse_stamp(row.get(mapping.modified_column))
    for name, stamp in (("CS field stamp", cs_stamp), ("CRM modification stamp", crm_stamp)):
        if stamp is _ABSENT:
            return False, (
                f"conflict on {f.crm_field}: both sides changed it and the {name} does not "
                "parse, so newest_wins cannot decide; neither side is written"
            )
    if cs_stamp is None:
        return False, None
    if crm_stamp is None:
        return True, None
    assert isinstance(cs_stamp, datetime)
    assert isinstance(crm_stamp, datetime)
    return cs_stamp > crm_stamp, None


def plan_push(
    mapping: ObjectMapping,
    rows: Iterable[Mapping[str, Any]],
    ledger: Mapping[tuple[str, str], LedgerEntry],
    *,
    today: date,
    creates: CreateExtras | None = None,
) -> PushPlan:
    """Plan the push of ``rows`` (CS rows of ``mapping.cs_table`` as dicts: every column,
    ``id``, ``crmsync_id``, ``sf_id``/``hs_id``, ``field_stamps``) against ``ledger``, keyed by
    (CRM record id, CRM field) (a :class:`LedgerIndex` is used as it is). See the module
    docstring for the rules; ``creates`` adds what a create needs (or holds it back)."""
    compiled = _compiled(mapping, today)
    ctx = WriteContext(mapping.crm, today)
    id_column = mapping.id_column
    by_record = LedgerIndex.of(ledger).by_record
    # (field, column, memo or None for a composite, CRM field): unpacked, not looked up
    steps = [(f, f.column, None if f.composite else f.memo, f.crm_field) for f in compiled.fields]
    plan = PushPlan()
    records, agreed, skipped, errors = plan.records, plan.agreed, plan.skipped, plan.errors
    no_entries: dict[str, LedgerEntry] = {}
    never, changed = Reason.NEVER_PUSHED, Reason.CS_CHANGED
    for row in rows:
        row_get = row.get
        raw_id = row_get(id_column)
        crm_id = None if raw_id is None else str(raw_id)
        if crm_id is None:
            record = _plan_create(row, steps, ctx, creates, skipped, errors)
            if record is not None:
                records.append(record)
            continue
        entries = by_record.get(crm_id, no_entries)
        changes: list[FieldChange] = []
        for f, column, memo, crm_field in steps:
            found = None
            if memo is not None:
                value = row_get(column)
                try:
                    found = memo.get((bool, value) if type(value) is bool else value)
                except TypeError:  # unhashable: evaluated below
                    found = None
            if found is None:
                try:
                    found = f.evaluate(row, ctx)
                except ConversionError as exc:
                    errors.append(_conversion_error(int(row["id"]), crm_id, f, row, exc))
                    continue
            new_hash, wire = found
            entry = entries.get(crm_field)
            if entry is None:
                if wire is None or wire == "":
                    # Never agreed and empty on the CS side: nothing to tell the CRM, and a null
                    # would clear a value someone else put there.
                    continue
                changes.append(FieldChange(column, crm_field, None, wire, new_hash, never))
                continue
            agreed_hash = entry.value_hash
            if new_hash == agreed_hash:
                continue
            crm_hash = entry.crm_hash
            if crm_hash is not None and crm_hash == new_hash:
                agreed.append(AgreedField(int(row["id"]), crm_id, crm_field, new_hash, wire))
                continue
            reason = changed
            if crm_hash is not None and crm_hash != agreed_hash:
                # Both sides moved, differently: a conflict the last pull did not settle (the
                # CS value changed after it).
                cs_wins, problem = _conflict(f, row, mapping)
                if problem is not None:
                    errors.append(
                        PlanError(
                            int(row["id"]),
                            crm_id,
                            crm_field,
                            column,
                            "conflict",
                            problem,
                            {"field": crm_field, "cs_value": _jsonable(row_get(column))},
                        )
                    )
                    continue
                if not cs_wins:
                    skipped.append(
                        SkippedField(
                            int(row["id"]), crm_id, crm_field, column, "conflict: the CRM wins"
                        )
                    )
                    continue
                reason = Reason.CONFLICT_CS_WINS
            changes.append(FieldChange(column, crm_field, entry.value, wire, new_hash, reason))
        if changes:
            records.append(
                RecordPlan(
                    int(row["id"]), crm_id, row_get("crmsync_id"), WriteKind.UPDATE, tuple(changes)
                )
            )
        else:
            plan.unchanged += 1
    return plan


_Step = tuple["_Field", str, "dict[Any, tuple[str, Any]] | None", str]


def _plan_create(
    row: Mapping[str, Any],
    steps: Sequence[_Step],
    ctx: WriteContext,
    creates: CreateExtras | None,
    skipped: list[SkippedField],
    errors: list[PlanError],
) -> RecordPlan | None:
    """A row without the CRM's id: an upsert on its crmsync id with every outbound field."""
    row_id = int(row["id"])
    extras: Mapping[str, Any] = {}
    links: tuple[Association, ...] = ()
    if creates is not None:
        ready = creates(row)
        if ready is None:
            skipped.append(
                SkippedField(row_id, None, None, None, "waiting: no parent id in the CRM")
            )
            return None
        extras, links = ready[0], tuple(ready[1])
    changes: list[FieldChange] = []
    for f, column, _memo, crm_field in steps:
        try:
            new_hash, wire = f.evaluate(row, ctx)
        except ConversionError as exc:
            errors.append(_conversion_error(row_id, None, f, row, exc))
            continue
        changes.append(FieldChange(column, crm_field, None, wire, new_hash, Reason.NEVER_PUSHED))
    return RecordPlan(
        row_id, None, row.get("crmsync_id"), WriteKind.UPSERT, tuple(changes), dict(extras), links
    )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _conversion_error(
    row_id: int, crm_id: str | None, f: _Field, row: Mapping[str, Any], exc: ConversionError
) -> PlanError:
    value = row.get(f.column)
    return PlanError(
        row_id,
        crm_id,
        f.crm_field,
        f.column,
        "validation",
        f"{f.crm_field}: column {f.column!r} value {value!r} cannot be written: {exc.reason}",
        {"field": f.crm_field, "cs_value": _jsonable(value)},
    )
