"""The push ledger's values: one canonical hash per field value, and the entry the merge reads.

The ledger (ADR 0006) is the base of a three-way merge per field: ``value_hash`` is the value both
sides last agreed on, ``crm_hash`` the CRM value as last pulled. Both sides must hash a value the
same way whatever type it took on the way (``Decimal("1.50")``, ``1.5`` and ``"1.5"`` after
conversion; aware and naive datetimes; lists and tuples), so :func:`value_hash` hashes a
canonical form, the one :func:`app.mappers.ownership.values_equal` compares by.

What to hash: the **CS-domain** value (what the column holds, or what the field's ``to_cs``
converter makes of a pulled wire value). Derived outbound fields (``days_until``), which have no
CS form, hash the wire value written. Text is hashed as is; ``None`` and a blank string hash
equal, because a cleared field reads back as either (HubSpot ``""``, Salesforce ``null``).
Datetimes hash at millisecond precision: both CRMs keep milliseconds, so a CS stamp with
microseconds reads back truncated.

Use :func:`field_hash` (not :func:`value_hash`) for a mapped field: it first sends the value
through the field's converter both ways (``to_cs(to_crm(value))``), i.e. hashes the value the CRM
will hold once it is written. So a value that the CRM stores differently from the CS column
(``"Acme "`` stripped, a long text cut, a decimal beyond a Salesforce double, a website reduced to
its domain) hashes the same on the push (the CS value) and on the next pull (the value read
back): that is what makes an echo recognisable. :func:`outbound_value` is the CS-side value of a
field (a composite's rendered text, a derived field's wire value) that the push and the pull's
merge both hash. :func:`classify` is the three-way table of ADR 0006.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from app.core.types import CrmName
from app.mappers.convert import Converter, WriteContext, get_converter
from app.mappers.errors import ConversionError
from app.mappers.spec import FieldMapping

__all__ = [
    "FieldCase",
    "LedgerEntry",
    "canonical",
    "classify",
    "field_hash",
    "normalise",
    "outbound_value",
    "value_hash",
    "wire_value",
]


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row as the merge and the planner see it."""

    value_hash: str | None
    crm_hash: str | None = None
    value: Any = None


def _number(value: int | float | Decimal) -> str:
    try:
        dec = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return repr(value)
    if not dec.is_finite():
        return str(dec)
    if dec == 0:
        return "0"
    return format(dec.normalize(), "f")


def canonical(value: Any) -> Any:
    """A JSON-able form of ``value`` in which equal values (across types) are identical."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, int | float | Decimal):
        return {"n": _number(value)}
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return {"t": aware.isoformat(timespec="milliseconds")}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if isinstance(value, Mapping):
        return {
            "m": [
                [str(k), canonical(v)] for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            ]
        }
    if isinstance(value, list | tuple):
        return {"l": [canonical(v) for v in value]}
    if isinstance(value, str):
        return value
    return {"r": repr(value)}


def value_hash(value: Any) -> str:
    """SHA-256 (hex, 64 characters: the ledger column's width) of :func:`canonical` ``value``."""
    text = json.dumps(canonical(value), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# per field: the value the CRM will hold, its hash, and the three-way case
# --------------------------------------------------------------------------------------------


def outbound_value(
    fm: FieldMapping, row: Mapping[str, Any], crm: CrmName, *, today: date | None = None
) -> Any:
    """The CS side's value of ``fm`` in ``row``, in the form :func:`field_hash` takes.

    A plain field: the column's value. A composite (``handover_body``): the text it renders from
    the row. A derived field (``days_until``): the wire value written ``today`` (None without
    ``today``, or when the column is empty).
    """
    converter = get_converter(fm.convert)
    if converter.composite:
        assert converter.to_crm is not None  # composites are outbound by definition
        text = converter.to_crm(row, WriteContext(crm, today))
        return converter.to_cs(text) if converter.to_cs is not None else text
    value = row.get(fm.column)
    if converter.derived:
        if today is None or converter.to_crm is None:
            return None
        try:
            return converter.to_crm(value, WriteContext(crm, today))
        except ConversionError:
            return value
    return value


def _value_converter(fm: FieldMapping) -> Converter | None:
    """The converter of ``fm``'s CS-domain values: a composite's value is its text (so it
    converts as ``text``: a body longer than the CRM keeps is cut); None for a derived field,
    whose value is a wire value already."""
    converter = get_converter(fm.convert)
    if converter.derived:
        return None
    if converter.composite:
        return get_converter("text")
    return converter


def normalise(fm: FieldMapping, value: Any, crm: CrmName) -> Any:
    """``value`` as the CRM will hold it, in CS terms: ``to_cs(to_crm(value))`` when the field's
    converter goes both ways (a value it cannot convert is returned unchanged)."""
    converter = _value_converter(fm)
    if converter is None or converter.to_cs is None or converter.to_crm is None:
        return value
    try:
        return converter.to_cs(converter.to_crm(value, WriteContext(crm)))
    except ConversionError:
        return value


def field_hash(fm: FieldMapping, value: Any, crm: CrmName) -> str:
    """The ledger hash of ``value`` (a CS-domain value of ``fm``: a column value, a pulled
    value after ``to_cs``, or :func:`outbound_value`): :func:`value_hash` of
    :func:`normalise`."""
    return value_hash(normalise(fm, value, crm))


def wire_value(fm: FieldMapping, value: Any, crm: CrmName) -> Any:
    """The wire form of a CS-domain value of ``fm`` (the ledger's ``value``, for previews);
    ``value`` itself when it does not convert, or for derived fields (already wire values)."""
    converter = _value_converter(fm)
    if converter is None or converter.to_crm is None:
        return value
    try:
        return converter.to_crm(value, WriteContext(crm))
    except ConversionError:
        return value


class FieldCase(StrEnum):
    """The rows of ADR 0006's three-way table, for one field."""

    #: S == L, C == L (or C unknown): nobody changed it.
    UNCHANGED = "unchanged"
    #: S != L, C == L (or C unknown): the CS side changed it.
    CS_CHANGED = "cs_changed"
    #: S == L, C != L: the CRM changed it.
    CRM_CHANGED = "crm_changed"
    #: S == C (!= L, or no ledger row): both sides hold the same value; the ledger takes it.
    SAME_CHANGE = "same_change"
    #: S != L, C != L, S != C: the field's conflict policy decides.
    CONFLICT = "conflict"
    #: No ledger row and S != C (or C unknown): never synced.
    NEVER_SYNCED = "never_synced"


def classify(ledger_hash: str | None, crm_hash: str | None, cs_hash: str) -> FieldCase:
    """Which row of the three-way table a field is in.

    ``ledger_hash``: the ledger's ``value_hash`` (None: no ledger row); ``crm_hash``: the hash of
    the CRM value just pulled (pull) or the ledger's ``crm_hash`` (push; None: unknown);
    ``cs_hash``: the hash of the CS value (:func:`field_hash` of :func:`outbound_value`).
    """
    if ledger_hash is None:
        if crm_hash is not None and crm_hash == cs_hash:
            return FieldCase.SAME_CHANGE
        return FieldCase.NEVER_SYNCED
    crm_changed = crm_hash is not None and crm_hash != ledger_hash
    cs_changed = cs_hash != ledger_hash
    if not crm_changed:
        return FieldCase.CS_CHANGED if cs_changed else FieldCase.UNCHANGED
    if not cs_changed:
        return FieldCase.CRM_CHANGED
    if crm_hash == cs_hash:
        return FieldCase.SAME_CHANGE
    return FieldCase.CONFLICT
