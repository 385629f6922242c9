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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["LedgerEntry", "canonical", "value_hash"]


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
        return {"t": aware.isoformat(timespec="microseconds")}
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
