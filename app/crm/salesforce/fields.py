"""Salesforce field metadata and custom-field creation for ``crmsync crm setup`` (the I/O half).

* Reading: one ``GET .../sobjects/<Object>/describe`` per object (crm-api.md A§5): each field's
  ``type``, ``updateable``, ``length``, ``precision``/``scale``, ``externalId``, active picklist
  values and ``restrictedPicklist``. Fields the integration user cannot see are not in it. A 404:
  the object does not exist or is not readable (None).
* Creating: one ``POST .../tooling/sobjects/CustomField/`` per missing field, with ``FullName``
  ``Account.Health_Score__c`` and ``Metadata`` {type, label, precision, scale, length, externalId,
  unique, valueSet} (Tooling API ``CustomField``). The answers crmsync reads:

  - 201: created. Salesforce grants no field-level security on a field made through the API: the
    field exists but the integration user may not see it until an admin (or a permission set)
    allows it; :func:`app.crm.provision.setup` re-reads the describe and says so;
  - 400 ``DUPLICATE_DEVELOPER_NAME`` ("There is already a field named ..."): it exists (possibly
    invisible to this user): :attr:`Outcome.EXISTS`;
  - 403, or an ``INSUFFICIENT_ACCESS*`` code: the user lacks "Customize Application" (or the
    Tooling API): :attr:`Outcome.REFUSED`, and the remaining fields are not tried (the same
    refusal would come back for each).

Calls go through the adapter's retried, counted ``_call`` (token renewal as in a pull). Must
not import ``app.sync``/``app.db``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from simple_salesforce.api import Salesforce

from app.crm.provision import (
    SALESFORCE_TYPES,
    Created,
    FieldMeta,
    FieldsByObject,
    FieldSpec,
    Kind,
    Outcome,
    create_until_refused,
)
from app.crm.salesforce.client import SalesforceClient
from app.errors import ErrorCategory, UpstreamError

TOOLING_CUSTOM_FIELD = "tooling/sobjects/CustomField/"
DESCRIPTION = "Written by crmsync (crmsync crm setup)."
_DUPLICATE_CODES = frozenset({"DUPLICATE_DEVELOPER_NAME", "DUPLICATE_VALUE"})


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def field_meta(field: Mapping[str, Any]) -> FieldMeta:
    """One describe ``fields[]`` entry as :class:`FieldMeta`."""
    values = field.get("picklistValues") or []
    return FieldMeta(
        name=str(field["name"]),
        type=str(field.get("type") or ""),
        updateable=bool(field.get("updateable")),
        label=str(field.get("label") or ""),
        length=_int(field.get("length")) or None,
        precision=_int(field.get("precision")) or None,
        scale=_int(field.get("scale")),
        options=tuple(
            str(v["value"]) for v in values if isinstance(v, Mapping) and v.get("active", True)
        ),
        restricted=bool(field.get("restrictedPicklist")),
        unique=bool(field.get("externalId")),
    )


def tooling_body(spec: FieldSpec) -> dict[str, Any]:
    """The Tooling API ``CustomField`` create body for ``spec``."""
    metadata: dict[str, Any] = {
        "type": SALESFORCE_TYPES[spec.kind],
        "label": spec.label,
        "description": DESCRIPTION,
    }
    kind = spec.kind
    if kind is Kind.NUMBER:
        metadata.update(precision=spec.precision or 18, scale=spec.scale or 0)
    elif kind is Kind.TEXT:
        metadata["length"] = spec.length or 255
    elif kind is Kind.LONG_TEXT:
        metadata.update(length=spec.length, visibleLines=5)
    elif kind is Kind.BOOLEAN:
        metadata["defaultValue"] = "false"
    elif kind is Kind.ENUM:
        metadata["valueSet"] = {
            "restricted": True,
            "valueSetDefinition": {
                "sorted": False,
                "value": [{"fullName": o, "label": o, "default": False} for o in spec.options],
            },
        }
    elif kind is Kind.EXTERNAL_ID:
        metadata.update(
            length=spec.length, externalId=True, unique=True, caseSensitive=False, required=False
        )
    return {"FullName": spec.full_name, "Metadata": metadata}


def said(exc: UpstreamError) -> str:
    """What the CRM said: ``CODE: message``."""
    detail = exc.classification.detail if exc.classification is not None else None
    return f"{exc.code or exc.status}: {detail or exc.reason}"


def _refused(exc: UpstreamError) -> bool:
    return exc.status == 403 or (exc.code or "").startswith("INSUFFICIENT_ACCESS")


def _duplicate(exc: UpstreamError) -> bool:
    return exc.code in _DUPLICATE_CODES or "already a field named" in said(exc)


class SalesforceFields:
    """:class:`app.crm.provision.Provisioner` for Salesforce, over a :class:`SalesforceClient`."""

    def __init__(self, client: SalesforceClient) -> None:
        self.client = client

    def describe(self, object_name: str) -> dict[str, FieldMeta] | None:
        try:
            body = self.client._call(
                "describe",
                lambda sf: sf.restful(f"sobjects/{object_name}/describe"),
                object_name,
            )
        except UpstreamError as exc:
            if exc.category is ErrorCategory.NOT_FOUND:
                return None
            raise
        fields = body.get("fields") if isinstance(body, Mapping) else None
        metas = (field_meta(f) for f in fields or [] if isinstance(f, Mapping) and "name" in f)
        return {m.name: m for m in metas}

    def read_fields(self, object_names: Sequence[str]) -> FieldsByObject:
        return {name: self.describe(name) for name in object_names}

    def create_field(self, spec: FieldSpec) -> Created:
        body = tooling_body(spec)

        def post(sf: Salesforce) -> Any:
            return sf.restful(TOOLING_CUSTOM_FIELD, method="POST", json=body)

        try:
            self.client._call("create field", post, spec.object_name)
        except UpstreamError as exc:
            if _refused(exc):
                return Created(spec, Outcome.REFUSED, said(exc))
            if _duplicate(exc):
                return Created(spec, Outcome.EXISTS, said(exc))
            raise
        return Created(spec, Outcome.CREATED)

    def create_fields(self, specs: Sequence[FieldSpec]) -> list[Created]:
        return create_until_refused(self.create_field, specs)
