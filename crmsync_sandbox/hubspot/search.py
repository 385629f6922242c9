"""CRM search request -> parameterised SQL over one ``hs_<type>`` table.

Owns the search body rules of crm-api.md B.5: filterGroups OR'ed, filters AND'ed, all
operators, sorts given as objects or strings, top-level ``filters``, limit <= 200, integer-offset
``after``, 5 groups x 6 filters / 18 total, body <= 3,000 characters, 400 past 10,000 results.
``hs_object_id``, ``hs_lastmodifieddate`` and the create date map onto indexed columns; other
properties are read with ``json_extract`` and compared by their declared type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crmsync_sandbox.hubspot import schema
from crmsync_sandbox.hubspot.schema import PropertyDef
from crmsync_sandbox.hubspot.store import json_path

MAX_BODY_CHARS = 3000
MAX_LIMIT = 200
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
MAX_RESULTS = 10_000

OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
_COMPARE = {"EQ": "=", "NEQ": "!=", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}


class SearchError(Exception):
    """A search body HubSpot answers with 400 VALIDATION_ERROR."""


@dataclass
class CompiledSearch:
    """WHERE clause (with params), ORDER BY clause, paging and the properties to return."""

    where: str
    params: list[Any]
    order_by: str
    offset: int
    limit: int
    properties: list[str] | None


def compile_search(
    object_type: str,
    body: dict[str, Any],
    props: dict[str, PropertyDef],
    *,
    visible_before_ms: int | None,
) -> CompiledSearch:
    """Compile a search body; raise :class:`SearchError` for the documented 400s."""
    groups_raw = body.get("filterGroups") or []
    if not isinstance(groups_raw, list):
        raise SearchError("filterGroups must be a list")
    groups: list[list[dict[str, Any]]] = []
    for g in groups_raw:
        filters = g.get("filters") if isinstance(g, dict) else None
        groups.append(list(filters or []))
    top = body.get("filters")
    if top:
        if not isinstance(top, list):
            raise SearchError("filters must be a list")
        groups.append(list(top))
    if len(groups) > MAX_GROUPS:
        raise SearchError(
            f"Too many filter groups: {len(groups)}. The maximum is {MAX_GROUPS} filterGroups."
        )
    total = 0
    for g in groups:
        if len(g) > MAX_FILTERS_PER_GROUP:
            raise SearchError(
                f"Too many filters in a filter group: {len(g)}. The maximum is "
                f"{MAX_FILTERS_PER_GROUP} filters per filterGroup."
            )
        total += len(g)
    if total > MAX_FILTERS:
        raise SearchError(f"Too many filters: {total}. The maximum is {MAX_FILTERS} filters.")

    params: list[Any] = []
    clauses = ["archived = 0"]
    if visible_before_ms is not None:
        clauses.append("modified_ms <= ?")
        params.append(visible_before_ms)
    group_sql: list[str] = []
    for g in groups:
        parts = [_filter_sql(object_type, f, props, params) for f in g]
        if parts:
            group_sql.append("(" + " AND ".join(parts) + ")")
    if group_sql:
        clauses.append("(" + " OR ".join(group_sql) + ")")
    query = body.get("query")
    if isinstance(query, str) and query.strip():
        like = []
        for name in schema.QUERY_PROPERTIES[object_type]:
            like.append(f"lower(json_extract(props, '{json_path(name)}')) LIKE ?")
            params.append("%" + query.strip().lower() + "%")
        clauses.append("(" + " OR ".join(like) + ")")

    order_by = _order_by(object_type, body.get("sorts"), props)
    limit = _int(body.get("limit", 10), "limit")
    if limit < 0 or limit > MAX_LIMIT:
        raise SearchError(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
    after_raw = body.get("after")
    offset = 0 if after_raw in (None, "") else _int(after_raw, "after")
    if offset < 0:
        raise SearchError("after must not be negative")
    if offset >= MAX_RESULTS:
        raise SearchError(
            f"Paging past {MAX_RESULTS} results is not supported: after={offset}. "
            "Narrow the filters (for example a smaller hs_lastmodifieddate window, or "
            "hs_object_id GT the last id seen) and start again at after=0."
        )
    requested = body.get("properties")
    properties = [str(p) for p in requested] if isinstance(requested, list) and requested else None
    return CompiledSearch(
        where=" AND ".join(clauses),
        params=params,
        order_by=order_by,
        offset=offset,
        limit=min(limit, MAX_RESULTS - offset),
        properties=properties,
    )


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise SearchError(f"{name} must be an integer, got {value!r}") from exc


def _column(object_type: str, name: str, props: dict[str, PropertyDef]) -> tuple[str, str]:
    """SQL expression of a property and the kind used to compare it."""
    if name == schema.ID_PROPERTY:
        return "id", "int"
    if schema.is_modified_property(object_type, name):
        return "modified_ms", "ms"
    if name == schema.CREATED_PROPERTY[object_type] or name == "createdate":
        return "created_ms", "ms"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise SearchError(f"Unknown property {name!r}")
    prop = props.get(name)
    kind = prop.type if prop is not None else "string"
    expr = f"json_extract(props, '{json_path(name)}')"
    if kind == "number":
        return f"CAST({expr} AS REAL)", "number"
    return expr, kind


def _convert(kind: str, value: Any) -> Any:
    """A filter value as the column's comparable form."""
    text = "" if value is None else str(value)
    try:
        if kind == "int":
            number = int(float(text))
            if not -(2**63) <= number < 2**63:
                raise ValueError(text)
            return number
        if kind == "ms":
            return schema.ms_from_text(text)
        if kind == "number":
            return float(text)
        if kind == "datetime":
            return schema.iso_from_ms(schema.ms_from_text(text))
        if kind == "date":
            return schema.date_text(text) if text else text
    except (ValueError, schema.InvalidValue) as exc:
        raise SearchError(f"Invalid filter value {text!r}") from exc
    return text.lower() if kind in ("string", "enumeration", "bool", "phone_number") else text


