"""Map one CRM wire record to CS column values, and CS values back to CRM fields.

:func:`map_record` is the pull side: a flattened wire record (``app.core.types.WireRecord``:
Salesforce REST JSON or Bulk CSV strings; HubSpot string properties plus ``id``, ``archived`` and
``associations.<type>`` id lists) becomes a :class:`MappedRecord`. Rules:

* only inbound fields (``crm_to_cs``, ``both``) are mapped;
* a field **absent** from the wire record was not fetched and is left out of ``values`` (the CS
  value stays); a field present with ``null``/``""`` maps to ``None`` (cleared in the CRM);
* a NOT NULL column that maps to ``None`` gets its default (``False``, ``[]``, ``{}``); one
  without a default (``name``) gets a placeholder (the domain, else ``(no name) <id>``);
* a value that does not convert, or does not fit its column (a number out of its
  ``Numeric``/``Integer`` range, a formatted value longer than its ``String(n)``), leaves the
  column empty; ``string`` text longer than the column is cut (ellipsis), ``text`` too;
  each of these except a ``text`` cut is reported in ``MappedRecord.issues``;
* only a bad id or stamp, or a ``required`` field without a valid value, raises
  :class:`~app.mappers.errors.MappingError` (the record is kept out);
* ``ObjectMapping.defaults`` fill columns the CRM left empty (``currency``).

:func:`map_to_crm` is the push side: outbound fields (``cs_to_crm``, ``both``) of a CS row become
CRM wire values. This module does not touch ``account_id``/``opportunity_id``: the engine resolves
``MappedRecord.parent_refs`` against the parent tables.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from app.core.types import WireRecord
from app.mappers.columns import (
    INTEGER_BITS,
    NOT_NULL_DEFAULTS,
    NUMERIC_SIZES,
    PLACEHOLDER_SOURCES,
    REQUIRED_COLUMNS,
    STRING_LENGTHS,
    default_for,
    value_bounds,
)
from app.mappers.convert import (
    WriteContext,
    boolean_to_cs,
    datetime_to_cs,
    get_converter,
    is_blank,
    truncate,
)
from app.mappers.errors import MISSING_FIELD, ConversionError, FieldIssue, MappingError
from app.mappers.handover import parse_handover
from app.mappers.spec import ObjectMapping


@dataclass(frozen=True)
class MappedRecord:
    """A CRM record in CS terms.

    ``values``: column -> CS value for the inbound fields present in the wire record (plus
    ``ObjectMapping.defaults``); never the id/stamp columns. Every value fits its column (type,
    range, length): checked here, so SQLite and PostgreSQL store the same. ``parent_refs``: link
    column (``account_id``, ``opportunity_id``) -> the parent's CRM id, for the engine to resolve.
    """

    crm_id: str
    modified_at: datetime | None
    deleted: bool
    values: dict[str, Any] = field(default_factory=dict)
    parent_refs: dict[str, str] = field(default_factory=dict)
    #: Fields stored empty, cut or as a placeholder: one field-level ``sync_errors`` row each.
    issues: tuple[FieldIssue, ...] = ()


def accepts(mapping: ObjectMapping, wire: WireRecord) -> bool:
    """Whether ``wire`` is a record this mapping syncs (see ``ObjectMapping.record_filter``)."""
    if mapping.record_filter is None:
        return True
    kind, _, field_name = mapping.record_filter.partition(":")
    if kind == "handover":
        body = wire.get(field_name)
        return isinstance(body, str) and parse_handover(body).is_handover
    raise ValueError(f"unknown record filter {mapping.record_filter!r}")


def map_record(mapping: ObjectMapping, wire: WireRecord) -> MappedRecord:
    """Map a wire record.

    Raises :class:`MappingError` (category ``validation``) only for a bad id or stamp, or a
    ``required`` field without a valid value: that record is kept out. Any other bad value
    leaves its column empty (or cut, or a placeholder) and is reported in
    ``MappedRecord.issues``.
    """
    plan = _compiled(mapping)
    raw_id = wire.get(mapping.id_field)
    if is_blank(raw_id) or isinstance(raw_id, bool | list | dict):
        raise MappingError(mapping.id_field, raw_id, "the record has no id")
    crm_id = str(raw_id).strip()
    if len(crm_id) > plan.id_length:
        raise MappingError(
            mapping.id_field, raw_id, f"an id longer than {plan.id_length} characters"
        )
    modified_at = _convert_in(wire, mapping.modified_field, None, datetime_to_cs)
    deleted = False
    if mapping.deleted_field:
        deleted = bool(_convert_in(wire, mapping.deleted_field, None, boolean_to_cs))

    values: dict[str, Any] = {}
    issues: list[FieldIssue] = []
    get = wire.get
    # This loop runs for every field of every record a pull reads: the steps are plain tuples
    # (unpacked, not attribute lookups) and the rare cases sit behind one test each.
    for crm_field, column, to_cs, checks_none, max_length, bounds in plan.steps:
        raw = get(crm_field, _ABSENT)
        if raw is _ABSENT:
            continue
        try:
            value = to_cs(raw)
        except ConversionError as exc:
            _invalid(plan, issues, crm_field, column, raw, exc.reason)
            value = None
        else:
            if value is None:
                pass
            elif max_length is not None:
                if type(value) is str and len(value) > max_length:
                    value = _too_long(plan, issues, crm_field, column, raw, value, max_length)
            elif bounds is not None and not (
                type(value) in _NUMBERS and bounds[0] < value < bounds[1]
            ):
                _out_of_range(plan, issues, crm_field, column, raw, value)
                value = None
        if value is None and checks_none:
            value = _none_value(plan, issues, crm_field, column, raw)
        values[column] = value
    for column, default in mapping.defaults.items():
        if values.get(column) is None:
            values[column] = default
    if issues:
        _fill_placeholders(plan, crm_id, values, issues)

    parent_refs: dict[str, str] = {}
    for link_column, crm_field, to_cs, id_prefix in plan.parents:
        if link_column in parent_refs or crm_field not in wire:
            continue
        raw = wire.get(crm_field)
        try:
            parent_id = to_cs(raw)
        except ConversionError as exc:
            if not any(issue.field == crm_field for issue in issues):
                issues.append(FieldIssue(crm_field, link_column, raw, exc.reason, "no link"))
            continue
        if parent_id is None:
            continue
        parent_id = str(parent_id)
        if id_prefix is not None and not parent_id.startswith(id_prefix):
            continue
        parent_refs[link_column] = parent_id
    return MappedRecord(crm_id, modified_at, deleted, values, parent_refs, tuple(issues))


#: Python types a numeric column accepts (``type(v) in``: a bool is not a number here).
_NUMBERS = frozenset({int, Decimal})
#: Placeholder of an empty NOT NULL column that no other column can name.
_PLACEHOLDER = "(no name) {crm_id}"
#: Marks a NOT NULL column left empty until the record's other values are known.
_NEEDS_PLACEHOLDER = object()


def _invalid(
    plan: _Plan, issues: list[FieldIssue], crm_field: str, column: str, raw: Any, reason: str
) -> None:
    """A value that cannot be stored: the column is left empty (a required field raises)."""
    if crm_field in plan.required_fields:
        raise MappingError(crm_field, raw, reason, column=column)
    issues.append(FieldIssue(crm_field, column, raw, reason, "empty"))


def _out_of_range(
    plan: _Plan, issues: list[FieldIssue], crm_field: str, column: str, raw: Any, value: Any
) -> None:
    if type(value) not in _NUMBERS:
        reason = f"expected a number for column {column!r}, got {type(value).__name__}"
    elif plan.table in NUMERIC_SIZES and column in NUMERIC_SIZES[plan.table]:
        precision, scale = NUMERIC_SIZES[plan.table][column]
        reason = (
            f"out of range: the column holds numbers below 10^{precision - scale} "
            f"(Numeric({precision}, {scale}))"
        )
    else:
        bits = INTEGER_BITS[plan.table][column]
        reason = f"out of range: the column holds {bits}-bit integers (up to {2 ** (bits - 1) - 1})"
    _invalid(plan, issues, crm_field, column, raw, reason)


def _too_long(
    plan: _Plan,
    issues: list[FieldIssue],
    crm_field: str,
    column: str,
    raw: Any,
    value: str,
    limit: int,
) -> str | None:
    """Text longer than its column: cut (``text`` silently, ``string`` with an issue), or left
    empty for formatted values (a cut domain or e-mail address would be a wrong one)."""
    if column in plan.cuts:
        return truncate(value, limit)
    if column in plan.cuts_reported:
        issues.append(
            FieldIssue(
                crm_field,
                column,
                raw,
                f"{len(value)} characters, the column holds {limit}",
                f"cut to {limit} characters",
            )
        )
        return truncate(value, limit)
    _invalid(
        plan, issues, crm_field, column, raw, f"{len(value)} characters, the column holds {limit}"
    )
    return None


def _none_value(
    plan: _Plan, issues: list[FieldIssue], crm_field: str, column: str, raw: Any
) -> Any:
    """The value of a NOT NULL (or required) field left empty or invalid: the column default,
    a placeholder (filled in by :func:`_fill_placeholders`), or an error if required."""
    if crm_field in plan.required_fields:
        raise MappingError(crm_field, raw, "required, got no value", column=column)
    reported = bool(issues) and issues[-1].column == column  # by _invalid, just now
    if column in plan.placeholders:
        if not reported:
            issues.append(
                FieldIssue(crm_field, column, raw, "the CS column needs a value", "", MISSING_FIELD)
            )
        return _NEEDS_PLACEHOLDER
    default = default_for(plan.table, column)
    if reported:
        issues[-1] = replace(issues[-1], stored=f"the default {default!r}")
    return default


def _fill_placeholders(
    plan: _Plan, crm_id: str, values: dict[str, Any], issues: list[FieldIssue]
) -> None:
    """Replace the placeholder marks, now that every other column of the record is known."""
    for index, issue in enumerate(issues):
        if values.get(issue.column) is not _NEEDS_PLACEHOLDER:
            continue
        sources = plan.placeholders[issue.column]
        named = next((values[c] for c in sources if isinstance(values.get(c), str)), None)
        placeholder = named or _PLACEHOLDER.format(crm_id=crm_id)
        values[issue.column] = placeholder
        issues[index] = replace(issue, stored=f"the placeholder {placeholder!r}")


# (crm field, column, to_cs, whether None needs a look (required, defaulted or placeholder),
#  max length of a String(n) column, exclusive (low, high) of a numeric column)
_Step = tuple[str, str, Any, bool, int | None, tuple[Any, Any] | None]


@dataclass(frozen=True)
class _Plan:
    """A mapping's inbound side compiled once: converters looked up, column rules read."""

    table: str
    id_length: int
    steps: tuple[_Step, ...]
    required_fields: frozenset[str]
    placeholders: Mapping[str, tuple[str, ...]]
    cuts: frozenset[str]
    cuts_reported: frozenset[str]
    parents: tuple[tuple[str, str, Any, str | None], ...]


