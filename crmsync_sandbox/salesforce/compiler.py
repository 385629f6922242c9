"""SOQL evaluation: resolve a parsed :class:`~crmsync_sandbox.salesforce.soql.Query` against the
schema and compile it to parameterised SQLite SQL (never row-by-row evaluation in Python).

Semantics kept from Salesforce: text comparisons and sorting are case-insensitive; ``!=`` and
``NOT IN`` include nulls; ``ORDER BY`` defaults to ``ASC NULLS FIRST``; date functions
(``TODAY``, ``LAST_N_DAYS:n`` ...) are day ranges in UTC; ``OFFSET`` is capped at 2,000.
Errors are :class:`SoqlError` with the Salesforce ``errorCode`` and message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from crmsync_sandbox.salesforce import soql
from crmsync_sandbox.salesforce.schema import (
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    FieldDef,
    ObjectDef,
    csv_value,
    from_db,
    normalize_id,
    render_datetime,
)

MAX_OFFSET = 2000


class SoqlError(Exception):
    """A query Salesforce would reject: ``code`` is the wire ``errorCode``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Column:
    """One selected field: output path (canonical names), its definition, its SQL position."""

    path: tuple[str, ...]
    field: FieldDef
    index: int

    @property
    def header(self) -> str:
        return ".".join(self.path)


@dataclass
class Join:
    """A parent relationship reached from the root object (``Account`` on Opportunity)."""

    path: tuple[str, ...]  # canonical relationship names from the root
    obj: ObjectDef
    alias: str
    sql: str
    id_index: int = -1  # SQL position of the parent's Id (None -> relationship is null)


@dataclass
class Compiled:
    """A query ready to run: select list, joins, filter, order, limits."""

    obj: ObjectDef
    kind: str  # "rows" | "count" | "count_field"
    columns: list[Column] = field(default_factory=list)
    joins: dict[tuple[str, ...], Join] = field(default_factory=dict)
    select_sql: list[str] = field(default_factory=list)
    where_sql: str = ""
    params: list[Any] = field(default_factory=list)
    order_sql: str = ""
    limit: int | None = None
    offset: int | None = None
    count_expr: str = ""

    def join_sql(self) -> str:
        return " ".join(j.sql for j in self.joins.values())

    def filter_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        clauses = []
        if not include_deleted:
            clauses.append('t."IsDeleted" = 0')
        if self.where_sql:
            clauses.append(f"({self.where_sql})")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), list(self.params)

    def ids_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        """rowids of matching records in result order (for cursors and bulk snapshots)."""
        where, params = self.filter_sql(include_deleted)
        sql = f"SELECT t.rowid FROM {self.obj.table} AS t {self.join_sql()}{where}{self.order_sql}"
        return sql + self._limit_sql(params), params

    def rows_sql(self, include_deleted: bool, limit: int | None) -> tuple[str, list[Any]]:
        where, params = self.filter_sql(include_deleted)
        sql = (
            f"SELECT {', '.join(self.select_sql)} FROM {self.obj.table} AS t "
            f"{self.join_sql()}{where}{self.order_sql}"
        )
        effective = self.limit
        if limit is not None:
            effective = limit if effective is None else min(effective, limit)
        sql += " LIMIT ?"
        params.append(-1 if effective is None else effective)
        sql += " OFFSET ?"
        params.append(self.offset or 0)
        return sql, params

    def count_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        where, params = self.filter_sql(include_deleted)
        inner = f"SELECT {self.count_expr} AS c FROM {self.obj.table} AS t {self.join_sql()}{where}"
        if self.limit is not None or self.offset:
            inner = f"SELECT 1 AS c FROM {self.obj.table} AS t {self.join_sql()}{where}"
            inner += self._limit_sql(params)
            return f"SELECT COUNT(*) FROM ({inner})", params
        return inner, params

    def page_sql(self) -> str:
        """Rows of a materialised cursor page: params (cursor, from_pos, to_pos)."""
        return (
            f"SELECT {', '.join(self.select_sql)} FROM sf_cursor_row AS c "
            f"JOIN {self.obj.table} AS t ON t.rowid = c.rid {self.join_sql()} "
            "WHERE c.cursor = ? AND c.pos >= ? AND c.pos < ? ORDER BY c.pos"
        )

    def _limit_sql(self, params: list[Any]) -> str:
        if self.limit is None and not self.offset:
            return ""
        params.extend([-1 if self.limit is None else self.limit, self.offset or 0])
        return " LIMIT ? OFFSET ?"

    # ---- rendering ----------------------------------------------------------------------

    def renderer(self, version: str) -> Callable[[Sequence[Any]], dict[str, Any]]:
        """A function turning one SQL row into a Salesforce JSON record."""
        base = f"/services/data/v{version}/sobjects/"
        root_type = self.obj.name
        plan: list[tuple[tuple[str, ...], FieldDef, int]] = [
            (c.path, c.field, c.index) for c in self.columns
        ]
        joins = {j.path: j for j in self.joins.values()}

        def render(row: Sequence[Any]) -> dict[str, Any]:
            record: dict[str, Any] = {
                "attributes": {"type": root_type, "url": base + root_type + "/" + row[0]}
            }
            holders: dict[tuple[str, ...], dict[str, Any] | None] = {(): record}

            def holder(path: tuple[str, ...]) -> dict[str, Any] | None:
                if path in holders:
                    return holders[path]
                parent = holder(path[:-1])
                sub: dict[str, Any] | None = None
                if parent is not None:
                    join = joins[path]
                    pid = row[join.id_index]
                    if pid is not None:
                        url = base + join.obj.name + "/" + pid
                        sub = {"attributes": {"type": join.obj.name, "url": url}}
                    parent[path[-1]] = sub
                holders[path] = sub
                return sub

            for path, fdef, index in plan:
                target = record if len(path) == 1 else holder(path[:-1])
                if target is not None:
                    target[path[-1]] = from_db(fdef, row[index])
            return record

        return render

    def csv_header(self) -> list[str]:
        return [c.header for c in self.columns]

    def csv_cells(self, row: Sequence[Any]) -> list[str]:
        return [csv_value(c.field, row[c.index]) for c in self.columns]