def _filter_sql(
    object_type: str, flt: dict[str, Any], props: dict[str, PropertyDef], params: list[Any]
) -> str:
    if not isinstance(flt, dict):
        raise SearchError("each filter must be an object")
    name = str(flt.get("propertyName", ""))
    op = str(flt.get("operator", "EQ")).upper()
    if op not in OPERATORS:
        raise SearchError(f"Unknown operator {op!r}")
    if name.startswith("associations."):
        return _association_sql(object_type, name, op, flt, params)
    expr, kind = _column(object_type, name, props)
    textual = kind in ("string", "enumeration", "bool", "phone_number")
    cmp_expr = f"lower({expr})" if textual else expr
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        if expr in ("id", "modified_ms", "created_ms"):
            return "1" if op == "HAS_PROPERTY" else "0"
        return f"{expr} IS NOT NULL" if op == "HAS_PROPERTY" else f"{expr} IS NULL"
    if op in _COMPARE:
        params.append(_convert(kind, flt.get("value")))
        if op == "NEQ":
            return f"({expr} IS NULL OR {cmp_expr} != ?)"
        return f"{cmp_expr} {_COMPARE[op]} ?"
    if op == "BETWEEN":
        params.append(_convert(kind, flt.get("value")))
        params.append(_convert(kind, flt.get("highValue")))
        return f"{cmp_expr} BETWEEN ? AND ?"
    if op in ("IN", "NOT_IN"):
        values = flt.get("values")
        if not isinstance(values, list) or not values:
            raise SearchError(f"{op} needs a non-empty 'values' list")
        params.extend(_convert(kind, v) for v in values)
        marks = ",".join("?" * len(values))
        if op == "IN":
            return f"{cmp_expr} IN ({marks})"
        return f"({expr} IS NULL OR {cmp_expr} NOT IN ({marks}))"
    # CONTAINS_TOKEN / NOT_CONTAINS_TOKEN: whole-word match, '*' is a wildcard.
    params.append(str(flt.get("value", "")))
    hit = f"hs_contains_token({expr}, ?)"
    return hit if op == "CONTAINS_TOKEN" else f"NOT {hit}"


def _association_sql(
    object_type: str, name: str, op: str, flt: dict[str, Any], params: list[Any]
) -> str:
    to_type = schema.TYPE_ALIASES.get(name.split(".", 1)[1])
    if to_type is None:
        raise SearchError(f"Unknown association {name!r}")
    if op in ("EQ", "IN"):
        raw = flt.get("values") if op == "IN" else [flt.get("value")]
        ids = [_convert("int", v) for v in (raw or [])]
        marks = ",".join("?" * len(ids))
        params.extend([object_type, to_type, *ids])
        return (
            "id IN (SELECT from_id FROM hs_association WHERE from_type = ? AND to_type = ? "
            f"AND to_id IN ({marks}))"
        )
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        params.extend([object_type, to_type])
        neg = "" if op == "HAS_PROPERTY" else "NOT "
        return (
            f"id {neg}IN (SELECT from_id FROM hs_association WHERE from_type = ? AND to_type = ?)"
        )
    raise SearchError(f"Operator {op} is not supported on {name}")


def _order_by(object_type: str, sorts: Any, props: dict[str, PropertyDef]) -> str:
    if not sorts:
        return "id ASC"
    if not isinstance(sorts, list):
        sorts = [sorts]
    if len(sorts) > 1:
        raise SearchError("Only one sort rule can be applied to a search.")
    rule = sorts[0]
    if isinstance(rule, str):
        desc = rule.startswith("-")
        name = rule.lstrip("-+")
    elif isinstance(rule, dict):
        name = str(rule.get("propertyName", ""))
        desc = str(rule.get("direction", "ASCENDING")).upper().startswith("DESC")
    else:
        raise SearchError("sorts must be strings or objects")
    expr, _ = _column(object_type, name, props)
    direction = "DESC" if desc else "ASC"
    if expr == "id":
        return f"id {direction}"
    return f"{expr} {direction}, id ASC"


def contains_token(text: str | None, pattern: str | None) -> int:
    """SQLite function behind CONTAINS_TOKEN: a whole word of ``text`` matches ``pattern``."""
    if text is None or pattern is None:
        return 0
    regex = re.escape(pattern.lower()).replace(r"\*", ".*")
    tokens = re.split(r"[^\w@.*-]+", text.lower())
    return int(any(re.fullmatch(regex, t) for t in tokens if t))
