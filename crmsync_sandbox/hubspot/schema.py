"""HubSpot object types, their built-in properties, and value conversions.

Owns: which object types the emulator holds (companies, deals, notes, and contacts, which the
seed leaves empty but which answers as a standard object), the property definitions
HubSpot ships for them (docs/sandbox-schema.md), the association type ids between them, and the
pure helpers that turn request values into stored strings (ISO-ms datetimes, midnight-UTC dates).
Imports nothing from the rest of the sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

OBJECT_TYPES: tuple[str, ...] = ("companies", "deals", "notes", "contacts")

# Path aliases HubSpot accepts for an object type (plural, singular, object type id).
TYPE_ALIASES: dict[str, str] = {
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "deals": "deals",
    "deal": "deals",
    "0-3": "deals",
    "notes": "notes",
    "note": "notes",
    "0-46": "notes",
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
}
TYPE_IDS: dict[str, str] = {"companies": "0-2", "deals": "0-3", "notes": "0-46", "contacts": "0-1"}
SINGULAR: dict[str, str] = {
    "companies": "COMPANY",
    "deals": "DEAL",
    "notes": "NOTE",
    "contacts": "CONTACT",
}

# Stored ids start at a per-type base so ids of different types never collide (like HubSpot's).
ID_BASE: dict[str, int] = {
    "companies": 10_000_000_000,
    "deals": 20_000_000_000,
    "notes": 30_000_000_000,
    "contacts": 40_000_000_000,
}
OWNER_ID_BASE = 70_000_000

CREATED_PROPERTY: dict[str, str] = {
    "companies": "createdate",
    "deals": "createdate",
    "notes": "hs_createdate",
    "contacts": "createdate",
}
MODIFIED_PROPERTY = "hs_lastmodifieddate"
# Contacts predate the ``hs_`` prefix: their modification stamp is ``lastmodifieddate`` (search
# sorts and filters on it), and ``hs_lastmodifieddate`` answers the same value.
LEGACY_MODIFIED_PROPERTY: dict[str, str] = {"contacts": "lastmodifieddate"}


def modified_property(object_type: str) -> str:
    """The modification-stamp property a record of this type is returned with."""
    return LEGACY_MODIFIED_PROPERTY.get(object_type, MODIFIED_PROPERTY)


def is_modified_property(object_type: str, name: str) -> bool:
    """True for the property that holds a record's modification stamp."""
    return name == MODIFIED_PROPERTY or name == LEGACY_MODIFIED_PROPERTY.get(object_type)


ID_PROPERTY = "hs_object_id"

DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "companies": ("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "deals": (
        "dealname",
        "amount",
        "closedate",
        "pipeline",
        "dealstage",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ),
    "notes": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": (
        "firstname",
        "lastname",
        "email",
        "lastmodifieddate",
        "hs_object_id",
        "createdate",
    ),
}
# Free-text search (`query`) looks in these properties.
QUERY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "companies": ("name", "domain"),
    "deals": ("dealname",),
    "notes": ("hs_note_body",),
    "contacts": ("firstname", "lastname", "email"),
}

DEAL_STAGES: tuple[str, ...] = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
CLOSED_WON = "closedwon"

# (from type, to type) -> HUBSPOT_DEFINED type ids; the first is the default association.
ASSOCIATION_TYPES: dict[tuple[str, str], tuple[int, ...]] = {
    ("notes", "companies"): (190,),
    ("companies", "notes"): (189,),
    ("notes", "deals"): (214,),
    ("deals", "notes"): (213,),
    ("deals", "companies"): (341, 5),
    ("companies", "deals"): (342, 6),
    ("contacts", "companies"): (279, 1),
    ("companies", "contacts"): (280, 2),
    ("deals", "contacts"): (3,),
    ("contacts", "deals"): (4,),
    ("notes", "contacts"): (202,),
    ("contacts", "notes"): (201,),
}
REVERSE_TYPE: dict[int, int] = {
    190: 189,
    189: 190,
    214: 213,
    213: 214,
    341: 342,
    342: 341,
    5: 6,
    6: 5,
    279: 280,
    280: 279,
    1: 2,
    2: 1,
    3: 4,
    4: 3,
    202: 201,
    201: 202,
}
TYPE_LABELS: dict[int, str | None] = {5: "Primary", 6: "Primary", 1: "Primary", 2: "Primary"}
# The v3 associations API names a type instead of numbering it: the primary (labelled) type keeps
# the plain name, the unlabelled one of the same pair gets ``_unlabeled``.
V3_TYPE_NAMES: dict[int, str] = {
    5: "deal_to_company",
    6: "company_to_deal",
    341: "deal_to_company_unlabeled",
    342: "company_to_deal_unlabeled",
    1: "contact_to_company",
    2: "company_to_contact",
    279: "contact_to_company_unlabeled",
    280: "company_to_contact_unlabeled",
}


def v3_type_name(from_type: str, to_type: str, type_id: int) -> str:
    """``deal_to_company`` style name of an association type in the v3 API."""
    return V3_TYPE_NAMES.get(
        type_id, f"{SINGULAR[from_type].lower()}_to_{SINGULAR[to_type].lower()}"
    )


