"""The Salesforce objects the emulator holds: fields, types, ids and value conversion.

One :class:`ObjectDef` per sObject (Account, Opportunity, Note, User), each backed by one SQLite
table ``sf_<object>`` with one typed column per field. Values are stored in a form that sorts and
compares correctly in SQL: booleans as 0/1, numbers as REAL/INTEGER, dates as ``YYYY-MM-DD`` and
datetimes already rendered the way Salesforce prints them (``2021-11-06T17:38:40.000+0000``, UTC,
1-second precision), so pages are served without per-value conversion.

Pure module: no I/O, no imports from the rest of the sandbox.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

FieldType = Literal[
    "id",
    "reference",
    "string",
    "textarea",
    "picklist",
    "email",
    "url",
    "boolean",
    "double",
    "currency",
    "percent",
    "int",
    "date",
    "datetime",
]

FIELD_TYPES: frozenset[str] = frozenset(FieldType.__args__)  # type: ignore[attr-defined]
TEXT_TYPES = frozenset({"string", "textarea", "picklist", "email", "url"})
NUMBER_TYPES = frozenset({"double", "currency", "percent", "int"})
INT_DIGITS = 9  # an ``int`` field holds at most 9 digits (describe's ``digits``)
ID_TYPES = frozenset({"id", "reference"})

OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
OPPORTUNITY_TYPES = ("New Business", "Renewal", "Expansion")
CLOSED_WON = "Closed Won"
CLOSED_LOST = "Closed Lost"


@dataclass(frozen=True)
class FieldDef:
    """One field of an sObject, as describe reports it."""

    name: str
    type: FieldType
    label: str = ""
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    external_id: bool = False
    unique: bool = False  # no two live records may hold one value (case-insensitive)
    custom: bool = False
    reference_to: str | None = None
    relationship_name: str | None = None
    length: int = 0
    picklist_values: tuple[str, ...] = ()

    @property
    def sql_type(self) -> str:
        if self.type in ("boolean", "int"):
            return "INTEGER"
        if self.type in ("double", "currency", "percent"):
            return "REAL"
        return "TEXT"

    @property
    def nocase(self) -> bool:
        """SOQL compares and sorts text case-insensitively (ids excepted)."""
        return self.type in TEXT_TYPES


@dataclass
class ObjectDef:
    """One sObject: its fields (in describe order) and what is required on create."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    required: tuple[str, ...] = ()
    deletable: bool = True
    fields: dict[str, FieldDef] = field(default_factory=dict)  # lower-case name -> def

    @property
    def table(self) -> str:
        return f"sf_{self.name.lower()}"

    def add(self, f: FieldDef) -> None:
        self.fields[f.name.lower()] = f

    def get(self, name: str) -> FieldDef | None:
        return self.fields.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        low = name.lower()
        for f in self.fields.values():
            if f.relationship_name and f.relationship_name.lower() == low:
                return f
        return None


_SYSTEM = ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted")
READ_ONLY = frozenset(
    {"id", "createddate", "lastmodifieddate", "systemmodstamp", "isdeleted", "isclosed", "iswon"}
)


def _std(name: str, type_: FieldType, **kw: Any) -> FieldDef:
    label = kw.pop("label", name)
    return FieldDef(name=name, type=type_, label=label, **kw)


def _custom(name: str, type_: FieldType, **kw: Any) -> FieldDef:
    label = name.removesuffix("__c").replace("_", " ")
    length = kw.pop("length", 255 if type_ in TEXT_TYPES else 0)
    return FieldDef(name=name, type=type_, label=label, custom=True, length=length, **kw)


def _system_fields(obj: ObjectDef, *, deletable: bool = True) -> None:
    ro = {"createable": False, "updateable": False}
    obj.add(_std("CreatedDate", "datetime", label="Created Date", nillable=False, **ro))
    obj.add(_std("LastModifiedDate", "datetime", label="Last Modified Date", nillable=False, **ro))
    obj.add(_std("SystemModstamp", "datetime", label="System Modstamp", nillable=False, **ro))
    if deletable:
        obj.add(_std("IsDeleted", "boolean", label="Deleted", nillable=False, **ro))


def _id_field() -> FieldDef:
    return _std("Id", "id", label="Record ID", createable=False, updateable=False, nillable=False)


def _owner() -> FieldDef:
    return _std(
        "OwnerId", "reference", label="Owner ID", reference_to="User", relationship_name="Owner"
    )


