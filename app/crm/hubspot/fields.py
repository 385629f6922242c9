"""HubSpot property metadata and property creation for ``crmsync crm setup`` (the I/O half).

* Reading: one ``GET /crm/v3/properties/{type}`` per object (crm-api.md B§7): each property's
  ``type``, ``fieldType``, options, ``hasUniqueValue`` and ``modificationMetadata.readOnlyValue``
  (plus ``calculated``) for what crmsync may write. A 404 (unknown object type) or 403 (the app
  lacks the scope) is None, as in ``crmsync crm check``.
* Creating: the property group ``crmsync`` once per object type (``POST .../groups``; 409 = it
  exists), then one ``POST /crm/v3/properties/{type}`` per missing property: number, date,
  string, enumeration (``select``) with the domain's options, and ``crmsync_id`` as a string
  with ``hasUniqueValue`` (the upsert key; HubSpot allows it only when creating a property).
  A 409 means the property exists: :attr:`Outcome.EXISTS`, and setup re-reads and compares. A 403
  means the app lacks the ``crm.schemas.*.write`` scope: :attr:`Outcome.REFUSED`.

Calls go through the adapter's retried, counted ``_call``. Must not import ``app.sync``/``app.db``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate

from app.crm.hubspot.client import HubSpotClient
from app.crm.provision import (
    HUBSPOT_GROUP,
    HUBSPOT_GROUP_LABEL,
    HUBSPOT_TYPES,
    Created,
    FieldMeta,
    FieldsByObject,
    FieldSpec,
    Kind,
    Outcome,
    create_until_refused,
)
from app.errors import ErrorCategory, UpstreamError

DESCRIPTION = "Written by crmsync (crmsync crm setup)."


def property_meta(prop: Mapping[str, Any]) -> FieldMeta:
    """One ``/crm/v3/properties`` result as :class:`FieldMeta`."""
    meta = prop.get("modificationMetadata")
    read_only = bool(meta.get("readOnlyValue")) if isinstance(meta, Mapping) else False
    options = prop.get("options") or []
    return FieldMeta(
        name=str(prop["name"]),
        type=str(prop.get("type") or ""),
        updateable=not read_only and not prop.get("calculated"),
        label=str(prop.get("label") or ""),
        options=tuple(
            str(o["value"]) for o in options if isinstance(o, Mapping) and not o.get("hidden")
        ),
        restricted=prop.get("type") == "enumeration",
        unique=bool(prop.get("hasUniqueValue")),
    )


def property_body(spec: FieldSpec) -> dict[str, Any]:
    """The ``POST /crm/v3/properties/{type}`` body for ``spec`` (wire names)."""
    type_, field_type = HUBSPOT_TYPES[spec.kind]
    body: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "type": type_,
        "fieldType": field_type,
        "groupName": HUBSPOT_GROUP,
        "description": DESCRIPTION,
    }
    if spec.kind is Kind.ENUM:
        body["options"] = [
            {"label": o.capitalize(), "value": o, "displayOrder": i, "hidden": False}
            for i, o in enumerate(spec.options)
        ]
    if spec.kind is Kind.BOOLEAN:
        body["options"] = [
            {"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
            {"label": "No", "value": "false", "displayOrder": 1, "hidden": False},
        ]
    if spec.kind is Kind.EXTERNAL_ID:
        body["hasUniqueValue"] = True
    return body


def _create_model(body: Mapping[str, Any]) -> PropertyCreate:
    options = [
        OptionInput(
            label=o["label"], value=o["value"], display_order=o["displayOrder"], hidden=False
        )
        for o in body.get("options", [])
    ]
    return PropertyCreate(
        name=body["name"],
        label=body["label"],
        type=body["type"],
        field_type=body["fieldType"],
        group_name=body["groupName"],
        description=body["description"],
        options=options or None,
        has_unique_value=body.get("hasUniqueValue"),
    )


def _said(exc: UpstreamError) -> str:
    detail = exc.classification.detail if exc.classification is not None else None
    return f"{exc.code or exc.status}: {detail or exc.reason}"


class HubSpotFields:
    """:class:`app.crm.provision.Provisioner` for HubSpot, over a :class:`HubSpotClient`."""

    def __init__(self, client: HubSpotClient) -> None:
        self.client = client
        self._groups: set[str] = set()

    @property
    def _core(self) -> Any:
        return self.client._hs.crm.properties.core_api

    def properties(self, object_name: str) -> dict[str, FieldMeta] | None:
        try:
            body = self.client._call(
                "properties",
                functools.partial(
                    self._core.get_all,
                    object_name,
                    _request_timeout=self.client._timeout,
                    _preload_content=False,
                ),
                object_name,
            )
        except UpstreamError as exc:
            if exc.category is ErrorCategory.NOT_FOUND or exc.status == 403:
                return None
            raise
        results = body.get("results") or []
        metas = (property_meta(p) for p in results if isinstance(p, Mapping) and "name" in p)
        return {m.name: m for m in metas}

    def read_fields(self, object_names: Sequence[str]) -> FieldsByObject:
        return {name: self.properties(name) for name in object_names}

    def ensure_group(self, object_name: str) -> None:
        """Create the ``crmsync`` property group on ``object_name``; 409: it exists already."""
        if object_name in self._groups:
            return
        groups = self.client._hs.crm.properties.groups_api
        model = PropertyGroupCreate(name=HUBSPOT_GROUP, label=HUBSPOT_GROUP_LABEL)
        try:
            self.client._call(
                "create property group",
                functools.partial(
                    groups.create,
                    object_name,
                    model,
                    _request_timeout=self.client._timeout,
                    _preload_content=False,
                ),
                object_name,
            )
        except UpstreamError as exc:
            if exc.status != 409:
                raise
        self._groups.add(object_name)

    def create_field(self, spec: FieldSpec) -> Created:
        try:
            self.ensure_group(spec.object_name)
            self.client._call(
                "create property",
                functools.partial(
                    self._core.create,
                    spec.object_name,
                    _create_model(property_body(spec)),
                    _request_timeout=self.client._timeout,
                    _preload_content=False,
                ),
                spec.object_name,
            )
        except UpstreamError as exc:
            if exc.status == 409:
                return Created(spec, Outcome.EXISTS, _said(exc))
            if exc.status == 403:
                return Created(spec, Outcome.REFUSED, _said(exc))
            raise
        return Created(spec, Outcome.CREATED)

    def create_fields(self, specs: Sequence[FieldSpec]) -> list[Created]:
        return create_until_refused(self.create_field, specs)
