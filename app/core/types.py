"""Type aliases shared by the layers (starlette keeps its own in ``starlette/types.py``).

Defined once here so the adapters, the mappers, the engine and the settings agree on them
without importing each other.
"""

from __future__ import annotations

from typing import Any, Literal

CrmName = Literal["salesforce", "hubspot"]
"""A CRM crmsync syncs with."""

CRM_NAMES: tuple[CrmName, ...] = ("salesforce", "hubspot")

WireRecord = dict[str, Any]
"""A CRM record as it crosses the adapter boundary: the CRM's own field names and JSON-ish
values, flattened (see :mod:`app.crm.base`). Mappers read it and never change it."""