def build_objects(custom_fields: dict[str, dict[str, str]] | None = None) -> dict[str, ObjectDef]:
    """The schema of docs/sandbox-schema.md, plus custom fields declared at start-up."""
    user = ObjectDef("User", "User", "Users", "005", required=("LastName", "Email", "Username"))
    user.deletable = False
    user.add(_id_field())
    user.add(_std("Name", "string", label="Full Name", createable=False, updateable=False))
    for name in ("FirstName", "LastName", "Username"):
        user.add(_std(name, "string", length=80))
    user.add(_std("Email", "email", length=128))
    user.add(_std("IsActive", "boolean", label="Active", nillable=False))
    _system_fields(user, deletable=False)

    account = ObjectDef("Account", "Account", "Accounts", "001", required=("Name",))
    account.add(_id_field())
    account.add(_std("Name", "string", label="Account Name", length=255, nillable=False))
    account.add(_std("Website", "url", length=255))
    account.add(_std("Industry", "picklist", length=255))
    account.add(_std("AnnualRevenue", "currency", label="Annual Revenue"))
    account.add(_std("NumberOfEmployees", "int", label="Employees"))
    account.add(_owner())
    account.add(_std("Type", "picklist", label="Account Type", length=255))
    account.add(_std("BillingCountry", "string", label="Billing Country", length=80))
    _system_fields(account)
    for name, ftype in (
        ("ARR__c", "currency"),
        ("Licensed_Seats__c", "double"),
        ("Plan__c", "string"),
        ("Strategic_Account__c", "boolean"),
        ("Contract_Start__c", "date"),
        ("Contract_End__c", "date"),
        ("Health_Score__c", "double"),
        ("Health_Band__c", "string"),
        ("Health_Trend__c", "string"),
        ("Health_Reasons__c", "string"),
        ("Tier__c", "string"),
        ("Renewal_Risk__c", "string"),
        ("Renewal_Date__c", "date"),
        ("Days_To_Renewal__c", "double"),
        ("CSM_Email__c", "string"),
        ("Onboarding_Status__c", "string"),
    ):
        account.add(_custom(name, ftype))  # type: ignore[arg-type]
    account.add(crmsync_id_field())

    opp = ObjectDef(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        required=("Name", "StageName", "CloseDate"),
    )
    opp.add(_id_field())
    opp.add(_std("Name", "string", label="Name", length=120, nillable=False))
    opp.add(
        _std(
            "AccountId",
            "reference",
            label="Account ID",
            reference_to="Account",
            relationship_name="Account",
        )
    )
    opp.add(
        _std(
            "StageName",
            "picklist",
            label="Stage",
            length=255,
            nillable=False,
            picklist_values=OPPORTUNITY_STAGES,
        )
    )
    opp.add(_std("Amount", "currency"))
    opp.add(_std("CloseDate", "date", label="Close Date", nillable=False))
    ro = {"createable": False, "updateable": False, "nillable": False}
    opp.add(_std("IsClosed", "boolean", label="Closed", **ro))
    opp.add(_std("IsWon", "boolean", label="Won", **ro))
    opp.add(
        _std(
            "Type",
            "picklist",
            label="Opportunity Type",
            length=255,
            picklist_values=OPPORTUNITY_TYPES,
        )
    )
    opp.add(_owner())
    _system_fields(opp)
    opp.add(_custom("Term_Months__c", "double"))
    opp.add(_custom("Preassigned_CSM__c", "email"))
    opp.add(crmsync_id_field())

    note = ObjectDef("Note", "Note", "Notes", "002", required=("ParentId", "Title"))
    note.add(_id_field())
    note.add(
        _std(
            "ParentId",
            "reference",
            label="Parent ID",
            reference_to="Account",
            relationship_name="Parent",
            updateable=False,
            nillable=False,
        )
    )
    note.add(_std("Title", "string", length=255, nillable=False))
    note.add(_std("Body", "textarea", length=32000))
    note.add(_owner())
    note.add(_std("IsPrivate", "boolean", label="Private", nillable=False))
    _system_fields(note)

    objects = {o.name.lower(): o for o in (account, opp, note, user)}
    for obj_name, fields in (custom_fields or {}).items():
        obj = objects[obj_name.lower()]
        for fname, ftype in fields.items():
            if obj.get(fname) is None:
                obj.add(make_custom_field(fname, ftype))
    return objects


def crmsync_id_field() -> FieldDef:
    """``Crmsync_Id__c``: Text(36), External ID, Unique: what crmsync's idempotent creates
    upsert on (Account, Opportunity; Note cannot carry custom fields)."""
    return _custom("Crmsync_Id__c", "string", external_id=True, unique=True, length=36)


