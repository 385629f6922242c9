"""The CS columns a mapping may target, as plain constants.

The mappers must not import :mod:`app.db` (they are pure), so the column names, string lengths,
numeric sizes and NOT NULL defaults of the three CRM-mirrored tables are repeated here.
``tests/unit/test_mappers_columns.py`` compares these constants with :mod:`app.db.models`, so a
schema change that is not reflected here fails the unit suite instead of a sync run.

The value limits the mapping checks (:func:`value_bounds`) are derived from the column types
recorded here (``Numeric(precision, scale)``, ``Integer``/``BigInteger`` width, ``String(n)``),
never kept as a second list: a value out of them is caught before the database sees it, the same
on SQLite (which would store it) and PostgreSQL (which refuses it and the whole statement).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

CsTable = Literal["accounts", "opportunities", "handover_notes"]

CS_TABLES: frozenset[str] = frozenset({"accounts", "opportunities", "handover_notes"})

# fmt: off
#: Every column of each table (the drift test checks this set equals the model's columns).
CS_COLUMNS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "accounts": frozenset(
            {
                "id", "created_at", "updated_at", "sf_id", "hs_id", "sf_modified_at",
                "hs_modified_at", "deleted_at", "field_stamps", "cs_changed_at", "crmsync_id",
                "name", "domain", "sales_owner",
                "csm_id", "backup_csm_id", "industry", "currency", "arr", "mrr", "potential_arr",
                "licensed_seats", "plan", "lifecycle_stage", "lifecycle_entered_at",
                "customer_since_on", "contract_start_on", "contract_end_on", "auto_renew",
                "strategic_account", "churn_reason", "churned_at", "tier", "tier_override",
                "tier_override_reason", "tier_override_until", "growth_focus", "health_score",
                "health_band", "health_trend", "health_reasons", "health_coverage",
                "loyalty_type", "false_loyalty", "health_computed_at", "renewal_on",
                "renewal_status", "renewal_risk", "flags", "signals_changed_at",
                "csm_email", "onboarding_status",
            }
        ),
        "opportunities": frozenset(
            {
                "id", "created_at", "updated_at", "sf_id", "hs_id", "sf_modified_at",
                "hs_modified_at", "deleted_at", "field_stamps", "cs_changed_at", "crmsync_id",
                "account_id", "sf_account_id",
                "hs_company_id", "name", "stage", "amount", "currency", "close_on", "is_closed",
                "is_won", "type", "contract_term_months", "term_start_on", "sales_owner",
                "preassigned_csm_email",
            }
        ),
        "handover_notes": frozenset(
            {
                "id", "created_at", "updated_at", "sf_id", "hs_id", "sf_modified_at",
                "hs_modified_at", "deleted_at", "field_stamps", "cs_changed_at", "crmsync_id",
                "account_id", "opportunity_id",
                "sf_parent_id", "hs_company_id", "hs_deal_id", "author", "title", "body", "sold",
                "contacts", "goals", "success_criteria", "special_terms", "risks", "fit",
                "timeline", "completeness", "status", "origin",
            }
        ),
    }
)

#: Columns the engine owns: a field mapping may not target them. The CRM id and stamp columns are
#: filled from ``ObjectMapping.id_field``/``modified_field``; the parent links (``account_id``,
#: ``opportunity_id``) are resolved by the engine from ``ObjectMapping.parents``.
RESERVED_COLUMNS: frozenset[str] = frozenset(
    {
        "id", "created_at", "updated_at", "sf_id", "hs_id", "sf_modified_at", "hs_modified_at",
        "deleted_at", "field_stamps", "cs_changed_at", "crmsync_id", "account_id",
        "opportunity_id", "csm_id", "backup_csm_id",
    }
)

#: Maximum length of each bounded string column (``String(n)``).
STRING_LENGTHS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "accounts": MappingProxyType(
            {
                "sf_id": 18, "hs_id": 32, "crmsync_id": 36, "name": 255, "domain": 255,
                "sales_owner": 64,
                "industry": 128, "currency": 3, "plan": 128, "lifecycle_stage": 32,
                "churn_reason": 255, "tier": 16, "tier_override": 16,
                "tier_override_reason": 255, "growth_focus": 16, "health_band": 16,
                "health_trend": 8, "health_reasons": 255, "loyalty_type": 16,
                "renewal_status": 16, "renewal_risk": 16, "csm_email": 255,
                "onboarding_status": 16,
            }
        ),
        "opportunities": MappingProxyType(
            {
                "sf_id": 18, "hs_id": 32, "crmsync_id": 36, "sf_account_id": 18,
                "hs_company_id": 32, "name": 255,
                "stage": 64, "currency": 3, "type": 32, "sales_owner": 64,
                "preassigned_csm_email": 320,
            }
        ),
        "handover_notes": MappingProxyType(
            {
                "sf_id": 18, "hs_id": 32, "crmsync_id": 36, "sf_parent_id": 18, "hs_company_id": 32,
                "hs_deal_id": 32, "author": 255, "title": 255, "fit": 16, "status": 16,
                "origin": 8,
            }
        ),
    }
)

#: ``Numeric(precision, scale)`` columns that a mapping may fill.
NUMERIC_SIZES: Mapping[str, Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        "accounts": MappingProxyType({"arr": (18, 2), "mrr": (18, 2), "potential_arr": (18, 2)}),
        "opportunities": MappingProxyType({"amount": (18, 2)}),
        "handover_notes": MappingProxyType({}),
    }
)

#: Integer columns that a mapping may fill, by width in bits (``Integer`` 32, ``BigInteger`` 64).
INTEGER_BITS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "accounts": MappingProxyType(
            {"licensed_seats": 32, "health_score": 32, "health_coverage": 32}
        ),
        "opportunities": MappingProxyType({"contract_term_months": 32}),
        "handover_notes": MappingProxyType({"completeness": 32}),
    }
)

# fmt: on

#: NOT NULL columns without a value from the CRM get this value instead of None (a CRM null on a
#: checkbox means false; an empty handover section is an empty list).
NOT_NULL_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "accounts": MappingProxyType({"strategic_account": False, "flags": ()}),
        "opportunities": MappingProxyType({"is_closed": False, "is_won": False}),
        "handover_notes": MappingProxyType(
            {
                "sold": MappingProxyType({}),
                "contacts": (),
                "goals": (),
                "success_criteria": (),
                "risks": (),
                "origin": "crm",
            }
        ),
    }
)

#: NOT NULL columns with no sensible default. A CRM record that leaves one empty is stored with a
#: placeholder (:data:`PLACEHOLDER_SOURCES`) and a ``missing_field`` error, unless its field
#: mapping is ``required`` (then the record is kept out with a ``MappingError``).
REQUIRED_COLUMNS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "accounts": frozenset({"name"}),
        "opportunities": frozenset({"name"}),
        "handover_notes": frozenset(),
    }
)


#: Where the placeholder of an empty NOT NULL column comes from: the first of these columns that
#: has a value in the same record, else ``"(no name) <CRM id>"`` (see docs/mapping.md).
PLACEHOLDER_SOURCES: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "accounts": MappingProxyType({"name": ("domain",)}),
        "opportunities": MappingProxyType({"name": ()}),
        "handover_notes": MappingProxyType({}),
    }
)


def value_bounds(table: str, column: str) -> tuple[Any, Any] | None:
    """Exclusive ``(low, high)`` limits of a numeric column's values, or None.

    ``Integer``/``BigInteger``: the two's-complement range of its width. ``Numeric(p, s)``: the
    database rounds to ``s`` decimals, then the integer part must have at most ``p - s`` digits,
    so a value is stored iff ``|v| < 10**(p - s) - 0.5 * 10**-s`` (PostgreSQL rounds half away
    from zero). Computed once per column when a mapping is compiled, not per value.
    """
    bits = INTEGER_BITS.get(table, {}).get(column)
    if bits is not None:
        limit = 2 ** (bits - 1)
        return (-limit - 1, limit)
    size = NUMERIC_SIZES.get(table, {}).get(column)
    if size is not None:
        precision, scale = size
        bound = Decimal(10) ** (precision - scale) - Decimal(5) * Decimal(10) ** -(scale + 1)
        return (-bound, bound)
    return None


def default_for(table: str, column: str) -> Any:
    """A fresh (mutable) copy of the NOT NULL default of ``table.column``, or None."""
    value = NOT_NULL_DEFAULTS.get(table, {}).get(column)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def is_mappable(table: str, column: str) -> bool:
    """Whether a field mapping may target ``table.column``."""
    return column in CS_COLUMNS.get(table, frozenset()) and column not in RESERVED_COLUMNS
