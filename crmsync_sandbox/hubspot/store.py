"""HubSpot records, associations and properties in SQLite tables prefixed ``hs_``.

One table per object type (``hs_companies``, ``hs_deals``, ``hs_notes``): integer ``id``
(= ``hs_object_id``), ``created_ms``, ``modified_ms`` (= ``hs_lastmodifieddate``), ``archived``,
``archived_ms`` and the other property values as one JSON object of strings. Windows and sorts on
``hs_lastmodifieddate`` / ``hs_object_id`` use the ``(archived, modified_ms)`` index and the rowid;
unique properties get an expression index. Every method takes ``ctx.lock`` itself.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from crmsync_sandbox.hubspot import schema
from crmsync_sandbox.hubspot.schema import PropertyDef

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


@dataclass
class Row:
    """One stored record."""

    object_type: str
    id: int
    created_ms: int
    modified_ms: int
    archived: bool
    archived_ms: int | None
    props: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        """The property value as HubSpot returns it (derived ones included)."""
        if name == schema.ID_PROPERTY:
            return str(self.id)
        if schema.is_modified_property(self.object_type, name):
            return schema.iso_from_ms(self.modified_ms)
        if name == schema.CREATED_PROPERTY[self.object_type]:
            return schema.iso_from_ms(self.created_ms)
        return self.props.get(name)

    def all_values(self) -> dict[str, str | None]:
        out: dict[str, str | None] = dict(self.props)
        for name in (
            schema.ID_PROPERTY,
            schema.MODIFIED_PROPERTY,
            schema.modified_property(self.object_type),
            schema.CREATED_PROPERTY[self.object_type],
        ):
            out[name] = self.value(name)
        return out


class PropertyProblem(Exception):
    """One or more written property values HubSpot would reject (VALIDATION_ERROR)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(p["message"]) for p in problems))
        self.problems = problems


class UniqueConflict(Exception):
    """A value of a ``hasUniqueValue`` property is already held by another record."""

    def __init__(self, name: str, value: str, holder: int) -> None:
        super().__init__(f'A record with {name}="{value}" already exists. Existing ID: {holder}')
        self.name = name
        self.value = value
        self.holder = holder


def _table(object_type: str) -> str:
    if object_type not in schema.OBJECT_TYPES:
        raise KeyError(object_type)
    return f"hs_{object_type}"


def json_path(name: str) -> str:
    """The ``json_extract`` path of a property (names are validated identifiers)."""
    return f"$.{name}"