VALID_TYPES = ("bool", "enumeration", "date", "datetime", "string", "number", "phone_number")
VALID_FIELD_TYPES = (
    "booleancheckbox",
    "checkbox",
    "date",
    "file",
    "html",
    "number",
    "phonenumber",
    "radio",
    "select",
    "text",
    "textarea",
    "calculation_equation",
)


@dataclass(frozen=True)
class PropertyDef:
    """One property of one object type, as `/crm/v3/properties/{type}` describes it."""

    name: str
    type: str = "string"
    field_type: str = "text"
    label: str = ""
    group_name: str = ""
    description: str = ""
    has_unique_value: bool = False
    read_only: bool = False
    hubspot_defined: bool = True
    options: tuple[str, ...] = ()
    option_labels: tuple[str, ...] = ()  # same order as ``options``; empty = titled values
    display_order: int = -1
    created_ms: int = 0

    def option_label(self, index: int) -> str:
        if index < len(self.option_labels):
            return self.option_labels[index]
        return self.options[index].title()

    def to_json(self, object_type: str) -> dict[str, object]:
        created = iso_from_ms(self.created_ms) if self.created_ms else "2019-08-06T02:43:01.000Z"
        return {
            "name": self.name,
            "label": self.label or self.name.replace("_", " ").title(),
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name or _default_group(object_type),
            "options": [
                {"label": self.option_label(i), "value": o, "displayOrder": i, "hidden": False}
                for i, o in enumerate(self.options)
            ],
            "displayOrder": self.display_order,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": self.has_unique_value,
            "hidden": False,
            "hubspotDefined": self.hubspot_defined,
            "showCurrencySymbol": False,
            "formField": not self.read_only,
            "createdAt": created,
            "updatedAt": created,
            "archived": False,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
        }


def _default_group(object_type: str) -> str:
    return {
        "companies": "companyinformation",
        "deals": "dealinformation",
        "notes": "engagement",
        "contacts": "contactinformation",
    }[object_type]


DEFAULT_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "companies": (("companyinformation", "Company information"),),
    "deals": (("dealinformation", "Deal information"),),
    "notes": (("engagement", "Engagement"),),
    "contacts": (("contactinformation", "Contact information"),),
}


def _p(name: str, type_: str = "string", field: str = "text", **kw: object) -> PropertyDef:
    return replace(PropertyDef(name=name, type=type_, field_type=field), **kw)  # type: ignore[arg-type]


_COMMON = (
    _p("hs_object_id", "number", "number", read_only=True),
    _p("hs_lastmodifieddate", "datetime", "date", read_only=True),
    _p("hubspot_owner_id", "enumeration", "select"),
    _p("hs_merged_object_ids", "enumeration", "checkbox", read_only=True),
)

BUILTIN_PROPERTIES: dict[str, tuple[PropertyDef, ...]] = {
    "companies": (
        *_COMMON,
        _p("createdate", "datetime", "date", read_only=True),
        _p("name"),
        _p("domain"),
        _p("industry", "enumeration", "select"),
        _p("annualrevenue", "number", "number"),
        _p("numberofemployees", "number", "number"),
        _p("country"),
        _p("arr", "number", "number", hubspot_defined=False),
        _p("licensed_seats", "number", "number", hubspot_defined=False),
        _p("plan", hubspot_defined=False),
        _p("strategic_account", "bool", "booleancheckbox", hubspot_defined=False),
        _p("contract_start_date", "date", "date", hubspot_defined=False),
        _p("contract_end_date", "date", "date", hubspot_defined=False),
        _p("crmsync_health_score", "number", "number", hubspot_defined=False),
        _p("crmsync_health_band", hubspot_defined=False),
        _p("crmsync_health_trend", hubspot_defined=False),
        _p("crmsync_health_reasons", "string", "textarea", hubspot_defined=False),
        _p("crmsync_tier", hubspot_defined=False),
        _p("crmsync_renewal_date", "date", "date", hubspot_defined=False),
        _p("crmsync_days_to_renewal", "number", "number", hubspot_defined=False),
        _p("crmsync_renewal_risk", hubspot_defined=False),
        _p("crmsync_csm_email", hubspot_defined=False),
        _p("crmsync_onboarding_status", hubspot_defined=False),
        _p("crmsync_id", hubspot_defined=False, has_unique_value=True),
    ),
    "deals": (
        *_COMMON,
        _p("createdate", "datetime", "date", read_only=True),
        _p("dealname"),
        _p("amount", "number", "number"),
        _p("closedate", "datetime", "date"),
        _p("pipeline", "enumeration", "select", options=("default",)),
        _p("dealstage", "enumeration", "radio", options=DEAL_STAGES),
        _p(
            "dealtype",
            "enumeration",
            "radio",
            options=("newbusiness", "existingbusiness", "renewal"),
        ),
        _p("hs_is_closed", "bool", "booleancheckbox", read_only=True),
        _p("hs_is_closed_won", "bool", "booleancheckbox", read_only=True),
        _p("contract_term_months", "number", "number", hubspot_defined=False),
        _p("preassigned_csm_email", hubspot_defined=False),
        _p("crmsync_id", hubspot_defined=False, has_unique_value=True),
    ),
    "notes": (
        *_COMMON,
        _p("hs_createdate", "datetime", "date", read_only=True),
        _p("hs_note_body", "string", "html"),
        _p("hs_timestamp", "datetime", "date"),
        _p("hs_attachment_ids", "enumeration", "checkbox"),
        _p("crmsync_id", hubspot_defined=False, has_unique_value=True),
    ),
    "contacts": (
        *_COMMON,
        _p("createdate", "datetime", "date", read_only=True),
        _p("lastmodifieddate", "datetime", "date", read_only=True),
        _p("firstname"),
        _p("lastname"),
        _p("email", has_unique_value=True),
        _p("phone", "string", "phonenumber"),
        _p("company"),
        _p("jobtitle"),
        _p(
            "lifecyclestage",
            "enumeration",
            "radio",
            options=(
                "subscriber",
                "lead",
                "marketingqualifiedlead",
                "salesqualifiedlead",
                "opportunity",
                "customer",
                "evangelist",
                "other",
            ),
        ),
    ),
}

