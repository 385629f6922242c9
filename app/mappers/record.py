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
    raw_id = wire.get(mapping.id_field)
    if is_blank(raw_id) or isinstance(raw_id, bool | list | dict):
        raise MappingError(mapping.id_field, raw_id, "the record has no id")
    crm_id = str(raw_id).strip()
    modified_at = _convert_in(wire, mapping.modified_field, None, datetime_to_cs)
    deleted = False
    if mapping.deleted_field:
        deleted = bool(_convert_in(wire, mapping.deleted_field, None, boolean_to_cs))

    values: dict[str, Any] = {}
    for step in _inbound_plan(mapping):
        # Inlined rather than calling _convert_in: this loop runs for every field of every
        # record a pull reads, and the extra call was a measurable share of a backfill.
        raw = wire.get(step.crm_field, _ABSENT)
        if raw is _ABSENT:
            continue
        try:
            value = step.to_cs(raw)
        except ConversionError as exc:
            raise MappingError(step.crm_field, raw, exc.reason, column=step.column) from exc
        if value is None:
            if step.required:
                raise MappingError(
                    step.crm_field,
                    wire.get(step.crm_field),
                    "required, got no value",
                    column=step.column,
                )
            if step.has_default:
                value = default_for(mapping.cs_table, step.column)
        elif (
            step.max_length is not None and isinstance(value, str) and len(value) > step.max_length
        ):
            if step.cuts:
                value = truncate(value, step.max_length)
            else:
                raise MappingError(
                    step.crm_field,
                    wire.get(step.crm_field),
                    f"{len(value)} characters, the column holds {step.max_length}; "
                    "map it with convert = 'text' to cut it instead",
                    column=step.column,
                )
        values[step.column] = value
    for column, default in mapping.defaults.items():
        if values.get(column) is None:
            values[column] = default

    parent_refs: dict[str, str] = {}
    for ref in mapping.parents:
        if ref.link_column in parent_refs or ref.crm_field not in wire:
            continue
        to_cs = get_converter(ref.convert).to_cs
        if to_cs is None:
            continue
        parent_id = _convert_in(wire, ref.crm_field, ref.link_column, to_cs)
        if parent_id is None:
            continue
        parent_id = str(parent_id)
        if ref.id_prefix is not None and not parent_id.startswith(ref.id_prefix):
            continue
        parent_refs[ref.link_column] = parent_id
    return MappedRecord(crm_id, modified_at, deleted, values, parent_refs)


@dataclass(frozen=True)
class _Step:
    """One inbound field, with everything :func:`map_record` needs resolved in advance."""

    crm_field: str
    column: str
    to_cs: Any
    required: bool
    has_default: bool
    max_length: int | None
    cuts: bool


_PLAN_ATTRIBUTE = "_crmsync_inbound_plan"
_ABSENT = object()


def _inbound_plan(mapping: ObjectMapping) -> tuple[_Step, ...]:
    """The mapping's inbound fields compiled once (converters looked up, column rules read).

    Kept in the frozen mapping's instance dict, as ``functools.cached_property`` does, so it
    lives and dies with the mapping.
    """
    cached: tuple[_Step, ...] | None = mapping.__dict__.get(_PLAN_ATTRIBUTE)
    if cached is not None:
        return cached
    table = mapping.cs_table
    lengths = STRING_LENGTHS.get(table, {})
    steps = []
    for fm in mapping.inbound_fields:
        converter = get_converter(fm.convert)
        assert converter.to_cs is not None  # validate_field guarantees it for inbound fields
        steps.append(
            _Step(
                crm_field=fm.crm_field,
                column=fm.column,
                to_cs=converter.to_cs,
                required=fm.column in REQUIRED_COLUMNS.get(table, ()),
                has_default=fm.column in NOT_NULL_DEFAULTS.get(table, {}),
                max_length=lengths.get(fm.column),
                cuts=converter.name.partition(":")[0] == "text",
            )
        )
    plan = tuple(steps)
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
