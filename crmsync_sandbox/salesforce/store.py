"""Salesforce records in SQLite: tables, seed loading, the one write path, query cursors.

Every write (REST, collections, Bulk ingest, ``close_won``) goes through :class:`Store` so that
stamps, derived fields (``IsClosed``/``IsWon``, User ``Name``), record faults, write statistics
and the Closed-Won outbound message behave the same whichever API did the write. Side effects
(stats, outbox) are collected in :class:`Effects` and only released when the surrounding
transaction commits, so an ``allOrNone`` rollback emits nothing.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from crmsync_sandbox.salesforce.compiler import Compiled
from crmsync_sandbox.salesforce.schema import (
    CLOSED_WON,
    INT_DIGITS,
    READ_ONLY,
    TEXT_TYPES,
    FieldDef,
    ObjectDef,
    ValueError_,
    derive_stage,
    from_db,
    id18,
    make_id,
    normalize_id,
    render_datetime,
    seed_number,
    to_db,
)

if TYPE_CHECKING:
    from crmsync_sandbox.context import SandboxContext

SEED_CHUNK = 5000
MAX_CURSORS = 64
"""REST query locators kept at once; opening one more forgets the oldest (its next
``nextRecordsUrl`` answers ``INVALID_QUERY_LOCATOR``, as an expired locator does). Bulk 2.0 query
jobs keep their results apart (``pool="job"``): they live until the job is deleted or expires."""

STAGES = {
    "prospecting": "Prospecting",
    "qualification": "Qualification",
    "proposal": "Proposal/Price Quote",
    "negotiation": "Negotiation/Review",
    "closed_won": "Closed Won",
    "closed_lost": "Closed Lost",
}
CASCADES: dict[str, tuple[tuple[str, str], ...]] = {
    "Account": (("Opportunity", "AccountId"), ("Note", "ParentId")),
}
"""Deleting a record of the key deletes, with the same stamps, the records that point at it
through these lookups (Salesforce deletes an Account's Opportunities, Contacts, Cases, Notes and
activities with it; of these the sandbox holds Opportunities and Notes). They go to the Recycle
Bin: ``queryAll`` shows them with ``IsDeleted = true`` and ``deleted`` lists them."""

DEAL_TYPES = {"new_business": "New Business", "renewal": "Renewal", "expansion": "Expansion"}


class RecordError(Exception):
    """A per-record failure with a Salesforce ``statusCode``/``errorCode``."""

    def __init__(
        self, code: str, message: str, fields: Sequence[str] = (), *, status: int = 400
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.status = status

    def as_error(self) -> dict[str, Any]:
        """Shape of a REST error body entry."""
        return {"message": self.message, "errorCode": self.code, "fields": self.fields}

    def as_result_error(self) -> dict[str, Any]:
        """Shape of a collections result error."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}

    def as_csv_error(self) -> str:
        return f"{self.code}:{self.message}:{','.join(self.fields)} --"


def check_size(f: FieldDef, value: Any) -> None:
    """Refuse a value larger than the field's declared size, as Salesforce does.

    Text longer than ``length`` is ``STRING_TOO_LONG``; an ``int`` field holds at most
    ``INT_DIGITS`` digits (``NUMBER_OUTSIDE_VALID_RANGE``)."""
    if value is None:
        return
    if f.type in TEXT_TYPES and f.length and len(value) > f.length:
        raise RecordError(
            "STRING_TOO_LONG",
            f"{f.label}: data value too large: {value} (max length={f.length})",
            [f.name],
        )
    if f.type == "int" and abs(value) >= 10**INT_DIGITS:
        raise RecordError(
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"{f.label}: value outside of valid range on numeric field: {value}",
            [f.name],
        )