# Properties whose value the emulator derives; never stored from a request.
COMPUTED = frozenset(
    {"hs_object_id", "hs_lastmodifieddate", "lastmodifieddate", "createdate", "hs_createdate"}
)


class InvalidValue(Exception):
    """A property value HubSpot would reject; ``code`` is HubSpot's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def ms_from_datetime(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def iso_from_ms(ms: int) -> str:
    """ISO 8601 with milliseconds, ``Z`` and a 4-digit year, HubSpot's output form
    (``strftime("%Y")`` would print the year 1 as ``1``)."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def ms_from_text(text: str) -> int:
    """Milliseconds from a request value: epoch ms digits or ISO 8601 (``Z`` or offset)."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        ms = int(text)
    elif _ISO_RE.match(text):
        norm = text.replace("Z", "+00:00").replace(" ", "T")
        try:
            dt = datetime.fromisoformat(norm)
        except ValueError as exc:
            raise InvalidValue("INVALID_DATE", f"{text!r} is not a valid datetime") from exc
        ms = ms_from_datetime(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
    else:
        raise InvalidValue("INVALID_DATE", f"{text!r} is not a valid datetime")
    if not MIN_MS <= ms <= MAX_MS:
        raise InvalidValue("INVALID_DATE", f"{text!r} is outside the years 0001 to 9999")
    return ms


def date_text(value: str) -> str:
    """A `date` property value: ``YYYY-MM-DD`` or epoch ms at midnight UTC, else INVALID_DATE."""
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError as exc:
            raise InvalidValue("INVALID_DATE", f"{value!r} is not a valid date") from exc
    if re.fullmatch(r"-?\d+", text):
        ms = ms_from_text(text)
        if ms % 86_400_000:
            raise InvalidValue(
                "INVALID_DATE",
                f"{value} is not a valid date: date values must be midnight UTC",
            )
        return iso_from_ms(ms)[:10]
    if _ISO_RE.match(text):
        ms = ms_from_text(text)
        if ms % 86_400_000:
            raise InvalidValue(
                "INVALID_DATE",
                f"{value} is not a valid date: date values must be midnight UTC",
            )
        return iso_from_ms(ms)[:10]
    raise InvalidValue("INVALID_DATE", f"{value!r} is not a valid date")


def normalise_value(prop: PropertyDef, raw: object) -> str | None:
    """The stored string for a written value; ``None`` clears (``""`` or null)."""
    if raw is None:
        return None
    text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    if text == "":
        return None
    if prop.type == "number":
        try:
            number = float(text)
        except ValueError as exc:
            raise InvalidValue("INVALID_DECIMAL", f"{text!r} is not a valid number") from exc
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidValue("INVALID_DECIMAL", f"{text!r} is not a valid number")
        return text.strip()
    if prop.type == "bool":
        low = text.strip().lower()
        if low not in ("true", "false"):
            raise InvalidValue("INVALID_BOOLEAN", f"{text!r} is not a valid boolean")
        return low
    if prop.type == "datetime":
        return iso_from_ms(ms_from_text(text))
    if prop.type == "date":
        return date_text(text)
    if prop.type == "enumeration" and prop.options and text not in prop.options:
        raise InvalidValue(
            "INVALID_OPTION",
            f"{text} was not one of the allowed options: {list(prop.options)}",
        )
    return text


def derive_deal_flags(stage: str | None) -> dict[str, str]:
    """``hs_is_closed`` and ``hs_is_closed_won`` from ``dealstage``."""
    closed = stage in ("closedwon", "closedlost")
    return {
        "hs_is_closed": "true" if closed else "false",
        "hs_is_closed_won": "true" if stage == CLOSED_WON else "false",
    }
