"""Errors raised by the mapping layer.

::

    ValueError
     ├── ConversionError      a converter rejected one value (no field context yet)
     ├── MappingError         one CRM record could not be mapped: field, value, reason
     └── MappingConfigError   the mapping file (TOML) or a MappingSet is invalid

``MappingError`` is a *data* error: the engine records it as a ``sync_errors`` row with
category :data:`MappingError.category` (``validation``), skips the record and goes on; retrying
without fixing the CRM value (or the mapping) gives the same result, so it is not retriable.
Only a bad id or stamp, or a ``required`` field without a valid value, raises it: any other bad
value is a :class:`FieldIssue` (not an exception): the record is stored with that field empty
(or cut, or a placeholder) and the engine adds a field-level ``sync_errors`` row.
``MappingConfigError`` is fatal at start-up: nothing can be synced with a broken mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

_MAX_VALUE_REPR = 200


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > _MAX_VALUE_REPR:
        return text[: _MAX_VALUE_REPR - 3] + "..."
    return text


class ConversionError(ValueError):
    """A converter could not convert a value; :func:`app.mappers.record.map_record` adds the
    field name and re-raises it as :class:`MappingError`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MappingError(ValueError):
    """A CRM value that cannot be stored in (or written from) the CS database.

    Attributes: ``field`` (the CRM field name), ``value`` (the offending value, as received),
    ``reason`` (what is wrong and what would fix it), ``column`` (the CS column, when known).
    """

    category = "validation"
    retriable = False

    def __init__(self, field: str, value: Any, reason: str, *, column: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.column = column
        target = f" -> {column}" if column else ""
        super().__init__(f"{field}{target}: {reason} (value {_short_repr(value)})")

    def attrs(self) -> dict[str, Any]:
        """Structured form for logs and the ``sync_errors.payload`` column (value shortened)."""
        return {
            "field": self.field,
            "column": self.column,
            "value": _short_repr(self.value),
            "reason": self.reason,
            "category": self.category,
        }


#: A bad value (unparseable, out of the column's range, too long for a non-text converter).
INVALID_FIELD: Final = "invalid_field"
#: A NOT NULL column the CRM left empty, stored with a placeholder.
MISSING_FIELD: Final = "missing_field"


@dataclass(frozen=True)
class FieldIssue:
    """One field of a stored record that could not be stored as the CRM has it.

    ``value`` is the raw wire value; ``stored`` says what was stored instead (``"empty"``,
    ``"cut to 255 characters"``, ``"placeholder '(no name) 123'"``).
    """

    field: str
    column: str
    value: Any
    reason: str
    stored: str
    category: Literal["invalid_field", "missing_field"] = INVALID_FIELD

    @property
    def message(self) -> str:
        return (
            f"{self.field} -> {self.column}: {self.reason} (value {_short_repr(self.value)}); "
            f"stored {self.stored}"
        )

    def attrs(self) -> dict[str, Any]:
        """Structured form for the ``sync_errors.payload`` column (the raw value, unshortened)."""
        return {
            "field": self.field,
            "column": self.column,
            "value": self.value,
            "reason": self.reason,
            "stored": self.stored,
        }


class MappingConfigError(ValueError):
    """The mapping configuration is invalid. ``key`` is the TOML key path that is wrong
    (``salesforce.Account.fields.Industry.direction``), so the message says where to look."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")
