"""Errors raised by the mapping layer.

::

    ValueError
     ├── ConversionError      a converter rejected one value (no field context yet)
     ├── MappingError         one CRM record could not be mapped: field, value, reason
     └── MappingConfigError   the mapping file (TOML) or a MappingSet is invalid

``MappingError`` is a *data* error: the engine records it as a ``sync_errors`` row with
category :data:`MappingError.category` (``validation``), skips the record and goes on; retrying
without fixing the CRM value (or the mapping) gives the same result, so it is not retriable.
``MappingConfigError`` is fatal at start-up: nothing can be synced with a broken mapping.
"""

from __future__ import annotations

from typing import Any

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


class MappingConfigError(ValueError):
    """The mapping configuration is invalid. ``key`` is the TOML key path that is wrong
    (``salesforce.Account.fields.Industry.direction``), so the message says where to look."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")
