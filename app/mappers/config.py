"""User overrides of the default mappings, from a TOML file (stdlib :mod:`tomllib`).

Format (docs/mapping.md)::

    [salesforce.Account.fields.Health_Score__c]
    column = "health_score"
    direction = "cs_to_crm"

    [salesforce.Account.fields.Industry]
    direction = "none"                # stop syncing a field

    [hubspot.companies.fields.my_custom_prop]
    column = "plan"
    convert = "string"
    direction = "both"
    conflict_policy = "newest_wins"

A table names ``<crm>.<object>.fields.<CRM field>``; its keys (all optional when the field is in
the defaults) replace those of the default mapping. A new field needs ``column``; ``convert``
defaults to ``string`` and ``direction`` to ``crm_to_cs``. Each key of a field table overrides
*every* default mapping of that CRM field (``Body`` feeds several handover columns: only
``direction`` and ``conflict_policy`` may be overridden on such a field, for all of them at once;
the inbound-only parses take the inbound part of the direction, so ``direction = "both"`` keeps
them ``crm_to_cs``). Errors raise
:class:`~app.mappers.errors.MappingConfigError` naming the TOML key path; read from a file, the
error is a :class:`MappingFileError` that names the file too.

A file is validated whole: :func:`load_mapping_sets` applies it to *every* CRM's defaults, and
:func:`load_mapping_set` goes through it, so a mistake in the ``hubspot`` sections fails a
Salesforce-only run at start rather than lying in wait for the first HubSpot run.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.types import CRM_NAMES, CrmName
from app.mappers.convert import get_converter
from app.mappers.defaults import default_mappings
from app.mappers.errors import MappingConfigError
from app.mappers.spec import (
    ConflictPolicy,
    Direction,
    FieldMapping,
    MappingSet,
    ObjectMapping,
    validate_object_mapping,
)

#: crm -> object -> CRM field -> {key: value}
MappingOverrides = dict[str, dict[str, dict[str, dict[str, Any]]]]

FIELD_KEYS = frozenset({"column", "convert", "direction", "conflict_policy", "optional"})


class MappingFileError(MappingConfigError):
    """A :class:`MappingConfigError` found in a mapping file; the message starts with the file.

    ``key`` is the TOML key path (empty when the whole file is at fault: missing, unreadable,
    not TOML), ``path`` the file as configured.
    """

    def __init__(self, path: str | Path, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.path = str(path)

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"{self.path}: {where}{self.reason}"


def load_mapping_overrides(path: str | Path) -> MappingOverrides:
    """Read and shape-check a mapping TOML file (semantics are checked by apply_overrides)."""
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise MappingFileError(path, "", "mapping file not found") from None
    except OSError as exc:
        raise MappingFileError(path, "", f"cannot read the mapping file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingFileError(path, "", f"not valid TOML: {exc}") from None
    try:
        return parse_mapping_overrides(data)
    except MappingConfigError as exc:
        raise MappingFileError(path, exc.key, exc.reason) from None


def parse_mapping_overrides(data: Mapping[str, Any]) -> MappingOverrides:
    """Shape-check already-parsed TOML data (tests and callers with a string use this)."""
    overrides: MappingOverrides = {}
    for crm, objects in data.items():
        if crm not in CRM_NAMES:
            raise MappingConfigError(crm, f"unknown CRM; expected one of {', '.join(CRM_NAMES)}")
        if not isinstance(objects, Mapping):
            raise MappingConfigError(crm, "expected a table of objects")
        for obj, body in objects.items():
            key = f"{crm}.{obj}"
            if not isinstance(body, Mapping):
                raise MappingConfigError(key, "expected a table")
            unknown = set(body) - {"fields"}
            if unknown:
                raise MappingConfigError(
                    f"{key}.{sorted(unknown)[0]}", "unknown key; only 'fields' is allowed here"
                )
            fields = body.get("fields", {})
            if not isinstance(fields, Mapping):
                raise MappingConfigError(f"{key}.fields", "expected a table of fields")
            for crm_field, spec in fields.items():
                field_key = f"{key}.fields.{crm_field}"
                if not isinstance(spec, Mapping):
                    raise MappingConfigError(field_key, "expected a table")
                for name, value in spec.items():
                    if name not in FIELD_KEYS:
                        raise MappingConfigError(
                            f"{field_key}.{name}",
                            f"unknown key; expected one of {', '.join(sorted(FIELD_KEYS))}",
                        )
                    expected = bool if name == "optional" else str
                    if not isinstance(value, expected):
                        raise MappingConfigError(
                            f"{field_key}.{name}", f"expected a {expected.__name__}"
                        )
                overrides.setdefault(crm, {}).setdefault(obj, {})[crm_field] = dict(spec)
    return overrides


def _enum(kind: type[Direction] | type[ConflictPolicy], value: str, key: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise MappingConfigError(
            key, f"unknown value {value!r}; expected one of {allowed}"
        ) from None


def _override_field(fm: FieldMapping, spec: Mapping[str, Any], key: str) -> FieldMapping:
    changes: dict[str, Any] = {}
    for name, value in spec.items():
        if name == "direction":
            changes[name] = _enum(Direction, value, f"{key}.direction")
        elif name == "conflict_policy":
            changes[name] = _enum(ConflictPolicy, value, f"{key}.conflict_policy")
        else:
            changes[name] = value
    return replace(fm, **changes)


def _apply_object(mapping: ObjectMapping, fields: Mapping[str, Mapping[str, Any]]) -> ObjectMapping:
    key = f"{mapping.crm}.{mapping.crm_object}"
    new_fields = list(mapping.fields)
    for crm_field, spec in fields.items():
        field_key = f"{key}.fields.{crm_field}"
        policy = spec.get("conflict_policy")
        if policy is not None:
            direction = spec.get("direction")
            current = next((f.direction for f in mapping.fields if f.crm_field == crm_field), None)
            if (direction or current) != Direction.BOTH:
                raise MappingConfigError(
                    f"{field_key}.conflict_policy",
                    "a conflict policy only applies to direction 'both'",
                )
        positions = [i for i, f in enumerate(new_fields) if f.crm_field == crm_field]
        if not positions:
            if "column" not in spec:
                raise MappingConfigError(
                    f"{field_key}.column",
                    "required for a field that has no default mapping"
                    + _did_you_mean(crm_field, [f.crm_field for f in mapping.fields]),
                )
            new_fields.append(
                _override_field(FieldMapping(crm_field, spec["column"]), spec, field_key)
            )
            continue
        if len(positions) > 1:
            if set(spec) - {"direction", "conflict_policy", "optional"}:
                raise MappingConfigError(
                    field_key,
                    f"{crm_field} feeds {len(positions)} columns; only 'direction' and "
                    "'conflict_policy' may be overridden",
                )
            for i in positions:
                new_fields[i] = _override_field(
                    new_fields[i], _carried(new_fields[i], spec, field_key), field_key
                )
            continue
        for i in positions:
            new_fields[i] = _override_field(new_fields[i], spec, field_key)
    result = replace(mapping, fields=tuple(new_fields))
    validate_object_mapping(result, key)
    return result


def _carried(fm: FieldMapping, spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A direction set on a CRM field feeding several columns (the handover ``Body``), as each
    of its mappings can carry it: an inbound-only parse (``handover_fit``) gets the inbound part
    of the direction (``both`` -> ``crm_to_cs``, ``cs_to_crm`` -> ``none``)."""
    if "direction" not in spec:
        return spec
    direction = _enum(Direction, spec["direction"], f"{key}.direction")
    converter = get_converter(fm.convert)
    if direction.outbound and converter.to_crm is None:
        direction = Direction.CRM_TO_CS if direction.inbound else Direction.NONE
    elif direction.inbound and converter.to_cs is None:
        direction = Direction.CS_TO_CRM if direction.outbound else Direction.NONE
    carried = {k: v for k, v in spec.items() if k != "conflict_policy" or direction.outbound}
    carried["direction"] = direction.value
    return carried