_PLAN_ATTRIBUTE = "_crmsync_inbound_plan"
_ABSENT = object()
#: Converters whose too-long value is cut to the column (free text), with a field issue; others
#: (domain, email, stage ...) leave the column empty, and ``text`` cuts without an issue.
_CUT_REPORTED = frozenset({"string"})


def _compiled(mapping: ObjectMapping) -> _Plan:
    """The compiled plan, kept in the frozen mapping's instance dict (as
    ``functools.cached_property`` does) so it lives and dies with the mapping."""
    cached: _Plan | None = mapping.__dict__.get(_PLAN_ATTRIBUTE)
    if cached is not None:
        return cached
    table = mapping.cs_table
    lengths = STRING_LENGTHS.get(table, {})
    placeholders = PLACEHOLDER_SOURCES.get(table, {})
    not_null = frozenset(REQUIRED_COLUMNS.get(table, ())) | frozenset(
        NOT_NULL_DEFAULTS.get(table, {})
    )
    steps: list[_Step] = []
    cuts: set[str] = set()
    cuts_reported: set[str] = set()
    required_fields: set[str] = set()
    for fm in mapping.inbound_fields:
        converter = get_converter(fm.convert)
        assert converter.to_cs is not None  # validate_field guarantees it for inbound fields
        kind = converter.name.partition(":")[0]
        if kind == "text":
            cuts.add(fm.column)
        elif kind in _CUT_REPORTED:
            cuts_reported.add(fm.column)
        if fm.required:
            required_fields.add(fm.crm_field)
        checks_none = fm.required or fm.column in not_null
        steps.append(
            (
                fm.crm_field,
                fm.column,
                converter.to_cs,
                checks_none,
                lengths.get(fm.column),
                value_bounds(table, fm.column),
            )
        )
    parents = []
    for ref in mapping.parents:
        to_cs = get_converter(ref.convert).to_cs
        if to_cs is not None:
            parents.append((ref.link_column, ref.crm_field, to_cs, ref.id_prefix))
    plan = _Plan(
        table,
        lengths.get(mapping.id_column, 255),
        tuple(steps),
        frozenset(required_fields),
        placeholders,
        frozenset(cuts),
        frozenset(cuts_reported),
        tuple(parents),
    )
    mapping.__dict__[_PLAN_ATTRIBUTE] = plan
    return plan