class Store:
    """SQLite-backed HubSpot state, shared with the Salesforce emulator through one connection."""

    def __init__(self, db: sqlite3.Connection, lock: Any, custom: Mapping[str, Mapping[str, str]]):
        self.db = db
        self.lock = lock
        self._props: dict[str, dict[str, PropertyDef]] = {}
        with self.lock:
            self._create_tables()
            self._load_properties(custom)

    # -- schema ---------------------------------------------------------------------------------

    def _create_tables(self) -> None:
        cur = self.db.cursor()
        for object_type in schema.OBJECT_TYPES:
            t = _table(object_type)
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY, created_ms INTEGER NOT "
                "NULL, modified_ms INTEGER NOT NULL, archived INTEGER NOT NULL DEFAULT 0, "
                "archived_ms INTEGER, props TEXT NOT NULL)"
            )
            cur.execute(f"CREATE INDEX IF NOT EXISTS {t}_mod ON {t}(archived, modified_ms)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {t}_arch ON {t}(archived)")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS hs_association (from_type TEXT NOT NULL, from_id INTEGER "
            "NOT NULL, to_type TEXT NOT NULL, to_id INTEGER NOT NULL, type_id INTEGER NOT NULL, "
            "PRIMARY KEY (from_type, from_id, to_type, to_id, type_id)) WITHOUT ROWID"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS hs_property (object_type TEXT NOT NULL, name TEXT NOT "
            "NULL, definition TEXT NOT NULL, PRIMARY KEY (object_type, name))"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS hs_property_group (object_type TEXT NOT NULL, name TEXT "
            "NOT NULL, label TEXT NOT NULL, display_order INTEGER NOT NULL, "
            "PRIMARY KEY (object_type, name))"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS hs_owner (id INTEGER PRIMARY KEY, email TEXT NOT NULL, "
            "first_name TEXT, last_name TEXT, created_ms INTEGER NOT NULL)"
        )
        self.db.commit()

    def _load_properties(self, custom: Mapping[str, Mapping[str, str]]) -> None:
        for object_type in schema.OBJECT_TYPES:
            self._props[object_type] = {p.name: p for p in schema.BUILTIN_PROPERTIES[object_type]}
        rows = self.db.execute("SELECT object_type, definition FROM hs_property").fetchall()
        for object_type, definition in rows:
            data = json.loads(definition)
            prop = PropertyDef(
                name=data["name"],
                type=data["type"],
                field_type=data["fieldType"],
                label=data.get("label", ""),
                group_name=data.get("groupName", ""),
                description=data.get("description", ""),
                has_unique_value=bool(data.get("hasUniqueValue", False)),
                hubspot_defined=bool(data.get("hubspotDefined", False)),
                options=tuple(data.get("options", ())),
                option_labels=tuple(data.get("optionLabels", ())),
                display_order=int(data.get("displayOrder", -1)),
                created_ms=int(data.get("createdMs", 0)),
            )
            self._props[object_type][prop.name] = prop
        for raw_type, fields in custom.items():
            object_type = schema.TYPE_ALIASES.get(raw_type, raw_type)
            if object_type not in self._props:
                continue
            for name, type_ in fields.items():
                if name not in self._props[object_type]:
                    self._props[object_type][name] = property_from_type(name, type_)
        for object_type in schema.OBJECT_TYPES:
            for prop in self._props[object_type].values():
                if prop.has_unique_value:
                    self._ensure_unique_index(object_type, prop.name)

    def _ensure_unique_index(self, object_type: str, name: str) -> None:
        t = _table(object_type)
        self.db.execute(
            f"CREATE INDEX IF NOT EXISTS {t}_u_{name} ON {t}(json_extract(props, "
            f"'{json_path(name)}'))"
        )

    def properties(self, object_type: str) -> dict[str, PropertyDef]:
        return self._props[object_type]

    def add_property(self, object_type: str, prop: PropertyDef, *, persist: bool = True) -> None:
        """Register a new (custom) property; the caller has checked it does not exist."""
        if not _NAME_RE.match(prop.name):
            raise ValueError(f"invalid property name {prop.name!r}")
        with self.lock:
            self._props[object_type][prop.name] = prop
            if persist:
                definition = {
                    "name": prop.name,
                    "type": prop.type,
                    "fieldType": prop.field_type,
                    "label": prop.label,
                    "groupName": prop.group_name,
                    "description": prop.description,
                    "hasUniqueValue": prop.has_unique_value,
                    "options": list(prop.options),
                    "optionLabels": list(prop.option_labels),
                    "displayOrder": prop.display_order,
                    "hubspotDefined": prop.hubspot_defined,
                    "createdMs": prop.created_ms,
                }
                self.db.execute(
                    "INSERT OR REPLACE INTO hs_property VALUES (?, ?, ?)",
                    (object_type, prop.name, json.dumps(definition)),
                )
            if prop.has_unique_value:
                self._ensure_unique_index(object_type, prop.name)
            self.db.commit()

    def groups(self, object_type: str) -> list[tuple[str, str, int]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT name, label, display_order FROM hs_property_group WHERE object_type = ? "
                "ORDER BY display_order, name",
                (object_type,),
            ).fetchall()
        defaults = [(n, label, -1) for n, label in schema.DEFAULT_GROUPS[object_type]]
        return defaults + [(str(n), str(lb), int(o)) for n, lb, o in rows]

    def add_group(self, object_type: str, name: str, label: str, display_order: int) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO hs_property_group VALUES (?, ?, ?, ?)",
                (object_type, name, label, display_order),
            )
            self.db.commit()

    # -- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _row(object_type: str, raw: Sequence[Any]) -> Row:
        return Row(
            object_type=object_type,
            id=int(raw[0]),
            created_ms=int(raw[1]),
            modified_ms=int(raw[2]),
            archived=bool(raw[3]),
            archived_ms=None if raw[4] is None else int(raw[4]),
            props=json.loads(raw[5]),
        )

    def fetch(self, object_type: str, sql_tail: str, params: Sequence[Any]) -> list[Row]:
        """Rows of ``SELECT ... FROM hs_<type> <sql_tail>``."""
        t = _table(object_type)
        with self.lock:
            raw = self.db.execute(
                f"SELECT id, created_ms, modified_ms, archived, archived_ms, props FROM {t} "
                + sql_tail,
                tuple(params),
            ).fetchall()
        return [self._row(object_type, r) for r in raw]

    def count(self, object_type: str, where: str, params: Sequence[Any]) -> int:
        t = _table(object_type)
        with self.lock:
            (n,) = self.db.execute(
                f"SELECT COUNT(*) FROM {t} WHERE {where}", tuple(params)
            ).fetchone()
        return int(n)

    def get(self, object_type: str, object_id: int) -> Row | None:
        rows = self.fetch(object_type, "WHERE id = ?", (object_id,))
        return rows[0] if rows else None

    def find(
        self,
        object_type: str,
        key: str,
        *,
        id_property: str | None = None,
        archived: bool | None = False,
    ) -> Row | None:
        """The record whose ``id_property`` (default ``hs_object_id``) equals ``key``.

        ``archived``: False = live only, True = archived only, None = either.
        """
        arch = "" if archived is None else f" AND archived = {int(archived)}"
        if id_property in (None, "", schema.ID_PROPERTY):
            object_id = row_id(key)
            if object_id is None:
                return None
            rows = self.fetch(object_type, "WHERE id = ?" + arch, (object_id,))
        else:
            assert id_property is not None
            rows = self.fetch(
                object_type,
                f"WHERE json_extract(props, '{json_path(id_property)}') = ?{arch} LIMIT 1",
                (key,),
            )
        return rows[0] if rows else None

    def find_many(
        self, object_type: str, keys: Sequence[str], *, id_property: str | None, archived: bool
    ) -> dict[str, Row]:
        """Records by key in one query (missing keys are absent from the result)."""
        out: dict[str, Row] = {}
        arch = f" AND archived = {int(archived)}"
        if not keys:
            return out
        if id_property in (None, "", schema.ID_PROPERTY):
            ints: dict[int, str] = {}
            for k in keys:
                object_id = row_id(k)
                if object_id is not None:
                    ints[object_id] = k
            if not ints:
                return out
            marks = ",".join("?" * len(ints))
            for row in self.fetch(object_type, f"WHERE id IN ({marks}){arch}", list(ints)):
                out[ints[row.id]] = row
            return out
        assert id_property is not None
        marks = ",".join("?" * len(keys))
        expr = f"json_extract(props, '{json_path(id_property)}')"
        for row in self.fetch(object_type, f"WHERE {expr} IN ({marks}){arch}", list(keys)):
            value = row.props.get(id_property)
            if value is not None:
                out[value] = row
        return out

    def unique_holder(
        self, object_type: str, name: str, value: str, exclude: int | None
    ) -> int | None:
        expr = f"json_extract(props, '{json_path(name)}')"
        t = _table(object_type)
        with self.lock:
            hit = self.db.execute(
                f"SELECT id FROM {t} WHERE {expr} = ? AND archived = 0 AND id != ? LIMIT 1",
                (value, -1 if exclude is None else exclude),
            ).fetchone()
        return None if hit is None else int(hit[0])

    # -- writes ---------------------------------------------------------------------------------

    def validate(
        self, object_type: str, raw: Mapping[str, Any], *, for_create: bool = False
    ) -> dict[str, str | None]:
        """Written values normalised to stored strings, or :class:`PropertyProblem`."""
        defs = self._props[object_type]
        out: dict[str, str | None] = {}
        problems: list[dict[str, Any]] = []
        for name, value in raw.items():
            prop = defs.get(name)
            if prop is None:
                problems.append(
                    _problem("PROPERTY_DOESNT_EXIST", name, f'Property "{name}" does not exist')
                )
                continue
            if prop.read_only:
                problems.append(
                    _problem(
                        "READ_ONLY_VALUE",
                        name,
                        f'"{name}" is a read only property; its value cannot be set.',
                    )
                )
                continue
            try:
                out[name] = schema.normalise_value(prop, value)
            except schema.InvalidValue as exc:
                problems.append(_problem(exc.code, name, exc.message))
        if for_create and object_type == "notes" and not out.get("hs_timestamp"):
            problems.append(
                _problem("REQUIRED_PROPERTY", "hs_timestamp", 'Property "hs_timestamp" is required')
            )
        if problems:
            raise PropertyProblem(problems)
        return out

    def check_unique(
        self, object_type: str, values: Mapping[str, str | None], exclude: int | None
    ) -> None:
        defs = self._props[object_type]
        for name, value in values.items():
            prop = defs.get(name)
            if value is not None and prop is not None and prop.has_unique_value:
                holder = self.unique_holder(object_type, name, value, exclude)
                if holder is not None:
                    raise UniqueConflict(name, value, holder)

    def insert(self, object_type: str, values: Mapping[str, str | None], now_ms: int) -> Row:
        """A new record (values already validated; the caller commits); returns it."""
        props = {k: v for k, v in values.items() if v is not None}
        if object_type == "deals":
            props.setdefault("pipeline", "default")
            props.update(schema.derive_deal_flags(props.get("dealstage")))
        t = _table(object_type)
        with self.lock:
            (top,) = self.db.execute(f"SELECT MAX(id) FROM {t}").fetchone()
            new_id = (top or schema.ID_BASE[object_type]) + 1
            self.db.execute(
                f"INSERT INTO {t} (id, created_ms, modified_ms, archived, archived_ms, props) "
                "VALUES (?, ?, ?, 0, NULL, ?)",
                (new_id, now_ms, now_ms, json.dumps(props, separators=(",", ":"))),
            )
        return Row(object_type, new_id, now_ms, now_ms, False, None, props)

    def apply(self, row: Row, values: Mapping[str, str | None], now_ms: int) -> Row:
        """Overwrite given values of a record (``None`` clears) and stamp it (caller commits)."""
        props = dict(row.props)
        for k, v in values.items():
            if v is None:
                props.pop(k, None)
            else:
                props[k] = v
        if row.object_type == "deals":
            props.update(schema.derive_deal_flags(props.get("dealstage")))
        t = _table(row.object_type)
        with self.lock:
            self.db.execute(
                f"UPDATE {t} SET props = ?, modified_ms = ? WHERE id = ?",
                (json.dumps(props, separators=(",", ":")), now_ms, row.id),
            )
        return replace(row, props=props, modified_ms=now_ms)

    def commit(self) -> None:
        """Commit the writes of one request (``insert``/``apply`` leave the transaction open)."""
        with self.lock:
            self.db.commit()

    def archive(self, object_type: str, ids: Iterable[int], now_ms: int) -> int:
        t = _table(object_type)
        id_list = list(ids)
        with self.lock:
            cur = self.db.executemany(
                f"UPDATE {t} SET archived = 1, archived_ms = ?, modified_ms = ? "
                "WHERE id = ? AND archived = 0",
                [(now_ms, now_ms, i) for i in id_list],
            )
            self.db.commit()
            return int(cur.rowcount)

    def delete(self, object_type: str, object_id: int) -> None:
        """Remove a record entirely (a merge loser vanishes without being archived)."""
        with self.lock:
            self.db.execute(f"DELETE FROM {_table(object_type)} WHERE id = ?", (object_id,))
            self.db.commit()

    def stamp(self, object_type: str, ids: Sequence[int], at_ms: int) -> None:
        t = _table(object_type)
        with self.lock:
            self.db.executemany(
                f"UPDATE {t} SET modified_ms = ? WHERE id = ?", [(at_ms, i) for i in ids]
            )
            self.db.commit()

    def bulk_insert(self, object_type: str, rows: Iterable[tuple[int, int, int, str]]) -> int:
        """Seed rows ``(id, created_ms, modified_ms, props_json)`` in chunks; returns the count."""
        t = _table(object_type)
        sql = (
            f"INSERT OR REPLACE INTO {t} (id, created_ms, modified_ms, archived, archived_ms, "
            "props) VALUES (?, ?, ?, 0, NULL, ?)"
        )
        n = 0
        for chunk in _chunks(rows, 5000):
            with self.lock:
                self.db.executemany(sql, chunk)
                self.db.commit()
            n += len(chunk)
        return n

    # -- associations ---------------------------------------------------------------------------

    def associate(self, links: Iterable[tuple[str, int, str, int, int]]) -> None:
        """Store links ``(from_type, from_id, to_type, to_id, type_id)`` and their reverses."""
        forward = sorted(links)
        reverse = sorted(
            (t_type, t_id, f_type, f_id, schema.REVERSE_TYPE.get(type_id, type_id))
            for f_type, f_id, t_type, t_id, type_id in forward
        )
        # Sorted runs insert in key order (b-tree appends), much faster for the seed.
        for chunk in _chunks([*forward, *reverse], 20000):
            with self.lock:
                self.db.executemany(
                    "INSERT OR IGNORE INTO hs_association VALUES (?, ?, ?, ?, ?)", chunk
                )
                self.db.commit()

    def dissociate(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        with self.lock:
            self.db.execute(
                "DELETE FROM hs_association WHERE (from_type = ? AND from_id = ? AND to_type = ? "
                "AND to_id = ?) OR (from_type = ? AND from_id = ? AND to_type = ? AND to_id = ?)",
                (from_type, from_id, to_type, to_id, to_type, to_id, from_type, from_id),
            )
            self.db.commit()

    def associations(
        self,
        from_type: str,
        from_ids: Sequence[int],
        to_type: str,
        *,
        after: int = 0,
        limit: int | None = None,
    ) -> dict[int, dict[int, list[int]]]:
        """``{from_id: {to_id: [type ids]}}`` in ``to_id`` order (``after``/``limit`` on to ids)."""
        out: dict[int, dict[int, list[int]]] = {}
        if not from_ids:
            return out
        marks = ",".join("?" * len(from_ids))
        with self.lock:
            rows = self.db.execute(
                "SELECT from_id, to_id, type_id FROM hs_association WHERE from_type = ? AND "
                f"from_id IN ({marks}) AND to_type = ? AND to_id > ? ORDER BY from_id, to_id, "
                "type_id",
                (from_type, *from_ids, to_type, after),
            ).fetchall()
        for f_id, t_id, type_id in rows:
            targets = out.setdefault(int(f_id), {})
            if t_id not in targets and limit is not None and len(targets) >= limit:
                continue
            targets.setdefault(int(t_id), []).append(int(type_id))
        return out

    def move_associations(self, object_type: str, loser: int, winner: int) -> None:
        with self.lock:
            self.db.execute(
                "UPDATE OR IGNORE hs_association SET from_id = ? "
                "WHERE from_type = ? AND from_id = ?",
                (winner, object_type, loser),
            )
            self.db.execute(
                "UPDATE OR IGNORE hs_association SET to_id = ? WHERE to_type = ? AND to_id = ?",
                (winner, object_type, loser),
            )
            self.db.execute(
                "DELETE FROM hs_association WHERE (from_type = ? AND from_id = ?) OR "
                "(to_type = ? AND to_id = ?)",
                (object_type, loser, object_type, loser),
            )
            self.db.commit()

    # -- owners ---------------------------------------------------------------------------------

    def add_owners(self, owners: Iterable[tuple[int, str, str, str, int]]) -> None:
        with self.lock:
            self.db.executemany("INSERT OR REPLACE INTO hs_owner VALUES (?, ?, ?, ?, ?)", owners)
            self.db.commit()

    def owner(self, owner_id: int) -> tuple[int, str, str, str, int] | None:
        with self.lock:
            row = self.db.execute(
                "SELECT id, email, first_name, last_name, created_ms FROM hs_owner WHERE id = ?",
                (owner_id,),
            ).fetchone()
        if row is None:
            return None
        return (int(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]))

    def owners(self, after: int, limit: int) -> list[tuple[int, str, str, str, int]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, email, first_name, last_name, created_ms FROM hs_owner WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [(int(a), str(b), str(c), str(d), int(e)) for a, b, c, d, e in rows]

    def has_rows(self) -> bool:
        with self.lock:
            return self.db.execute("SELECT 1 FROM hs_companies LIMIT 1").fetchone() is not None


def property_from_type(name: str, type_: str) -> PropertyDef:
    """A custom property from a loose type name (HubSpot's or Salesforce-like ones)."""
    t = type_.lower()
    mapping = {
        "string": ("string", "text"),
        "text": ("string", "text"),
        "textarea": ("string", "textarea"),
        "number": ("number", "number"),
        "double": ("number", "number"),
        "currency": ("number", "number"),
        "int": ("number", "number"),
        "integer": ("number", "number"),
        "date": ("date", "date"),
        "datetime": ("datetime", "date"),
        "bool": ("bool", "booleancheckbox"),
        "boolean": ("bool", "booleancheckbox"),
        "enumeration": ("enumeration", "select"),
    }
    kind, field_type = mapping.get(t, ("string", "text"))
    return PropertyDef(name=name, type=kind, field_type=field_type, hubspot_defined=False)


def _problem(code: str, name: str, message: str) -> dict[str, Any]:
    return {
        "isValid": False,
        "message": message,
        "error": code,
        "name": name,
        "localizedErrorMessage": message,
    }


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def row_id(key: Any) -> int | None:
    """``key`` as a stored record id; None when it is not one (not an integer, or past the
    64-bit range SQLite stores), so that a lookup finds nothing instead of failing."""
    try:
        number = int(key)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**63 else None