def _did_you_mean(name: str, known: list[str]) -> str:
    """A hint for a probable typo of a default field name (``Industy`` -> ``Industry``)."""
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def apply_overrides(defaults: MappingSet, overrides: MappingOverrides) -> MappingSet:
    """``defaults`` with the overrides for its CRM applied, validated.

    Overrides for the other CRM are ignored (one file holds both); an object the defaults do not
    map raises :class:`MappingConfigError`.
    """
    by_object = overrides.get(defaults.crm, {})
    known = {m.crm_object for m in defaults}
    for obj in by_object:
        if obj not in known:
            raise MappingConfigError(
                f"{defaults.crm}.{obj}",
                f"unknown object; expected one of {', '.join(sorted(known))}",
            )
    objects = tuple(
        _apply_object(m, by_object[m.crm_object]) if m.crm_object in by_object else m
        for m in defaults
    )
    return MappingSet(defaults.crm, objects)


def load_mapping_sets(
    path: str | Path | None = None, *, default_currency: str = "EUR"
) -> dict[CrmName, MappingSet]:
    """Every CRM's defaults with the file at ``path`` applied: the whole file is validated.

    Raises :class:`MappingFileError` (file, TOML key, problem) for the first error found.
    """
    overrides = load_mapping_overrides(path) if path is not None else {}
    sets: dict[CrmName, MappingSet] = {}
    for crm in CRM_NAMES:
        try:
            sets[crm] = apply_overrides(default_mappings(crm, default_currency), overrides)
        except MappingConfigError as exc:
            if path is None:
                raise
            raise MappingFileError(path, exc.key, exc.reason) from None
    return sets


def load_mapping_set(
    crm: str, path: str | Path | None = None, *, default_currency: str = "EUR"
) -> MappingSet:
    """The defaults of ``crm`` with the file at ``path`` (``Settings.mapping_file``) applied.

    The file's sections for the other CRMs are validated too (see :func:`load_mapping_sets`).
    """
    if path is None:
        return default_mappings(crm, default_currency)
    for name, mapping_set in load_mapping_sets(path, default_currency=default_currency).items():
        if name == crm:
            return mapping_set
    return default_mappings(crm, default_currency)  # not a CRM: fails as it does without a file