def _convert_in(wire: WireRecord, crm_field: str, column: str | None, to_cs: Any) -> Any:
    raw = wire.get(crm_field)
    try:
        return to_cs(raw)
    except ConversionError as exc:
        raise MappingError(crm_field, raw, exc.reason, column=column) from exc


def map_to_crm(
    mapping: ObjectMapping,
    row: Mapping[str, Any],
    *,
    today: date | None = None,
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """CRM field -> wire value for the outbound fields of ``row`` (a CS row as a mapping).

    Columns missing from ``row`` are skipped; a ``None`` value clears the CRM field (Salesforce
    ``null``, HubSpot ``""``). Derived fields (``days_until``) need ``today`` and are skipped
    without it. ``only`` limits the result to those CRM fields. A composite field
    (``handover_body``) is rendered from the whole row: the handover note body from its
    structured columns when they changed on the CS side (HTML for HubSpot).
    """
    ctx = WriteContext(mapping.crm, today)
    out: dict[str, Any] = {}
    for fm in mapping.outbound_fields:
        if only is not None and fm.crm_field not in only:
            continue
        if fm.column not in row:
            continue
        converter = get_converter(fm.convert)
        assert converter.to_crm is not None  # outbound_fields keeps only writable converters
        if converter.derived and today is None:
            continue
        value = row if converter.composite else row[fm.column]
        try:
            out[fm.crm_field] = converter.to_crm(value, ctx)
        except ConversionError as exc:
            shown = row.get(fm.column) if converter.composite else value
            raise MappingError(fm.crm_field, shown, exc.reason, column=fm.column) from exc
    return out
