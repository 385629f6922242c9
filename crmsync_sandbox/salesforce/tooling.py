"""Tooling API ``CustomField`` for ``crmsync crm setup``, and an org without crmsync's fields.

``POST /services/data/vXX.X/tooling/sobjects/CustomField/`` with ``{"FullName":
"Account.Health_Score__c", "Metadata": {"type": "Number", "label": ..., "precision": 3,
"scale": 0}}`` creates a custom field on a standard object, as Salesforce's Tooling API does:

* 201 ``{"id": "00N...", "success": true, "errors": [], "warnings": [], "infos": []}``; the field
  is in the object's describe, queryable and writable from then on (and survives a restart of a
  sandbox with a state dir: its definition is kept in ``sf_tooling_custom_field``);
* 400 ``DUPLICATE_DEVELOPER_NAME`` "There is already a field named Health_Score on Account." when
  it exists;
* 400 ``FIELD_INTEGRITY_EXCEPTION`` / ``INVALID_FIELD`` / ``REQUIRED_FIELD_MISSING`` /
  ``INVALID_TYPE`` for a bad name, type, size, value set or object, with Salesforce's wording;
* 400 ``INSUFFICIENT_ACCESS_OR_READONLY`` when the integration user lacks "Customize
  Application" (``SandboxConfig.sf_customize_application = False``).

``GET .../tooling/sobjects/CustomField/{id}`` reads one back (``FullName``, ``Metadata``).

Simplification: a real org grants no field-level security on a field created through the API,
so the integration user cannot see it until an admin allows it (crmsync's setup checks the
describe afterwards and says so); here the creating user sees and edits it at once.

``SandboxConfig.without_writeback_fields`` starts the org without crmsync's write-back fields
(:data:`WRITEBACK_FIELDS`, domain.md 4.9 and 5) and external ids, so ``crmsync crm setup`` has
something to create; fields created later through the Tooling API are kept.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from crmsync_sandbox.salesforce.http import ApiError, Call, json_response
from crmsync_sandbox.salesforce.schema import FieldDef, ObjectDef, make_id

if TYPE_CHECKING:
    from crmsync_sandbox.salesforce.emulator import SalesforceEmulator

#: crmsync's write-back fields and external ids, per object (lower-case name).
WRITEBACK_FIELDS: dict[str, tuple[str, ...]] = {
    "account": (
        "Health_Score__c",
        "Health_Band__c",
        "Health_Trend__c",
        "Health_Reasons__c",
        "Tier__c",
        "Renewal_Risk__c",
        "Renewal_Date__c",
        "Days_To_Renewal__c",
        "CSM_Email__c",
        "Onboarding_Status__c",
        "Crmsync_Id__c",
    ),
    "opportunity": ("Crmsync_Id__c",),
}

CUSTOM_FIELD_PREFIX = "00N"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*__c$")
TABLE = "sf_tooling_custom_field"
#: Objects that take no custom fields (Salesforce: Note, and this sandbox's User).
NO_CUSTOM_FIELDS = frozenset({"note", "user"})


def _integrity(message: str, field: str) -> ApiError:
    return ApiError(400, "FIELD_INTEGRITY_EXCEPTION", message, [field])


def _int(metadata: dict[str, Any], key: str, default: int | None = None) -> int:
    value = metadata.get(key, default)
    if value is None or isinstance(value, bool):
        raise ApiError(400, "REQUIRED_FIELD_MISSING", f"Required field is missing: {key}", [key])
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(
            400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of int from {value!r}"
        ) from None


def _picklist_values(metadata: dict[str, Any]) -> tuple[str, ...]:
    value_set = metadata.get("valueSet")
    definition = value_set.get("valueSetDefinition") if isinstance(value_set, dict) else None
    values = definition.get("value") if isinstance(definition, dict) else None
    if not isinstance(values, list) or not values:
        raise _integrity("Picklist must have at least one value", "valueSet")
    names = [str(v.get("fullName") or v.get("label") or "") for v in values if isinstance(v, dict)]
    if not all(names) or len(set(names)) != len(names):
        raise _integrity("Picklist values must be unique and not empty", "valueSet")
    return tuple(names)


def field_from_metadata(name: str, metadata: dict[str, Any]) -> FieldDef:
    """The describe-level field a Tooling ``Metadata`` block creates; ApiError when invalid."""
    label = metadata.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ApiError(400, "REQUIRED_FIELD_MISSING", "Required field is missing: label", ["label"])
    kind = metadata.get("type")
    if not isinstance(kind, str):
        raise ApiError(400, "REQUIRED_FIELD_MISSING", "Required field is missing: type", ["type"])
    external_id = bool(metadata.get("externalId", False))
    base: dict[str, Any] = {"name": name, "label": label.strip(), "custom": True}
    if external_id and kind not in ("Text", "Number", "Email"):
        raise _integrity(f"External ID is not allowed on a field of type {kind}", "externalId")
    if kind == "Text":
        length = _int(metadata, "length")
        if not 1 <= length <= 255:
            raise _integrity("Length must be between 1 and 255", "length")
        return FieldDef(type="string", length=length, external_id=external_id, **base)
    if kind == "LongTextArea":
        length = _int(metadata, "length")
        if not 256 <= length <= 131072:
            raise _integrity("Length must be between 256 and 131,072", "length")
        return FieldDef(type="textarea", length=length, **base)
    if kind in ("Number", "Currency", "Percent"):
        precision = _int(metadata, "precision")
        scale = _int(metadata, "scale", 0)
        if not 1 <= precision <= 18:
            raise _integrity("Precision must be between 1 and 18", "precision")
        if not 0 <= scale <= precision:
            raise _integrity("Scale must be between 0 and the precision", "scale")
        ftype = {"Number": "double", "Currency": "currency", "Percent": "percent"}[kind]
        return FieldDef(type=ftype, external_id=external_id, **base)  # type: ignore[arg-type]
    if kind == "Picklist":
        return FieldDef(
            type="picklist", length=255, picklist_values=_picklist_values(metadata), **base
        )
    if kind == "Email":
        return FieldDef(type="email", length=80, external_id=external_id, **base)
    simple = {"Date": "date", "DateTime": "datetime", "Checkbox": "boolean", "Url": "url"}
    if kind in simple:
        ftype = simple[kind]
        return FieldDef(type=ftype, nillable=ftype != "boolean", **base)  # type: ignore[arg-type]
    raise ApiError(400, "INVALID_TYPE", f"Invalid field type: {kind}", ["type"])


class Tooling:
    """``tooling/sobjects/CustomField``, over the emulator's store."""

    def __init__(self, em: SalesforceEmulator) -> None:
        self.em = em
        self.store = em.store
        self.ctx = em.ctx
        with self.ctx.lock:
            self.ctx.db.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, object TEXT NOT NULL, "
                "name TEXT NOT NULL, metadata TEXT NOT NULL)"
            )
            self.ctx.db.commit()
        if self.ctx.config.without_writeback_fields:
            for object_name, names in WRITEBACK_FIELDS.items():
                obj = em.objects.get(object_name)
                for name in names:
                    if obj is not None:
                        obj.fields.pop(name.lower(), None)
        with self.ctx.lock:
            rows = self.ctx.db.execute(f"SELECT object, name, metadata FROM {TABLE}").fetchall()
        for object_name, name, metadata in rows:
            obj = em.objects.get(str(object_name).lower())
            if obj is not None and obj.get(name) is None:
                self._add(obj, field_from_metadata(str(name), json.loads(metadata)))

    def _add(self, obj: ObjectDef, f: FieldDef) -> None:
        """Add ``f`` to ``obj``; its column may already be in the table (a restarted org)."""
        with self.store.lock:
            columns = {
                row[1].lower() for row in self.ctx.db.execute(f"PRAGMA table_info({obj.table})")
            }
            if f.name.lower() not in columns:
                self.store.add_field(obj, f)
                return
            obj.add(f)
            if f.external_id:
                self.ctx.db.execute(
                    f"CREATE INDEX IF NOT EXISTS {obj.table}_{f.name.lower()} "
                    f'ON {obj.table} ("{f.name}")'
                )
                self.ctx.db.commit()

    # ---- routes ---------------------------------------------------------------------------

    def custom_field(self, call: Call) -> Response:
        """``POST tooling/sobjects/CustomField``: create one custom field."""
        call.require("POST")
        body = call.json_object()
        if not self.ctx.config.sf_customize_application:
            raise ApiError(
                400,
                "INSUFFICIENT_ACCESS_OR_READONLY",
                "insufficient access rights on object id: the user needs the Customize "
                "Application permission to create custom fields",
            )
        full_name = body.get("FullName")
        metadata = body.get("Metadata")
        if not isinstance(full_name, str) or "." not in full_name:
            raise ApiError(
                400,
                "REQUIRED_FIELD_MISSING",
                "Required field is missing: FullName (Object.Field__c)",
                ["FullName"],
            )
        if not isinstance(metadata, dict):
            raise ApiError(
                400, "REQUIRED_FIELD_MISSING", "Required field is missing: Metadata", ["Metadata"]
            )
        object_name, _, name = full_name.partition(".")
        obj = self.store.obj(object_name)
        if obj is None or obj.name.lower() in NO_CUSTOM_FIELDS:
            raise ApiError(
                400,
                "INVALID_CROSS_REFERENCE_KEY",
                f"invalid cross reference id: {object_name} takes no custom fields",
                ["FullName"],
            )
        if not NAME.match(name) or len(name) > 43:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"The field name {name!r} is not valid: it must begin with a letter, contain "
                "only letters, digits and single underscores, and end in __c",
                ["FullName"],
            )
        developer_name = name.removesuffix("__c")
        with self.store.lock:
            if obj.get(name) is not None:
                raise ApiError(
                    400,
                    "DUPLICATE_DEVELOPER_NAME",
                    f"There is already a field named {developer_name} on {obj.name}.",
                    ["FullName"],
                )
            f = field_from_metadata(name, metadata)
            number = self.ctx.db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] + 1
            field_id = make_id(CUSTOM_FIELD_PREFIX, int(number), seeded=False)
            self._add(obj, f)
            self.ctx.db.execute(
                f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)",
                (field_id, obj.name, f.name, json.dumps(metadata)),
            )
            self.ctx.db.commit()
        self.ctx.stats.record_written("salesforce", "CustomField", 1)
        return json_response(
            {"id": field_id, "success": True, "errors": [], "warnings": [], "infos": []}, 201
        )

    def custom_field_by_id(self, call: Call) -> Response:
        """``GET tooling/sobjects/CustomField/{id}``: one field created here."""
        call.require("GET")
        with self.store.lock:
            row = self.ctx.db.execute(
                f"SELECT id, object, name, metadata FROM {TABLE} WHERE id = ?",
                (call.group("id"),),
            ).fetchone()
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        field_id, object_name, name, metadata = row
        url = f"/services/data/v{call.version}/tooling/sobjects/CustomField/{field_id}"
        return json_response(
            {
                "attributes": {"type": "CustomField", "url": url},
                "Id": field_id,
                "DeveloperName": str(name).removesuffix("__c"),
                "TableEnumOrId": object_name,
                "FullName": f"{object_name}.{name}",
                "Metadata": json.loads(metadata),
            }
        )
