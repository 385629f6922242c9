"""SOQL subset: a lark grammar and the typed AST it produces. Pure parsing, no schema knowledge.

Supported (crm-api.md A section 4): ``SELECT`` fields, parent paths (``Account.Name``), ``COUNT()``,
``COUNT(field)``; ``FROM`` one object; ``WHERE`` with ``AND``/``OR``/``NOT``, parentheses,
``= != <> < <= > >=``, ``IN``/``NOT IN``, ``LIKE``, ``null``, booleans, quoted strings with
backslash escapes, unquoted date and dateTime literals, ``TODAY``, ``YESTERDAY``, ``TOMORROW``,
``LAST_N_DAYS:n``, ``NEXT_N_DAYS:n``; ``ORDER BY`` with ``ASC``/``DESC`` and
``NULLS FIRST``/``LAST``;
``LIMIT``; ``OFFSET``. Keywords are case-insensitive. Anything else raises :class:`SoqlSyntaxError`
(``MALFORMED_QUERY`` on the wire).

Usage::

    query = parse("SELECT Id, Account.Name FROM Opportunity WHERE Amount > 10 LIMIT 5")
    query.from_object  # 'Opportunity'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Literal

from lark import Lark, Token, Transformer, UnexpectedInput, v_args

GRAMMAR = r"""
?start: query

query: _SELECT select_list _FROM object_name where? order_by? limit? offset?

select_list: select_item ("," select_item)*
?select_item: count_all | count_field | field
count_all: _COUNT "(" ")"
count_field: _COUNT "(" field ")"
field: NAME ("." NAME)*
object_name: NAME

where: _WHERE cond
?cond: or_cond
?or_cond: and_cond (_OR and_cond)*
?and_cond: not_cond (_AND not_cond)*
?not_cond: _NOT not_cond -> not_
         | atom
?atom: "(" cond ")"
     | field OP value -> compare
     | field _IN "(" value ("," value)* ")" -> in_
     | field _NOT _IN "(" value ("," value)* ")" -> not_in
     | field _LIKE value -> like

?value: STRING -> string
      | NUMBER -> number
      | _TRUE -> true
      | _FALSE -> false
      | _NULL -> null
      | DATETIME -> datetime
      | DATE -> date
      | DATE_LITERAL -> date_literal

order_by: _ORDER _BY order_item ("," order_item)*
order_item: field DIRECTION? nulls?
nulls: _NULLS NULLS_POS

limit: _LIMIT INT
offset: _OFFSET INT

_SELECT: "SELECT"i
_FROM: "FROM"i
_WHERE: "WHERE"i
_AND: "AND"i
_OR: "OR"i
_NOT: "NOT"i
_IN: "IN"i
_LIKE: "LIKE"i
_TRUE: "TRUE"i
_FALSE: "FALSE"i
_NULL: "NULL"i
_ORDER: "ORDER"i
_BY: "BY"i
_NULLS: "NULLS"i
_LIMIT: "LIMIT"i
_OFFSET: "OFFSET"i
_COUNT: "COUNT"i
DIRECTION: "ASC"i | "DESC"i
NULLS_POS: "FIRST"i | "LAST"i

OP: "!=" | "<>" | "<=" | ">=" | "=" | "<" | ">"
DATE_LITERAL.3: /(TODAY|YESTERDAY|TOMORROW)(?![A-Za-z0-9_])|(LAST_N_DAYS|NEXT_N_DAYS):\s*\d+/i
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})/
DATE.2: /\d{4}-\d{2}-\d{2}(?![T\d])/
NUMBER: /[+-]?(\d+(\.\d*)?|\.\d+)/
INT: /\d+/
STRING: /'(\\.|[^'\\])*'/
NAME: /[A-Za-z_][A-Za-z0-9_]*/

%import common.WS
%ignore WS
"""


class SoqlSyntaxError(Exception):
    """Unsupported or malformed SOQL; ``message`` is the Salesforce-style error text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---- AST -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRef:
    """A field path as written, e.g. ``("Account", "Name")``; ``line``/``column`` are 1-based."""

    path: tuple[str, ...]
    line: int = 1
    column: int = 1

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class CountAll:
    """``COUNT()``."""


@dataclass(frozen=True)
class CountField:
    """``COUNT(field)``, rendered as ``expr0``."""

    field: FieldRef


SelectItem = FieldRef | CountAll | CountField


@dataclass(frozen=True)
class DateLiteral:
    """``TODAY``, ``YESTERDAY``, ``TOMORROW``, ``LAST_N_DAYS:n``, ``NEXT_N_DAYS:n``."""

    name: str  # upper case
    n: int = 0


@dataclass(frozen=True)
class Null:
    """The ``null`` literal."""


@dataclass(frozen=True)
class Quoted:
    """A quoted string literal (escapes resolved; ``\\%`` and ``\\_`` kept for LIKE)."""

    value: str


Value = Quoted | float | int | bool | Null | date | datetime | DateLiteral

