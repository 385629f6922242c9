"""Map one CRM wire record to CS column values, and CS values back to CRM fields.

:func:`map_record` is the pull side: a flattened wire record (``app.crm.base.WireRecord``:
Salesforce REST JSON or Bulk CSV strings; HubSpot string properties plus ``id``, ``archived`` and
``associations.<type>`` id lists) becomes a :class:`MappedRecord`. Rules:

* only inbound fields (``crm_to_cs``, ``both``) are mapped;
* a field **absent** from the wire record was not fetched and is left out of ``values`` (the CS
  value stays); a field present with ``null``/``""`` maps to ``None`` (cleared in the CRM);
* a NOT NULL column that maps to ``None`` gets its default (``False``, ``[]``, ``{}``), except the
  required ones (``name``), which raise :class:`~app.mappers.errors.MappingError`;
* a string longer than its CS column: ``text`` converters cut it (ellipsis), others raise;
* ``ObjectMapping.defaults`` fill columns the CRM left empty (``currency``).

:func:`map_to_crm` is the push side: outbound fields (``cs_to_crm``, ``both``) of a CS row become
CRM wire values. This module does not touch ``account_id``/``opportunity_id``: the engine resolves
``MappedRecord.parent_refs`` against the parent tables.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from app.mappers.columns import NOT_NULL_DEFAULTS, REQUIRED_COLUMNS, STRING_LENGTHS, default_for
from app.mappers.convert import (
    WriteContext,
    boolean_to_cs,
    datetime_to_cs,
    get_converter,
    is_blank,
    truncate,
)
from app.mappers.errors import ConversionError, MappingError
from app.mappers.handover import parse_handover, render_handover
from app.mappers.spec import ObjectMapping

#: A flattened CRM record (same shape as ``app.crm.base.WireRecord``; the mappers may not
#: import ``app.crm``, see the import-linter contract in pyproject.toml).
WireRecord = Mapping[str, Any]


@dataclass(frozen=True)
class MappedRecord:
    """A CRM record in CS terms.

    ``values``: column -> CS value for the inbound fields present in the wire record (plus
    ``ObjectMapping.defaults``); never the id/stamp columns. ``parent_refs``: link column
    (``account_id``, ``opportunity_id``) -> the parent's CRM id, for the engine to resolve.
    """

    crm_id: str
    modified_at: datetime | None
    deleted: bool
    values: dict[str, Any] = field(default_factory=dict)
    parent_refs: dict[str, str] = field(default_factory=dict)


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
    """Map a wire record; raises :class:`MappingError` (category ``validation``) on a bad value."""
    plan = _compiled(mapping)
    raw_id = wire.get(mapping.id_field)
    if is_blank(raw_id) or isinstance(raw_id, bool | list | dict):
        raise MappingError(mapping.id_field, raw_id, "the record has no id")
    crm_id = str(raw_id).strip()
    modified_at = _convert_in(wire, mapping.modified_field, None, datetime_to_cs)
    deleted = False
    if mapping.deleted_field:
        deleted = bool(_convert_in(wire, mapping.deleted_field, None, boolean_to_cs))

    values: dict[str, Any] = {}
    get = wire.get
    # This loop runs for every field of every record a pull reads: the steps are plain tuples
    # (unpacked, not attribute lookups) and the rare cases sit behind one flag each.
    for crm_field, column, to_cs, checks_none, max_length in plan.steps:
        raw = get(crm_field, _ABSENT)
        if raw is _ABSENT:
            continue
        try:
            value = to_cs(raw)
        except ConversionError as exc:
            raise MappingError(crm_field, raw, exc.reason, column=column) from exc
        if value is None:
            if checks_none:
                value = _none_value(plan, crm_field, column, raw)
        elif max_length is not None and type(value) is str and len(value) > max_length:
            value = _too_long(plan, crm_field, column, value)
        values[column] = value
    for column, default in mapping.defaults.items():
        if values.get(column) is None:
            values[column] = default

    parent_refs: dict[str, str] = {}
    for link_column, crm_field, to_cs, id_prefix in plan.parents:
        if link_column in parent_refs or crm_field not in wire:
            continue
        parent_id = _convert_in(wire, crm_field, link_column, to_cs)
        if parent_id is None:
            continue
        parent_id = str(parent_id)
        if id_prefix is not None and not parent_id.startswith(id_prefix):
            continue
        parent_refs[link_column] = parent_id
    return MappedRecord(crm_id, modified_at, deleted, values, parent_refs)


def _none_value(plan: _Plan, crm_field: str, column: str, raw: Any) -> Any:
    """The value of a field the CRM left empty: the column default, or an error if required."""
    if column in plan.required:
        raise MappingError(crm_field, raw, "required, got no value", column=column)
    return default_for(plan.table, column)


def _too_long(plan: _Plan, crm_field: str, column: str, value: str) -> str:
    limit = STRING_LENGTHS[plan.table][column]
    if column in plan.cuts:
        return truncate(value, limit)
    raise MappingError(
        crm_field,
        value,
        f"{len(value)} characters, the column holds {limit}; "
        "map it with convert = 'text' to cut it instead",
        column=column,
    )


# (crm field, column, to_cs, whether None needs a look (required or defaulted), max length)
_Step = tuple[str, str, Any, bool, int | None]


@dataclass(frozen=True)
class _Plan:
    """A mapping's inbound side compiled once: converters looked up, column rules read."""

    table: str
    steps: tuple[_Step, ...]
    required: frozenset[str]
    cuts: frozenset[str]
    parents: tuple[tuple[str, str, Any, str | None], ...]


_PLAN_ATTRIBUTE = "_crmsync_inbound_plan"
_ABSENT = object()


def _compiled(mapping: ObjectMapping) -> _Plan:
    """The compiled plan, kept in the frozen mapping's instance dict (as
    ``functools.cached_property`` does) so it lives and dies with the mapping."""
    cached: _Plan | None = mapping.__dict__.get(_PLAN_ATTRIBUTE)
    if cached is not None:
        return cached
    table = mapping.cs_table
    lengths = STRING_LENGTHS.get(table, {})
    required = frozenset(REQUIRED_COLUMNS.get(table, ()))
    defaulted = NOT_NULL_DEFAULTS.get(table, {})
    steps: list[_Step] = []
    cuts: set[str] = set()
    for fm in mapping.inbound_fields:
        converter = get_converter(fm.convert)
        assert converter.to_cs is not None  # validate_field guarantees it for inbound fields
        if converter.name.partition(":")[0] == "text":
            cuts.add(fm.column)
        checks_none = fm.column in required or fm.column in defaulted
        steps.append(
            (fm.crm_field, fm.column, converter.to_cs, checks_none, lengths.get(fm.column))
        )
    parents = []
    for ref in mapping.parents:
        to_cs = get_converter(ref.convert).to_cs
        if to_cs is not None:
            parents.append((ref.link_column, ref.crm_field, to_cs, ref.id_prefix))
    plan = _Plan(table, tuple(steps), required, frozenset(cuts), tuple(parents))
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
    without it. ``only`` limits the result to those CRM fields. A handover row with an empty
    ``body`` gets one rendered from its structured columns (HTML for HubSpot).
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
        value = row[fm.column]
        if mapping.cs_table == "handover_notes" and fm.column == "body" and is_blank(value):
            value = render_handover(row, html_output=mapping.crm == "hubspot") or None
        try:
            out[fm.crm_field] = converter.to_crm(value, ctx)
        except ConversionError as exc:
            raise MappingError(fm.crm_field, value, exc.reason, column=fm.column) from exc
    return out