class MultipleMatches(Exception):
    """An external id matched several records (REST upsert answers 300)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(ids)
        self.ids = ids


@dataclass
class Effects:
    """Side effects of writes, released after commit."""

    written: Counter[str] = field(default_factory=Counter)
    closed_won: list[str] = field(default_factory=list)


def not_found() -> RecordError:
    return RecordError("NOT_FOUND", "The requested resource does not exist", status=404)


def entity_deleted() -> RecordError:
    return RecordError("ENTITY_IS_DELETED", "entity is deleted", status=404)


class Store:
    """Tables and writes of the emulated org."""

    def __init__(self, ctx: SandboxContext, objects: dict[str, ObjectDef]) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.lock = ctx.lock
        self.objects = objects
        self._depth = 0
        self._sp = 0
        self._open_effects: list[Effects] = []  # one per open atomic() block, innermost last
        self.cursors: dict[str, Compiled] = {}  # REST query locators, at most MAX_CURSORS
        self.job_cursors: dict[str, Compiled] = {}  # Bulk 2.0 query job results, uncapped

    # ---- schema ---------------------------------------------------------------------------

    def create_tables(self) -> None:
        with self.lock:
            db = self.db
            db.execute("CREATE TABLE IF NOT EXISTS sf_meta (key TEXT PRIMARY KEY, value INTEGER)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS sf_cursor_row (cursor TEXT NOT NULL, "
                "pos INTEGER NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (cursor, pos)) "
                "WITHOUT ROWID"
            )
            db.execute("DELETE FROM sf_cursor_row")
            for obj in self.objects.values():
                cols = []
                for f in obj.fields.values():
                    cols.append(self._column_ddl(f))
                if obj.get("IsDeleted") is None:
                    cols.append('"IsDeleted" INTEGER NOT NULL DEFAULT 0')
                cols.append('"_DeletedDate" TEXT')
                db.execute(f"CREATE TABLE IF NOT EXISTS {obj.table} ({', '.join(cols)})")
                existing = {row[1].lower() for row in db.execute(f"PRAGMA table_info({obj.table})")}
                for f in obj.fields.values():
                    if f.name.lower() not in existing:
                        db.execute(f"ALTER TABLE {obj.table} ADD COLUMN {self._column_ddl(f)}")
                db.execute(
                    f'CREATE UNIQUE INDEX IF NOT EXISTS {obj.table}_id ON {obj.table} ("Id")'
                )
                db.execute(
                    f"CREATE INDEX IF NOT EXISTS {obj.table}_stamp "
                    f'ON {obj.table} ("SystemModstamp", "Id")'
                )
                for f in obj.fields.values():
                    if f.type == "reference" or f.external_id:
                        self._index(obj, f)
                db.execute(
                    "INSERT OR IGNORE INTO sf_meta (key, value) VALUES (?, 0)", (f"seq:{obj.name}",)
                )
            self._commit()

    def _index(self, obj: ObjectDef, f: FieldDef) -> None:
        self.db.execute(
            f'CREATE INDEX IF NOT EXISTS {obj.table}_{f.name.lower()} ON {obj.table} ("{f.name}")'
        )

    @staticmethod
    def _column_ddl(f: FieldDef) -> str:
        if f.type == "boolean":
            default = "1" if f.name == "IsActive" else "0"
            return f'"{f.name}" INTEGER NOT NULL DEFAULT {default}'
        return f'"{f.name}" {f.sql_type}'

    def add_field(self, obj: ObjectDef, f: FieldDef) -> None:
        with self.lock:
            if obj.get(f.name) is not None:
                return
            self.db.execute(f"ALTER TABLE {obj.table} ADD COLUMN {self._column_ddl(f)}")
            if f.external_id:
                self._index(obj, f)
            obj.add(f)
            self._commit()

    # ---- transactions -------------------------------------------------------------------

    def _commit(self) -> None:
        if self._depth == 0 and self.db.in_transaction:
            self.db.commit()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[Effects]:
        """A savepoint; effects are released only when the outermost block commits.

        A nested block hands its effects to the enclosing one, so an outer rollback (a
        ``composite`` request with ``allOrNone``) emits nothing of what it undid."""
        with self.lock:
            self._sp += 1
            name = f"sf_sp_{self._sp}"
            effects = Effects()
            self.db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            self._open_effects.append(effects)
            try:
                yield effects
            except BaseException:
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
                self._depth -= 1
                self._open_effects.pop()
                raise
            self.db.execute(f"RELEASE {name}")
            self._depth -= 1
            self._open_effects.pop()
            if self._open_effects:
                outer = self._open_effects[-1]
                outer.written.update(effects.written)
                outer.closed_won.extend(effects.closed_won)
                return
            self._commit()
        self.release(effects)

    def release(self, effects: Effects) -> None:
        for obj_name, n in effects.written.items():
            if n:
                self.ctx.stats.record_written("salesforce", obj_name, n)
        if effects.closed_won:
            self.ctx.outbox.emit_salesforce("Opportunity", list(effects.closed_won))

    # ---- helpers --------------------------------------------------------------------------

    def obj(self, name: str) -> ObjectDef | None:
        return self.objects.get(name.lower())

    def now_text(self) -> str:
        return render_datetime(self.ctx.clock.now())

    def _new_id(self, obj: ObjectDef) -> str:
        row = self.db.execute(
            "UPDATE sf_meta SET value = value + 1 WHERE key = ? RETURNING value",
            (f"seq:{obj.name}",),
        ).fetchone()
        return make_id(obj.key_prefix, int(row[0]), seeded=False)

    def fetch(self, obj: ObjectDef, record_id: str) -> dict[str, Any] | None:
        """Stored values of one record by Id (canonical field names), deleted ones included."""
        cols = [f.name for f in obj.fields.values()]
        sql = ", ".join(f'"{c}"' for c in cols)
        row = self.db.execute(
            f'SELECT {sql}, "IsDeleted" FROM {obj.table} WHERE "Id" = ?',
            (normalize_id(record_id),),
        ).fetchone()
        if row is None:
            return None
        out = dict(zip(cols, row[:-1], strict=True))
        out["_deleted"] = bool(row[-1])
        return out

    def render(
        self, obj: ObjectDef, stored: Mapping[str, Any], fields: Iterable[str] | None, version: str
    ) -> dict[str, Any]:
        """JSON record (``attributes`` first) with all or the chosen fields."""
        out: dict[str, Any] = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{version}/sobjects/{obj.name}/{stored['Id']}",
            }
        }
        defs = (
            list(obj.fields.values())
            if fields is None
            else [self._require_field(obj, name) for name in fields]
        )
        for f in defs:
            out[f.name] = from_db(f, stored.get(f.name))
        return out

    @staticmethod
    def _require_field(obj: ObjectDef, name: str) -> FieldDef:
        f = obj.get(name.strip())
        if f is None:
            raise RecordError(
                "INVALID_FIELD",
                f"No such column '{name.strip()}' on sobject of type {obj.name}",
                [name.strip()],
            )
        return f

    # ---- validation ---------------------------------------------------------------------

    def prepare(
        self, obj: ObjectDef, values: Mapping[str, Any], *, creating: bool, csv: bool = False
    ) -> dict[str, Any]:
        """Validate input values and convert them to stored form (canonical names)."""
        out: dict[str, Any] = {}
        for key, raw in values.items():
            if key == "attributes":
                continue
            f = obj.get(key)
            if f is None:
                raise RecordError(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", [key]
                )
            if csv:
                if raw == "":
                    continue
                if raw == "#N/A":
                    raw = None
            allowed = f.createable if creating else f.updateable
            if f.name.lower() in READ_ONLY or not allowed:
                raise RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set.",
                    [f.name],
                )
            try:
                value = to_db(f, raw)
            except ValueError_ as exc:
                code = "INVALID_TYPE_ON_FIELD_IN_RECORD" if csv else "JSON_PARSER_ERROR"
                raise RecordError(code, f"{f.name}: {exc}", [f.name]) from exc
            check_size(f, value)
            if f.type == "email" and value is not None and "@" not in str(value):
                raise RecordError(
                    "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name]
                )
            if value is None and f.type == "boolean":
                value = 0
            out[f.name] = value
        missing = [
            name
            for name in obj.required
            if (creating and out.get(name) is None) or (name in out and out[name] is None)
        ]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        return out

    def _fault(self, obj: ObjectDef, record_id: str) -> None:
        """An injected fault for this record id (or external id value), as Salesforce says it:
        a lock held elsewhere, or a validation rule (optionally on one field)."""
        fault = self.ctx.faults.take_record_fault("salesforce", obj.name, record_id)
        if fault is None:
            return
        if fault.kind == "lock":
            raise RecordError(
                "UNABLE_TO_LOCK_ROW",
                f"unable to obtain exclusive access to this record or 1 records: {record_id}",
            )
        raise RecordError(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            fault.message or "Record rejected by a validation rule (sandbox fault injection)",
            [fault.field] if fault.field else [],
        )

    def _check_unique(self, obj: ObjectDef, values: Mapping[str, Any], record_id: str) -> None:
        """``DUPLICATE_VALUE`` when a unique field's value is held by another live record."""
        for name, value in values.items():
            f = obj.get(name)
            if f is None or not f.unique or value in (None, ""):
                continue
            row = self.db.execute(
                f'SELECT "Id" FROM {obj.table} WHERE "{f.name}" = ? COLLATE NOCASE '
                'AND "IsDeleted" = 0 AND "Id" != ? LIMIT 1',
                (value, record_id),
            ).fetchone()
            if row is not None:
                raise RecordError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: {row[0]}",
                    [f.name],
                )

    def _derive(
        self, obj: ObjectDef, values: dict[str, Any], old: Mapping[str, Any] | None
    ) -> None:
        if obj.name == "Opportunity" and "StageName" in values:
            values["IsClosed"], values["IsWon"] = derive_stage(values["StageName"])
        if obj.name == "User" and ("FirstName" in values or "LastName" in values):
            first = values.get("FirstName", (old or {}).get("FirstName"))
            last = values.get("LastName", (old or {}).get("LastName"))
            values["Name"] = " ".join(p for p in (first, last) if p)

    def _closed_won(
        self,
        obj: ObjectDef,
        record_id: str,
        values: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        effects: Effects,
    ) -> None:
        if obj.name != "Opportunity" or values.get("StageName") != CLOSED_WON:
            return
        if old is None or old.get("StageName") != CLOSED_WON:
            effects.closed_won.append(record_id)

    # ---- writes ---------------------------------------------------------------------------

    def insert(
        self, obj: ObjectDef, values: Mapping[str, Any], effects: Effects, *, csv: bool = False
    ) -> str:
        prepared = self.prepare(obj, values, creating=True, csv=csv)
        record_id = self._new_id(obj)
        self._fault(obj, record_id)
        self._check_unique(obj, prepared, record_id)
        self._derive(obj, prepared, None)
        now = self.now_text()
        prepared.update(
            {"Id": record_id, "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now}
        )
        cols = list(prepared)
        self.db.execute(
            f"INSERT INTO {obj.table} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in cols)}) "
            f"VALUES ({', '.join('?' for _ in cols)})",
            [prepared[c] for c in cols],
        )
        effects.written[obj.name] += 1
        self._closed_won(obj, record_id, prepared, None, effects)
        return record_id

    def update(
        self,
        obj: ObjectDef,
        record_id: str,
        values: Mapping[str, Any],
        effects: Effects,
        *,
        csv: bool = False,
    ) -> str:
        record_id = normalize_id(record_id)
        old = self.fetch(obj, record_id)
        if old is None:
            raise not_found()
        if old["_deleted"]:
            raise entity_deleted()
        prepared = self.prepare(obj, values, creating=False, csv=csv)
        self._fault(obj, record_id)
        self._check_unique(obj, prepared, record_id)
        self._write(obj, record_id, prepared, old, effects)
        return record_id

    def _write(
        self,
        obj: ObjectDef,
        record_id: str,
        prepared: dict[str, Any],
        old: Mapping[str, Any],
        effects: Effects,
    ) -> None:
        self._derive(obj, prepared, old)
        now = self.now_text()
        prepared["LastModifiedDate"] = now
        prepared["SystemModstamp"] = now
        sets = ", ".join(f'"{c}" = ?' for c in prepared)
        self.db.execute(
            f'UPDATE {obj.table} SET {sets} WHERE "Id" = ?', [*prepared.values(), record_id]
        )
        effects.written[obj.name] += 1
        self._closed_won(obj, record_id, prepared, old, effects)

    def delete(self, obj: ObjectDef, record_id: str, effects: Effects) -> str:
        record_id = normalize_id(record_id)
        old = self.fetch(obj, record_id)
        if old is None:
            raise not_found()
        if old["_deleted"]:
            raise entity_deleted()
        if not obj.deletable:
            raise RecordError(
                "INSUFFICIENT_ACCESS_OR_READONLY", f"cannot delete a {obj.name}", status=400
            )
        self._fault(obj, record_id)
        now = self.now_text()
        self.db.execute(
            f'UPDATE {obj.table} SET "IsDeleted" = 1, "_DeletedDate" = ?, '
            f'"SystemModstamp" = ?, "LastModifiedDate" = ? WHERE "Id" = ?',
            (now, now, now, record_id),
        )
        effects.written[obj.name] += 1
        for child_name, field_name in CASCADES.get(obj.name, ()):
            child = self.objects[child_name.lower()]
            deleted = self.db.execute(
                f'UPDATE {child.table} SET "IsDeleted" = 1, "_DeletedDate" = ?, '
                f'"SystemModstamp" = ?, "LastModifiedDate" = ? '
                f'WHERE "{field_name}" = ? AND "IsDeleted" = 0',
                (now, now, now, record_id),
            ).rowcount
            effects.written[child.name] += deleted
        return record_id

    def match_external(self, obj: ObjectDef, ext: FieldDef, value: Any) -> list[str]:
        if ext.name == "Id":
            value = normalize_id(str(value))
        coll = " COLLATE NOCASE" if ext.nocase else ""
        rows = self.db.execute(
            f'SELECT "Id" FROM {obj.table} WHERE "{ext.name}" = ?{coll} AND "IsDeleted" = 0 '
            "LIMIT 10",
            (value,),
        ).fetchall()
        return [r[0] for r in rows]

    def upsert(
        self,
        obj: ObjectDef,
        ext: FieldDef,
        ext_value: Any,
        values: Mapping[str, Any],
        effects: Effects,
        *,
        update_only: bool = False,
        csv: bool = False,
    ) -> tuple[str, bool]:
        """Insert or update by external id; returns (id, created)."""
        body = {k: v for k, v in values.items() if k.lower() != ext.name.lower()}
        if ext_value in (None, ""):
            raise RecordError("MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])
        try:
            stored_value = to_db(ext, ext_value)
        except ValueError_ as exc:
            raise RecordError("JSON_PARSER_ERROR", str(exc), [ext.name]) from exc
        if ext.name != "Id":
            self._fault(obj, str(ext_value))
        matches = self.match_external(obj, ext, stored_value)
        if len(matches) > 1:
            raise MultipleMatches(matches)
        if matches:
            return self.update(obj, matches[0], body, effects, csv=csv), False
        if update_only or ext.name == "Id":
            raise not_found()
        return self.insert(obj, {**body, ext.name: ext_value}, effects, csv=csv), True

    # ---- test hooks -----------------------------------------------------------------------

    def touch(
        self, obj: ObjectDef, ids: Iterable[str] | None, count: int | None, at: datetime
    ) -> list[str]:
        stamp = render_datetime(at)
        with self.atomic():
            if ids is not None:
                chosen = [normalize_id(i) for i in ids]
            else:
                rows = self.db.execute(
                    f'SELECT "Id" FROM {obj.table} ORDER BY rowid LIMIT ?', (count or 0,)
                ).fetchall()
                chosen = [r[0] for r in rows]
            for start in range(0, len(chosen), 500):
                part = chosen[start : start + 500]
                self.db.execute(
                    f'UPDATE {obj.table} SET "SystemModstamp" = ?, "LastModifiedDate" = ? '
                    f'WHERE "Id" IN ({", ".join("?" for _ in part)})',
                    [stamp, stamp, *part],
                )
        return chosen

    # ---- seed -----------------------------------------------------------------------------

    def is_seeded(self) -> bool:
        with self.lock:
            for obj in self.objects.values():
                if self.db.execute(f"SELECT 1 FROM {obj.table} LIMIT 1").fetchone():
                    return True
            return False

    def load_seed(self, plan: Any) -> None:
        now = getattr(plan, "now", None) or self.ctx.clock.now()
        with self.lock:
            self._bulk_insert("User", (self._seed_user(u, now) for u in plan.users()))
            self._bulk_insert("Account", (self._seed_account(c) for c in plan.companies()))
            self._bulk_insert("Opportunity", (self._seed_deal(d) for d in plan.deals()))
            self._bulk_insert("Note", (self._seed_note(n) for n in plan.notes()))
            self._commit()

    def _bulk_insert(self, obj_name: str, rows: Iterable[dict[str, Any]]) -> None:
        obj = self.objects[obj_name.lower()]
        cols: list[str] | None = None
        sql = ""
        chunk: list[list[Any]] = []
        total = 0
        for row in rows:
            if cols is None:
                cols = list(row)
                sql = (
                    f"INSERT OR REPLACE INTO {obj.table} "
                    f"({', '.join(chr(34) + c + chr(34) for c in cols)}) "
                    f"VALUES ({', '.join('?' for _ in cols)})"
                )
            chunk.append([row[c] for c in cols])
            if len(chunk) >= SEED_CHUNK:
                self.db.executemany(sql, chunk)
                total += len(chunk)
                chunk = []
        if chunk:
            self.db.executemany(sql, chunk)
            total += len(chunk)
        if total:
            self.ctx.stats.record_written("salesforce", obj.name, total)

    @staticmethod
    def seed_id(prefix: str, key: str) -> str:
        return make_id(prefix, seed_number(key), seeded=True)

    def _stamps(self, created: datetime) -> dict[str, Any]:
        text = render_datetime(created)
        return {"CreatedDate": text, "LastModifiedDate": text, "SystemModstamp": text}

    def _seed_user(self, u: Any, now: datetime) -> dict[str, Any]:
        return {
            "Id": self.seed_id("005", u.key),
            "Name": f"{u.first_name} {u.last_name}",
            "FirstName": u.first_name,
            "LastName": u.last_name,
            "Email": u.email,
            "Username": u.email,
            "IsActive": 1,
            **self._stamps(now),
        }

    def _seed_account(self, c: Any) -> dict[str, Any]:
        return {
            "Id": self.seed_id("001", c.key),
            "Name": c.name,
            "Website": c.domain,
            "Industry": c.industry,
            "AnnualRevenue": None,
            "NumberOfEmployees": c.employees,
            "OwnerId": self.seed_id("005", c.owner_key) if c.owner_key else None,
            "Type": "Customer",
            "BillingCountry": c.country,
            "IsDeleted": 0,
            "ARR__c": float(c.arr) if c.arr is not None else None,
            "Licensed_Seats__c": float(c.seats) if c.seats is not None else None,
            "Plan__c": c.plan,
            "Strategic_Account__c": int(bool(c.strategic)),
            "Contract_Start__c": _iso(c.contract_start_on),
            "Contract_End__c": _iso(c.contract_end_on),
            **self._stamps(c.created_at),
        }

    def _seed_deal(self, d: Any) -> dict[str, Any]:
        stage = STAGES.get(d.stage, d.stage)
        closed, won = derive_stage(stage)
        return {
            "Id": self.seed_id("006", d.key),
            "Name": d.name,
            "AccountId": self.seed_id("001", d.company_key),
            "StageName": stage,
            "Amount": float(d.amount) if d.amount is not None else None,
            "CloseDate": _iso(d.close_on),
            "IsClosed": closed,
            "IsWon": won,
            "Type": DEAL_TYPES.get(d.type, d.type),
            "OwnerId": self.seed_id("005", d.owner_key) if d.owner_key else None,
            "IsDeleted": 0,
            "Term_Months__c": float(d.term_months) if d.term_months is not None else None,
            "Preassigned_CSM__c": d.preassigned_csm_email,
            **self._stamps(d.created_at),
        }

    def _seed_note(self, n: Any) -> dict[str, Any]:
        opp_id = self.seed_id("006", n.deal_key)
        return {
            "Id": self.seed_id("002", n.key),
            "ParentId": self.seed_id("001", n.company_key),
            "Title": n.title,
            "Body": n.body.replace("{opportunity_id}", opp_id),
            "OwnerId": self.seed_id("005", n.author_key) if n.author_key else None,
            "IsPrivate": 0,
            "IsDeleted": 0,
            **self._stamps(n.created_at),
        }

    # ---- cursors --------------------------------------------------------------------------

    def new_cursor_id(self, prefix: str = "01g") -> str:
        body = secrets.token_hex(6).upper()
        return id18((prefix + "Sn" + body)[:15])

    def materialise(
        self,
        cursor_id: str,
        compiled: Compiled,
        include_deleted: bool,
        *,
        pool: Literal["rest", "job"] = "rest",
    ) -> int:
        """Snapshot the ordered rowids of a query under ``cursor_id``; returns the count.

        ``pool="rest"`` is a REST locator, evicted oldest-first beyond :data:`MAX_CURSORS`;
        ``pool="job"`` is a Bulk query job's result set, which REST traffic never evicts."""
        sql, params = compiled.ids_sql(include_deleted)
        with self.lock:
            if pool == "rest" and len(self.cursors) >= MAX_CURSORS:
                oldest = next(iter(self.cursors))
                self.drop_cursor(oldest)
            rids = self.db.execute(sql, params).fetchall()
            self.db.executemany(
                "INSERT INTO sf_cursor_row (cursor, pos, rid) VALUES (?, ?, ?)",
                ((cursor_id, pos, rid[0]) for pos, rid in enumerate(rids)),
            )
            (self.cursors if pool == "rest" else self.job_cursors)[cursor_id] = compiled
            self._commit()
            return len(rids)

    def cursor_page(self, cursor_id: str, start: int, end: int) -> list[Sequence[Any]]:
        """Rows ``start <= pos < end`` of a materialised cursor; ``KeyError`` once it is gone."""
        with self.lock:
            compiled = self.cursors.get(cursor_id) or self.job_cursors[cursor_id]
            return self.db.execute(compiled.page_sql(), (cursor_id, start, end)).fetchall()

    def drop_cursor(self, cursor_id: str) -> None:
        with self.lock:
            self.cursors.pop(cursor_id, None)
            self.job_cursors.pop(cursor_id, None)
            self.db.execute("DELETE FROM sf_cursor_row WHERE cursor = ?", (cursor_id,))
            self._commit()


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