Op = Literal["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Compare:
    field: FieldRef
    op: Op
    value: Value


@dataclass(frozen=True)
class In:
    field: FieldRef
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Like:
    field: FieldRef
    pattern: Value


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Compare | In | Like | And | Or | Not


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_last: bool = False


@dataclass(frozen=True)
class Query:
    select: tuple[SelectItem, ...]
    from_object: str
    from_line: int
    from_column: int
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None

    @property
    def is_count(self) -> bool:
        return any(isinstance(item, CountAll) for item in self.select)


# ---- parsing -------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def unescape(body: str) -> str:
    """Resolve SOQL string escapes; keep ``\\%`` and ``\\_`` escaped (meaningful to LIKE only)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt in "%_":
                out.append("\\" + nxt)
            else:
                raise SoqlSyntaxError(
                    f"Invalid string literal '{body}'. Illegal character sequence"
                )
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _parse_datetime_literal(text: str) -> datetime:
    value = text
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    elif value[-5] in "+-" and ":" not in value[-5:]:
        value = value[:-2] + ":" + value[-2:]
    return datetime.fromisoformat(value).astimezone(UTC)


@v_args(inline=True)
class _ToAst(Transformer[Token, Query]):
    def query(self, select: tuple[SelectItem, ...], obj: Token, *rest: Any) -> Query:
        kw: dict[str, Any] = {}
        for part in rest:
            kw.update(part)
        return Query(
            select=select,
            from_object=str(obj),
            from_line=obj.line or 1,
            from_column=obj.column or 1,
            **kw,
        )

    def select_list(self, *items: SelectItem) -> tuple[SelectItem, ...]:
        return items

    def count_all(self) -> CountAll:
        return CountAll()

    def count_field(self, f: FieldRef) -> CountField:
        return CountField(f)

    def field(self, *names: Token) -> FieldRef:
        first = names[0]
        return FieldRef(tuple(str(n) for n in names), first.line or 1, first.column or 1)

    def object_name(self, name: Token) -> Token:
        return name

    def where(self, cond: Condition) -> dict[str, Any]:
        return {"where": cond}

    def or_cond(self, *items: Condition) -> Or:
        return Or(items)

    def and_cond(self, *items: Condition) -> And:
        return And(items)

    def not_(self, item: Condition) -> Not:
        return Not(item)

    def compare(self, f: FieldRef, op: Token, value: Value) -> Compare:
        text = "!=" if str(op) == "<>" else str(op)
        return Compare(f, text, value)  # type: ignore[arg-type]

    def in_(self, f: FieldRef, *values: Value) -> In:
        return In(f, values)

    def not_in(self, f: FieldRef, *values: Value) -> In:
        return In(f, values, negated=True)

    def like(self, f: FieldRef, value: Value) -> Like:
        return Like(f, value)

    def string(self, tok: Token) -> Quoted:
        return Quoted(unescape(str(tok)[1:-1]))

    def number(self, tok: Token) -> float | int:
        text = str(tok)
        if "." in text:
            return float(text)
        return int(text)

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False

    def null(self) -> Null:
        return Null()

    def datetime(self, tok: Token) -> datetime:
        return _parse_datetime_literal(str(tok))

    def date(self, tok: Token) -> date:
        try:
            return date.fromisoformat(str(tok))
        except ValueError as exc:
            raise SoqlSyntaxError(
                f"line 1:{tok.column} no viable alternative at character"
            ) from exc

    def date_literal(self, tok: Token) -> DateLiteral:
        text = str(tok).upper().replace(" ", "")
        if ":" in text:
            name, n = text.split(":", 1)
            return DateLiteral(name, int(n))
        return DateLiteral(text)

    def order_by(self, *items: OrderItem) -> dict[str, Any]:
        return {"order_by": items}

    def order_item(self, f: FieldRef, *rest: Any) -> OrderItem:
        descending = False
        nulls_last = False
        for part in rest:
            if isinstance(part, Token) and part.type == "DIRECTION":
                descending = str(part).upper() == "DESC"
            elif isinstance(part, bool):
                nulls_last = part
        return OrderItem(f, descending, nulls_last)

    def nulls(self, pos: Token) -> bool:
        return str(pos).upper() == "LAST"

    def limit(self, n: Token) -> dict[str, Any]:
        return {"limit": int(n)}

    def offset(self, n: Token) -> dict[str, Any]:
        return {"offset": int(n)}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)


def parse(text: str) -> Query:
    """Parse one SOQL statement into a :class:`Query`; raise :class:`SoqlSyntaxError`."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None)
        shown = str(token) if token is not None and str(token) else "EOF"
        raise SoqlSyntaxError(
            f"\n{text}\n{' ' * max(exc.column - 1, 0)}^\n"
            f"ERROR at Row:{exc.line}:Column:{exc.column}\nunexpected token: '{shown}'"
        ) from exc
    result = _ToAst().transform(tree)
    assert isinstance(result, Query)
    return result