# ---- compilation ---------------------------------------------------------------------------


def _field_error(q: str, ref: soql.FieldRef, obj: ObjectDef) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"\n{q}\n{' ' * (ref.column - 1)}^\nERROR at Row:{ref.line}:Column:{ref.column}\n"
        f"No such column '{ref.path[-1]}' on entity '{obj.name}'. If you are attempting to use a "
        "custom field, be sure to append the '__c' after the custom field name. Please reference "
        "your WSDL or the describe call for the appropriate names.",
    )


def _rel_error(q: str, ref: soql.FieldRef, name: str) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"\n{q}\n{' ' * (ref.column - 1)}^\nERROR at Row:{ref.line}:Column:{ref.column}\n"
        f"Didn't understand relationship '{name}' in field path. If you are attempting to use a "
        "custom relationship, be sure to append the '__r' after the custom relationship name. "
        "Please reference your WSDL or the describe call for the appropriate names.",
    )


class _Compiler:
    def __init__(
        self, text: str, query: soql.Query, objects: dict[str, ObjectDef], now: datetime
    ) -> None:
        self.text = text
        self.query = query
        self.objects = objects
        self.now = now
        obj = objects.get(query.from_object.lower())
        if obj is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"\n{text}\n{' ' * (query.from_column - 1)}^\n"
                f"ERROR at Row:{query.from_line}:Column:{query.from_column}\n"
                f"sObject type '{query.from_object}' is not supported. If you are attempting to "
                "use a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        self.obj = obj
        self.out = Compiled(obj=obj, kind="rows")

    def resolve(self, ref: soql.FieldRef) -> tuple[str, FieldDef]:
        """SQL expression and definition of a field path, adding parent joins as needed."""
        path = list(ref.path)
        if (
            len(path) > 1
            and path[0].lower() == self.obj.name.lower()
            and self.obj.relationship(path[0]) is None
        ):
            path = path[1:]
        obj = self.obj
        alias = "t"
        rel_path: tuple[str, ...] = ()
        for name in path[:-1]:
            ref_field = obj.relationship(name)
            if ref_field is None or ref_field.reference_to is None:
                raise _rel_error(self.text, ref, name)
            assert ref_field.relationship_name is not None
            rel_path = (*rel_path, ref_field.relationship_name)
            parent = self.objects[ref_field.reference_to.lower()]
            join = self.out.joins.get(rel_path)
            if join is None:
                new_alias = f"p{len(self.out.joins) + 1}"
                join = Join(
                    path=rel_path,
                    obj=parent,
                    alias=new_alias,
                    sql=(
                        f"LEFT JOIN {parent.table} AS {new_alias} "
                        f'ON {new_alias}."Id" = {alias}."{ref_field.name}"'
                    ),
                )
                self.out.joins[rel_path] = join
            obj, alias = parent, join.alias
        fdef = obj.get(path[-1])
        if fdef is None:
            raise _field_error(self.text, ref, obj)
        return f'{alias}."{fdef.name}"', fdef

    def compile(self) -> Compiled:
        q = self.query
        out = self.out
        out.select_sql.append('t."Id"')
        counts = [i for i in q.select if not isinstance(i, soql.FieldRef)]
        if counts:
            if len(q.select) != 1:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    "Field must be grouped or aggregated: COUNT() must be the only selected item",
                )
            item = counts[0]
            if isinstance(item, soql.CountAll):
                out.kind = "count"
                out.count_expr = "COUNT(*)"
            else:
                assert isinstance(item, soql.CountField)
                expr, _ = self.resolve(item.field)
                out.kind = "count_field"
                out.count_expr = f"COUNT({expr})"
            if q.order_by:
                raise SoqlError("MALFORMED_QUERY", "ORDER BY not allowed with COUNT()")
        else:
            seen: set[tuple[str, ...]] = set()
            for ref in q.select:
                assert isinstance(ref, soql.FieldRef)
                expr, fdef = self.resolve(ref)
                path = self._canonical_path(ref, fdef)
                if path in seen:
                    raise SoqlError("DUPLICATE_FIELD", f"duplicate field selected: {ref.text}")
                seen.add(path)
                out.columns.append(Column(path, fdef, len(out.select_sql)))
                out.select_sql.append(expr)
        if q.where is not None:
            out.where_sql = self.condition(q.where)
        if q.order_by:
            parts = []
            for o in q.order_by:
                expr, fdef = self.resolve(o.field)
                if fdef.type in ("textarea",):
                    raise SoqlError(
                        "INVALID_FIELD", f"field '{fdef.name}' can not be sorted in a query call"
                    )
                coll = " COLLATE NOCASE" if fdef.nocase else ""
                part = f"{expr}{coll} {'DESC' if o.descending else 'ASC'}"
                if o.descending and not o.nulls_last:
                    part += " NULLS FIRST"
                elif not o.descending and o.nulls_last:
                    part += " NULLS LAST"
                parts.append(part)
            out.order_sql = " ORDER BY " + ", ".join(parts)
        if q.offset is not None and q.offset > MAX_OFFSET:
            raise SoqlError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"Maximum SOQL offset allowed is {MAX_OFFSET}",
            )
        out.limit = q.limit
        out.offset = q.offset
        # ids of joined parents, for null relationships
        for join in out.joins.values():
            join.id_index = len(out.select_sql)
            out.select_sql.append(f'{join.alias}."Id"')
        return out

    def _canonical_path(self, ref: soql.FieldRef, fdef: FieldDef) -> tuple[str, ...]:
        path = list(ref.path)
        if (
            len(path) > 1
            and path[0].lower() == self.obj.name.lower()
            and self.obj.relationship(path[0]) is None
        ):
            path = path[1:]
        obj = self.obj
        names: list[str] = []
        for name in path[:-1]:
            rel = obj.relationship(name)
            assert rel is not None
            assert rel.relationship_name
            assert rel.reference_to
            names.append(rel.relationship_name)
            obj = self.objects[rel.reference_to.lower()]
        names.append(fdef.name)
        return tuple(names)

    # ---- WHERE ----------------------------------------------------------------------------

    def condition(self, cond: soql.Condition) -> str:
        if isinstance(cond, soql.And):
            return " AND ".join(f"({self.condition(c)})" for c in cond.items)
        if isinstance(cond, soql.Or):
            return " OR ".join(f"({self.condition(c)})" for c in cond.items)
        if isinstance(cond, soql.Not):
            return f"NOT IFNULL(({self.condition(cond.item)}), 0)"
        if isinstance(cond, soql.Like):
            expr, fdef = self.resolve(cond.field)
            if fdef.type not in TEXT_TYPES and fdef.type not in ID_TYPES:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"invalid operator on id field or non-text field: {fdef.name} LIKE",
                )
            if not isinstance(cond.pattern, soql.Quoted):
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a quoted string")
            self.out.params.append(cond.pattern.value)
            return f"{expr} LIKE ? ESCAPE '\\'"
        if isinstance(cond, soql.In):
            expr, fdef = self.resolve(cond.field)
            values = [self.value(fdef, v, allow_range=False) for v in cond.values]
            coll = " COLLATE NOCASE" if fdef.nocase else ""
            marks = ", ".join("?" for _ in values)
            non_null = [v for v in values if v is not None]
            has_null = len(non_null) != len(values)
            self.out.params.extend(non_null)
            marks = ", ".join("?" for _ in non_null) or "NULL"
            if cond.negated:
                sql = f"({expr} IS NULL OR {expr}{coll} NOT IN ({marks}))"
                return (
                    f"({expr} IS NOT NULL AND {expr}{coll} NOT IN ({marks}))" if has_null else sql
                )
            sql = f"{expr}{coll} IN ({marks})"
            return f"({sql} OR {expr} IS NULL)" if has_null else sql
        assert isinstance(cond, soql.Compare)
        expr, fdef = self.resolve(cond.field)
        if isinstance(cond.value, soql.Null):
            if cond.op == "=":
                return f"{expr} IS NULL"
            if cond.op == "!=":
                return f"{expr} IS NOT NULL"
            raise SoqlError("MALFORMED_QUERY", f"invalid operator {cond.op} for null")
        if isinstance(cond.value, soql.DateLiteral):
            start, end = self.date_range(fdef, cond.value)
            p = self.out.params
            if cond.op == "=":
                p.extend([start, end])
                return f"({expr} >= ? AND {expr} < ?)"
            if cond.op == "!=":
                p.extend([start, end])
                return f"({expr} IS NULL OR {expr} < ? OR {expr} >= ?)"
            bound = {"<": start, "<=": end, ">": end, ">=": start}[cond.op]
            op = {"<": "<", "<=": "<", ">": ">=", ">=": ">="}[cond.op]
            p.append(bound)
            return f"{expr} {op} ?"
        value = self.value(fdef, cond.value, allow_range=True)
        coll = " COLLATE NOCASE" if fdef.nocase else ""
        self.out.params.append(value)
        if cond.op == "!=":
            return f"{expr} IS NOT ?{coll}"
        if fdef.type == "boolean" and cond.op not in ("=",):
            raise SoqlError("INVALID_FIELD", f"invalid operator on boolean field: {fdef.name}")
        return f"{expr} {cond.op} ?{coll}"

    def _type_error(self, fdef: FieldDef, expected: str) -> SoqlError:
        return SoqlError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{fdef.name}' must be of type {expected} "
            "and should not be enclosed in quotes",
        )

    def value(self, fdef: FieldDef, v: soql.Value, *, allow_range: bool) -> Any:
        t = fdef.type
        if isinstance(v, soql.Null):
            return None
        if isinstance(v, soql.DateLiteral):
            raise SoqlError("MALFORMED_QUERY", "date functions are not allowed in IN lists")
        if t in TEXT_TYPES or t in ID_TYPES:
            if not isinstance(v, soql.Quoted):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{fdef.name}' must be of type "
                    f"{t} and should be enclosed in quotes",
                )
            text = v.value.replace("\\%", "%").replace("\\_", "_")
            return normalize_id(text) if t in ID_TYPES else text
        if t == "boolean":
            if not isinstance(v, bool):
                raise self._type_error(fdef, "boolean")
            return int(v)
        if t in NUMBER_TYPES:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self._type_error(fdef, "double" if t != "int" else "int")
            return v
        if t == "date":
            if isinstance(v, datetime) or not isinstance(v, date):
                raise self._type_error(fdef, "date")
            return v.isoformat()
        if t == "datetime":
            if not isinstance(v, datetime):
                raise self._type_error(fdef, "dateTime")
            return render_datetime(v)
        raise SoqlError("MALFORMED_QUERY", f"unsupported filter on {fdef.name}")

    def date_range(self, fdef: FieldDef, lit: soql.DateLiteral) -> tuple[str, str]:
        today = self.now.astimezone(UTC).date()
        n = lit.n
        ranges = {
            "TODAY": (today, today + timedelta(days=1)),
            "YESTERDAY": (today - timedelta(days=1), today),
            "TOMORROW": (today + timedelta(days=1), today + timedelta(days=2)),
            "LAST_N_DAYS": (today - timedelta(days=n), today + timedelta(days=1)),
            "NEXT_N_DAYS": (today + timedelta(days=1), today + timedelta(days=n + 1)),
        }
        if lit.name not in ranges:
            raise SoqlError("MALFORMED_QUERY", f"unsupported date literal {lit.name}")
        start, end = ranges[lit.name]
        if fdef.type == "date":
            return start.isoformat(), end.isoformat()
        if fdef.type == "datetime":
            return (
                render_datetime(datetime.combine(start, time(), UTC)),
                render_datetime(datetime.combine(end, time(), UTC)),
            )
        raise self._type_error(fdef, "date or dateTime")


def compile_query(text: str, objects: dict[str, ObjectDef], now: datetime) -> Compiled:
    """Parse and compile SOQL; raise :class:`SoqlError` (MALFORMED_QUERY for syntax errors)."""
    try:
        parsed = soql.parse(text)
    except soql.SoqlSyntaxError as exc:
        raise SoqlError("MALFORMED_QUERY", exc.message) from exc
    return _Compiler(text, parsed, objects, now).compile()