def make_custom_field(name: str, type_name: str) -> FieldDef:
    """A ``Foo__c`` field of a describe type (``string``, ``double``, ``date`` ...)."""
    if not name.endswith("__c"):
        raise ValueError(f"custom field names end in '__c': {name!r}")
    ftype = type_name.lower()
    if ftype == "number":
        ftype = "double"
    if ftype not in FIELD_TYPES or ftype in ID_TYPES:
        raise ValueError(f"unsupported custom field type {type_name!r}")
    return _custom(name, ftype)  # type: ignore[arg-type]


# ---- ids -------------------------------------------------------------------------------------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(width, "0")


def id18(id15: str) -> str:
    """Append Salesforce's case-safe checksum (one char per 5-char chunk, bit per capital)."""
    suffix = ""
    for i in range(3):
        chunk = id15[i * 5 : i * 5 + 5]
        bits = sum(1 << j for j, c in enumerate(chunk) if "A" <= c <= "Z")
        suffix += _SUFFIX[bits]
    return id15 + suffix


def make_id(prefix: str, n: int, *, seeded: bool) -> str:
    """18-char id: key prefix, a 2-char 'pod' (seeded or created here), base-62 number."""
    return id18(prefix + ("Sd" if seeded else "Sn") + _base62(n, 10))


def seed_number(key: str) -> int:
    """'C0000042' -> 42."""
    return int(key.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ") or "0")


def normalize_id(value: str) -> str:
    """Accept a 15-char id by adding its checksum."""
    return id18(value) if len(value) == 15 else value


# ---- values --------------------------------------------------------------------------------


def render_datetime(moment: datetime) -> str:
    """``2021-11-06T17:38:40.000+0000`` (UTC, seconds precision, always a 4-digit year:
    ``strftime("%Y")`` prints the year 1 as ``1``, which Salesforce never does)."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="seconds") + ".000+0000"


def parse_datetime(text: str) -> datetime:
    """Salesforce datetime input: ``...Z``, ``...+0000``, ``...+00:00``, optional fraction."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if len(value) >= 5 and value[-5] in "+-" and value[-4:].isdigit() and ":" not in value[-5:]:
        value = value[:-2] + ":" + value[-2:]
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


class ValueError_(ValueError):
    """A value that cannot be stored in a field (JSON_PARSER_ERROR on the wire)."""


def to_db(f: FieldDef, value: Any) -> Any:
    """Convert a JSON (or CSV string) value to its stored form; raise ValueError_ if invalid."""
    if value is None:
        return None
    t = f.type
    try:
        if t == "boolean":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return int(value.lower() in ("true", "1"))
            raise ValueError(value)
        if t in ("double", "currency", "percent"):
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if t == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if t == "date":
            if isinstance(value, date) and not isinstance(value, datetime):
                return value.isoformat()
            return date.fromisoformat(str(value)[:10]).isoformat()
        if t == "datetime":
            if isinstance(value, datetime):
                return render_datetime(value)
            return render_datetime(parse_datetime(str(value)))
        if isinstance(value, (dict, list)):
            raise ValueError(value)
        text = value if isinstance(value, str) else json_scalar(value)
        if t in ID_TYPES:
            return normalize_id(text) if text else None
        return text or None  # Salesforce stores an empty text value as null
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError_(
            f"Cannot deserialize instance of {t} from VALUE_STRING value {value!s} "
            "or request may be missing a required field"
        ) from exc


def json_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def from_db(f: FieldDef, value: Any) -> Any:
    """Stored form -> JSON value (booleans back to bool; the rest is already wire-shaped)."""
    if value is None:
        return None
    if f.type == "boolean":
        return bool(value)
    if f.type in ("double", "currency", "percent"):
        return float(value)
    return value


def csv_value(f: FieldDef, value: Any) -> str:
    """Stored form -> Bulk API CSV cell (datetimes in the ``...000Z`` form Bulk uses)."""
    if value is None:
        return ""
    if f.type == "boolean":
        return "true" if value else "false"
    if f.type == "datetime":
        return str(value).replace("+0000", "Z")
    return str(value)


def field_names(obj: ObjectDef) -> Iterable[str]:
    return (f.name for f in obj.fields.values())


def derive_stage(stage: str | None) -> tuple[int, int]:
    """(IsClosed, IsWon) for a StageName."""
    if stage == CLOSED_WON:
        return 1, 1
    if stage == CLOSED_LOST:
        return 1, 0
    return 0, 0


SYSTEM_FIELDS = _SYSTEM
