"""Field provisioning, the pure half: which target fields crmsync writes to are missing.

The push writes every ``cs_to_crm``/``both`` field of the mappings, and creates records through
an external id (ADR 0006 section 3: Salesforce ``Crmsync_Id__c``, HubSpot ``crmsync_id``). A
field that is absent, of a type that cannot hold the value, or not editable by the integration
user would fail the push record by record. This module compares what the mappings need
(:func:`target_specs`) with the fields a CRM reports (:class:`FieldMeta`, read by
:mod:`app.crm.salesforce.fields` / :mod:`app.crm.hubspot.fields`, one call per object) and
returns one :class:`MissingField` per problem, carrying everything needed to create the field
(API name, label, type, length / precision / scale, the options of an enumeration) or to tell
an admin exactly what to do.

* ``crmsync crm setup`` (``app/cli/crm.py``) creates what it may and prints the rest;
* the push calls :func:`missing_targets` first and refuses to start with one message listing
  what is missing (issue #17 item 8).

No I/O here: :func:`missing_targets` takes the fields already read, or a :class:`FieldReader`
(the port the CRM adapters implement). Must not import ``app.sync``/``app.db``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, runtime_checkable

from app.core.types import CrmName
from app.mappers.columns import NUMERIC_SIZES, STRING_LENGTHS
from app.mappers.spec import ASSOCIATION_PREFIX, FieldMapping, MappingSet, ObjectMapping

# -- the domain's enumerations (../shared/domain.md) ----------------------------------------------
# ``app.db.enums`` holds Tier and HealthBand, but the adapters may not import the database layer
# (ADR 0005); tests/unit/test_crm_provision.py checks these equal the enums.

#: domain.md 4.5 / 4.9: ``health_band``.
HEALTH_BANDS: tuple[str, ...] = ("green", "yellow", "red", "unknown")
#: domain.md 4.6 / 4.9: ``health_trend``.
HEALTH_TRENDS: tuple[str, ...] = ("up", "flat", "down", "new")
#: domain.md 3.2: ``tier``.
TIERS: tuple[str, ...] = ("key", "high", "low", "tech")
#: domain.md 5.3: ``renewal_risk``.
RENEWAL_RISKS: tuple[str, ...] = ("low", "medium", "high", "critical")

#: CS columns whose values are one of a fixed set: an enumeration (picklist) in the CRM.
ENUM_COLUMNS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("accounts", "health_band"): HEALTH_BANDS,
    ("accounts", "health_trend"): HEALTH_TRENDS,
    ("accounts", "tier"): TIERS,
    ("accounts", "tier_override"): TIERS,
    ("accounts", "renewal_risk"): RENEWAL_RISKS,
}

#: Digits of whole numbers crmsync writes: a health score is 0-100, days to renewal fit 5.
INTEGER_PRECISION: Mapping[tuple[str, str], int] = {
    ("accounts", "health_score"): 3,
    ("accounts", "health_coverage"): 3,
}
DEFAULT_INTEGER_PRECISION = 18
DAYS_PRECISION = 5

#: A long text (a note body): Salesforce's Long Text Area maximum.
LONG_TEXT_LENGTH = 131072
#: Converters that write unbounded text (``handover_body``: a note body composed of the
#: handover's structured columns).
LONG_TEXT_CONVERTERS = frozenset({"text", "handover_body"})

#: The external id crmsync creates records through (ADR 0006 section 3), per CRM.
EXTERNAL_ID: Mapping[CrmName, str] = {"salesforce": "Crmsync_Id__c", "hubspot": "crmsync_id"}
#: A crmsync id is a UUID in text form.
EXTERNAL_ID_LENGTH = 36
#: Salesforce objects that cannot carry custom fields (a Note create is matched another way).
NO_CUSTOM_FIELDS: Mapping[CrmName, frozenset[str]] = {
    "salesforce": frozenset({"Note"}),
    "hubspot": frozenset(),
}
#: The HubSpot property group crmsync creates its properties in.
HUBSPOT_GROUP = "crmsync"
HUBSPOT_GROUP_LABEL = "crmsync"


class Kind(StrEnum):
    """What a target field holds, independent of the CRM."""

    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    TEXT = "text"  # bounded text (``length``)
    LONG_TEXT = "long_text"  # a note body
    ENUM = "enum"  # one of ``options``
    EXTERNAL_ID = "external_id"  # unique text crmsync upserts on


#: Converters whose target kind needs no size.
SIMPLE_KINDS: Mapping[str, Kind] = {
    "date": Kind.DATE,
    "datetime": Kind.DATETIME,
    "boolean": Kind.BOOLEAN,
}


class Problem(StrEnum):
    MISSING = "missing"  # not there, or not visible to the integration user
    WRONG_TYPE = "wrong_type"  # there, but it cannot hold what crmsync writes
    NOT_UPDATEABLE = "not_updateable"  # there, but the integration user cannot edit it


@dataclass(frozen=True)
class FieldSpec:
    """A field crmsync writes to, as crmsync would create it."""

    crm: CrmName
    object_name: str
    name: str
    label: str
    kind: Kind
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    options: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        """``Account.Health_Score__c`` / ``companies.crmsync_tier``."""
        return f"{self.object_name}.{self.name}"

    @property
    def creatable(self) -> bool:
        """Whether crmsync may create it: a custom field / property on an object that takes one."""
        if self.object_name in NO_CUSTOM_FIELDS[self.crm]:
            return False
        if self.crm == "salesforce":
            return self.name.endswith("__c")
        return not self.name.startswith("hs_")

    @property
    def crm_type(self) -> str:
        """The type as the CRM names it when creating the field (Tooling / properties API)."""
        if self.crm == "salesforce":
            return SALESFORCE_TYPES[self.kind]
        return HUBSPOT_TYPES[self.kind][0]

    def describe(self) -> str:
        """The type in words an admin can follow in the CRM's setup screens."""
        if self.crm == "salesforce":
            return _describe_salesforce(self)
        return _describe_hubspot(self)


#: Salesforce Tooling ``Metadata.type`` per kind.
SALESFORCE_TYPES: Mapping[Kind, str] = {
    Kind.NUMBER: "Number",
    Kind.DATE: "Date",
    Kind.DATETIME: "DateTime",
    Kind.BOOLEAN: "Checkbox",
    Kind.TEXT: "Text",
    Kind.LONG_TEXT: "LongTextArea",
    Kind.ENUM: "Picklist",
    Kind.EXTERNAL_ID: "Text",
}
#: HubSpot (``type``, ``fieldType``) per kind.
HUBSPOT_TYPES: Mapping[Kind, tuple[str, str]] = {
    Kind.NUMBER: ("number", "number"),
    Kind.DATE: ("date", "date"),
    Kind.DATETIME: ("datetime", "date"),
    Kind.BOOLEAN: ("bool", "booleancheckbox"),
    Kind.TEXT: ("string", "text"),
    Kind.LONG_TEXT: ("string", "textarea"),
    Kind.ENUM: ("enumeration", "select"),
    Kind.EXTERNAL_ID: ("string", "text"),
}


def _describe_salesforce(spec: FieldSpec) -> str:
    kind = spec.kind
    if kind is Kind.NUMBER:
        precision, scale = spec.precision or 18, spec.scale or 0
        return f"Number, length {precision - scale}, decimal places {scale}"
    if kind is Kind.TEXT:
        return f"Text, length {spec.length}"
    if kind is Kind.LONG_TEXT:
        return f"Text Area (Long), length {spec.length}"
    if kind is Kind.ENUM:
        return f"Picklist, values {', '.join(spec.options)}"
    if kind is Kind.EXTERNAL_ID:
        return f"Text, length {spec.length}, External ID, Unique"
    return {Kind.DATE: "Date", Kind.DATETIME: "Date/Time", Kind.BOOLEAN: "Checkbox"}[kind]


def _describe_hubspot(spec: FieldSpec) -> str:
    type_, field_type = HUBSPOT_TYPES[spec.kind]
    text = f"{type_} ({field_type})"
    if spec.kind is Kind.ENUM:
        text += f", options {', '.join(spec.options)}"
    if spec.kind is Kind.EXTERNAL_ID:
        text += ", unique values"
    return text


@dataclass(frozen=True)
class FieldMeta:
    """One field / property as the CRM reports it to the integration user.

    ``type`` is the CRM's own name (Salesforce describe: ``double``, ``string``, ``picklist``,
    ...; HubSpot: ``number``, ``string``, ``enumeration``, ...). ``options`` are a picklist's
    active values / an enumeration's option values; ``restricted`` whether other values are
    refused (a restricted Salesforce picklist; HubSpot enumerations always are). ``unique``:
    Salesforce ``externalId``, HubSpot ``hasUniqueValue``: usable as an upsert key.
    """

    name: str
    type: str
    updateable: bool
    label: str = ""
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    options: tuple[str, ...] = ()
    restricted: bool = False
    unique: bool = False


#: What a CRM reported: object -> field name -> metadata, or None (object absent / not readable).
ObjectFields = Mapping[str, FieldMeta]
FieldsByObject = Mapping[str, ObjectFields | None]


@runtime_checkable
class FieldReader(Protocol):
    """The port the CRM adapters implement: one metadata read per object."""

    def read_fields(self, object_names: Sequence[str]) -> FieldsByObject: ...


@dataclass(frozen=True)
class MissingField:
    """One target field that blocks the push, with what crmsync needs of it.

    ``spec`` holds the API name, label, type, length / precision / scale and options;
    ``problem`` why it blocks; ``found`` what the CRM has (None when missing); ``detail`` a
    one-line explanation.
    """

    spec: FieldSpec
    problem: Problem
    detail: str
    found: FieldMeta | None = None
    #: Overrides :meth:`fix` when setup learnt more (a created field the user cannot see).
    hint: str | None = None

    # The spec's fields, flat, for callers that print or serialise them.
    @property
    def crm(self) -> CrmName:
        return self.spec.crm

    @property
    def object_name(self) -> str:
        return self.spec.object_name

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def type(self) -> str:
        return self.spec.crm_type

    @property
    def length(self) -> int | None:
        return self.spec.length

    @property
    def precision(self) -> int | None:
        return self.spec.precision

    @property
    def scale(self) -> int | None:
        return self.spec.scale

    @property
    def options(self) -> tuple[str, ...]:
        return self.spec.options

    @property
    def creatable(self) -> bool:
        """``crmsync crm setup`` can create it (missing, and a custom field / property)."""
        return self.problem is Problem.MISSING and self.spec.creatable

    def fix(self) -> str:
        """What an admin does about it, in one line."""
        if self.hint is not None:
            return self.hint
        spec = self.spec
        if self.problem is Problem.MISSING:
            if not spec.creatable:
                return (
                    f"{spec.full_name} is a standard field crmsync cannot create: make it "
                    "visible to the integration user, or map it away in CRMSYNC_MAPPING_FILE"
                )
            if spec.crm == "salesforce":
                return (
                    f"create custom field {spec.full_name} ({spec.describe()}, "
                    f'label "{spec.label}") and give the integration user Edit access to it'
                )
            return (
                f"create property {spec.name} on {spec.object_name} ({spec.describe()}, "
                f'label "{spec.label}", group {HUBSPOT_GROUP})'
            )
        if self.problem is Problem.NOT_UPDATEABLE:
            if spec.crm == "salesforce":
                return (
                    f"give the integration user Edit access to {spec.full_name} "
                    "(field-level security)"
                )
            return (
                f"{spec.full_name} is read-only in HubSpot: map another property in "
                "CRMSYNC_MAPPING_FILE"
            )
        return (
            f"change {spec.full_name} to {spec.describe()}, or map another field in "
            "CRMSYNC_MAPPING_FILE"
        )

    def message(self) -> str:
        return f"{self.spec.full_name}: {self.detail}; fix: {self.fix()}"


# -- what the mappings need -----------------------------------------------------------------------


def _title(name: str, crm: CrmName) -> str:
    base = name.removesuffix("__c") if crm == "salesforce" else name.removeprefix("crmsync_")
    return " ".join(part.capitalize() for part in base.split("_") if part)


def field_spec(crm: CrmName, mapping: ObjectMapping, fm: FieldMapping) -> FieldSpec:
    """How crmsync would create the target of one outbound field mapping."""
    table, column = mapping.cs_table, fm.column
    converter, _, arg = fm.convert.partition(":")
    plain = FieldSpec(crm, mapping.crm_object, fm.crm_field, _title(fm.crm_field, crm), Kind.TEXT)
    options = ENUM_COLUMNS.get((table, column))
    if options is not None and converter == "string":
        return replace(plain, kind=Kind.ENUM, options=options)
    if converter == "integer":
        precision = INTEGER_PRECISION.get((table, column), DEFAULT_INTEGER_PRECISION)
        return replace(plain, kind=Kind.NUMBER, precision=precision, scale=0)
    if converter == "days_until":
        return replace(plain, kind=Kind.NUMBER, precision=DAYS_PRECISION, scale=0)
    if converter == "decimal":
        precision, scale = NUMERIC_SIZES.get(table, {}).get(column, (18, 2))
        return replace(plain, kind=Kind.NUMBER, precision=precision, scale=scale)
    if converter in SIMPLE_KINDS:
        return replace(plain, kind=SIMPLE_KINDS[converter])
    if converter in LONG_TEXT_CONVERTERS and not arg:
        return replace(plain, kind=Kind.LONG_TEXT, length=LONG_TEXT_LENGTH)
    if converter == "text":
        return replace(plain, length=int(arg))
    return replace(plain, length=max(STRING_LENGTHS.get(table, {}).get(column, 255), 1))


def external_id_spec(crm: CrmName, object_name: str) -> FieldSpec:
    return FieldSpec(
        crm=crm,
        object_name=object_name,
        name=EXTERNAL_ID[crm],
        label="crmsync id" if crm == "hubspot" else "Crmsync Id",
        kind=Kind.EXTERNAL_ID,
        length=EXTERNAL_ID_LENGTH,
    )


def target_specs(mappings: MappingSet) -> tuple[FieldSpec, ...]:
    """Every field the push writes, per object in mapping order, then its external id.

    A field fed by several outbound mappings (a note body carries the handover columns) is
    listed once, from its first mapping. Objects that cannot carry custom fields (Salesforce
    ``Note``) get no external id.
    """
    crm = mappings.crm
    out: list[FieldSpec] = []
    for mapping in mappings:
        seen: set[str] = set()
        for fm in mapping.outbound_fields:
            if fm.crm_field in seen or fm.crm_field.startswith(ASSOCIATION_PREFIX):
                continue
            seen.add(fm.crm_field)
            out.append(field_spec(crm, mapping, fm))
        if mapping.crm_object not in NO_CUSTOM_FIELDS[crm] and EXTERNAL_ID[crm] not in seen:
            out.append(external_id_spec(crm, mapping.crm_object))
    return tuple(out)


# -- comparison -----------------------------------------------------------------------------------

_SF_NUMBER = frozenset({"double", "int", "currency", "percent"})
_SF_TEXT = frozenset({"string", "textarea"})


def _shape(meta: FieldMeta) -> str:
    text = meta.type
    if meta.length:
        text += f"({meta.length})"
    elif meta.precision:
        text += f"({meta.precision}, {meta.scale or 0})"
    return text


def _fits_salesforce(spec: FieldSpec, meta: FieldMeta) -> str | None:
    """None when ``meta`` can hold what crmsync writes to ``spec``; else why not."""
    kind, t = spec.kind, meta.type
    if kind is Kind.NUMBER:
        if t not in _SF_NUMBER:
            return "not a number field"
        if t != "int" and meta.precision is not None and spec.precision is not None:
            whole = (meta.precision or 0) - (meta.scale or 0)
            if whole < spec.precision - (spec.scale or 0):
                return f"holds {whole} whole digits, crmsync writes up to {spec.precision}"
        if spec.scale and meta.scale is not None and meta.scale < spec.scale:
            return f"has {meta.scale} decimal places, crmsync writes {spec.scale}"
        return None
    if kind in (Kind.DATE, Kind.DATETIME, Kind.BOOLEAN):
        wanted = {Kind.DATE: "date", Kind.DATETIME: "datetime", Kind.BOOLEAN: "boolean"}[kind]
        return None if t == wanted else f"not a {wanted} field"
    if kind is Kind.ENUM:
        if t == "picklist":
            absent = [o for o in spec.options if o not in meta.options]
            if meta.restricted and absent:
                return f"restricted picklist without the values {', '.join(absent)}"
            return None
        if t in _SF_TEXT:
            return _long_enough(meta, max(len(o) for o in spec.options))
        return "not a picklist or text field"
    if kind is Kind.EXTERNAL_ID:
        if t != "string":
            return "not a text field"
        if not meta.unique:
            return "not marked External ID"
        return _long_enough(meta, spec.length or EXTERNAL_ID_LENGTH)
    if t not in _SF_TEXT:
        return "not a text field"
    return _long_enough(meta, spec.length) if kind is Kind.TEXT else None


def _fits_hubspot(spec: FieldSpec, meta: FieldMeta) -> str | None:
    kind, t = spec.kind, meta.type
    if kind is Kind.NUMBER:
        return None if t == "number" else "not a number property"
    if kind is Kind.DATE:
        return None if t in ("date", "datetime") else "not a date property"
    if kind is Kind.DATETIME:
        return None if t == "datetime" else "not a datetime property"
    if kind is Kind.BOOLEAN:
        return None if t == "bool" else "not a bool property"
    if kind is Kind.ENUM:
        if t == "enumeration":
            absent = [o for o in spec.options if o not in meta.options]
            return f"enumeration without the options {', '.join(absent)}" if absent else None
        return None if t == "string" else "not an enumeration or string property"
    if t != "string":
        return "not a string property"
    if kind is Kind.EXTERNAL_ID and not meta.unique:
        return "does not have unique values (hasUniqueValue)"
    return None


def _long_enough(meta: FieldMeta, needed: int | None) -> str | None:
    if needed is None or not meta.length or meta.length >= needed:
        return None
    return f"holds {meta.length} characters, crmsync writes up to {needed}"


def check_field(spec: FieldSpec, meta: FieldMeta | None) -> MissingField | None:
    """The problem with one target field, or None when the push can write it."""
    if meta is None:
        return MissingField(spec, Problem.MISSING, "written by crmsync; not found or not visible")
    fits = _fits_salesforce if spec.crm == "salesforce" else _fits_hubspot
    reason = fits(spec, meta)
    if reason is not None:
        return MissingField(
            spec,
            Problem.WRONG_TYPE,
            f"written by crmsync; is {_shape(meta)}: {reason}",
            meta,
        )
    if not meta.updateable:
        return MissingField(
            spec, Problem.NOT_UPDATEABLE, "written by crmsync; not updateable", meta
        )
    return None


def compare(specs: Sequence[FieldSpec], fields: FieldsByObject) -> list[MissingField]:
    """Every problem of ``specs`` against what the CRM reported, in ``specs`` order."""
    out: list[MissingField] = []
    for spec in specs:
        object_fields = fields.get(spec.object_name)
        if object_fields is None:
            out.append(
                MissingField(
                    spec,
                    Problem.MISSING,
                    f"object {spec.object_name} not found or not readable",
                )
            )
            continue
        problem = check_field(spec, object_fields.get(spec.name))
        if problem is not None:
            out.append(problem)
    return out


def missing_targets(
    source: FieldReader | FieldsByObject, mappings: MappingSet
) -> list[MissingField]:
    """What blocks a push of ``mappings``: missing, mistyped or read-only target fields.

    ``source`` is either the fields already read (object -> name -> :class:`FieldMeta`) or a
    :class:`FieldReader` (``SalesforceFields(client)``, ``HubSpotFields(client)``), asked once
    for the objects that have target fields. An empty list: the push may start.
    """
    specs = target_specs(mappings)
    if isinstance(source, FieldReader):
        objects = tuple(dict.fromkeys(s.object_name for s in specs))
        fields = source.read_fields(objects) if objects else {}
    else:
        fields = source
    return compare(specs, fields)


def refusal(problems: Sequence[MissingField]) -> str:
    """The one message a push prints when it refuses to start."""
    crms = sorted({p.crm for p in problems})
    lines = [
        f"the push needs {len(problems)} target field(s) that are missing or unusable; "
        f"run `crmsync crm setup --crm {crms[0] if len(crms) == 1 else 'X'}` "
        "(or see its --dry-run):"
    ]
    lines.extend(f"  {p.crm} {p.message()}" for p in problems)
    return "\n".join(lines)


# -- setup ----------------------------------------------------------------------------------------


class Outcome(StrEnum):
    CREATED = "created"
    EXISTS = "exists"  # the create found it there already (HubSpot 409, Salesforce duplicate)
    REFUSED = "refused"  # the CRM does not let this user create fields


@dataclass(frozen=True)
class Created:
    """What one create call (or the decision not to make it) came to."""

    spec: FieldSpec
    outcome: Outcome
    detail: str = ""


class Provisioner(FieldReader, Protocol):
    """The port ``crmsync crm setup`` drives: read fields, create the missing ones.

    ``create_fields`` answers one :class:`Created` per spec, in order; after a refusal it may
    answer REFUSED for the rest without asking again (one refusal means the user lacks the
    permission, not that one field is wrong).
    """

    def create_fields(self, specs: Sequence[FieldSpec]) -> list[Created]: ...


def create_until_refused(
    create: Callable[[FieldSpec], Created], specs: Sequence[FieldSpec]
) -> list[Created]:
    """``create`` each spec in order, as :meth:`Provisioner.create_fields` promises: after the
    first refusal the rest are answered REFUSED with its words, without another call."""
    out: list[Created] = []
    refused: Created | None = None
    for spec in specs:
        if refused is not None:
            out.append(Created(spec, Outcome.REFUSED, refused.detail))
            continue
        result = create(spec)
        if result.outcome is Outcome.REFUSED:
            refused = result
        out.append(result)
    return out


@dataclass(frozen=True)
class SetupReport:
    """What ``crmsync crm setup`` found and did for one CRM.

    ``planned``: the fields it creates (dry run: would create). ``created``/``existed``: the
    outcome of the creates. ``manual``: what a human must do (exit 2): fields crmsync may not
    create, mistyped or read-only fields, refused creates, created fields the user cannot see.
    """

    crm: CrmName
    dry_run: bool
    planned: tuple[MissingField, ...]
    created: tuple[FieldSpec, ...] = ()
    existed: tuple[FieldSpec, ...] = ()
    manual: tuple[MissingField, ...] = ()
    #: The CRM's words when it refused a create (``CODE: message``), once for all fields.
    refused: str | None = None

    @property
    def status(self) -> str:
        if self.manual:
            return "action_needed"
        if self.dry_run:
            return "planned" if self.planned else "ready"
        return "done" if self.created or self.existed else "ready"


def _objects(specs: Sequence[FieldSpec]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.object_name for s in specs))


def _refused(problem: MissingField, detail: str) -> MissingField:
    code = detail.partition(":")[0] or "refused"
    return replace(problem, detail=f"missing; the CRM refused to create it ({code})")


def _unsettled(problem: MissingField, outcome: Outcome) -> MissingField:
    """A field created (or found existing) that the user still cannot use."""
    if problem.problem is not Problem.MISSING or problem.crm != "salesforce":
        return problem
    spec = problem.spec
    said = "created" if outcome is Outcome.CREATED else "exists"
    return replace(
        problem,
        detail=f"{said}, but not visible to the integration user",
        hint=(
            f"give the integration user Read and Edit access to {spec.full_name} "
            "(field-level security, in its profile or a permission set)"
        ),
    )


def setup(provisioner: Provisioner, mappings: MappingSet, *, dry_run: bool) -> SetupReport:
    """Create the missing target fields of ``mappings``; report what a human must do.

    Calls: one metadata read per object; then, unless ``dry_run`` or nothing is missing, the
    creates (HubSpot: the ``crmsync`` property group first) and one more read per object
    touched, to confirm what the creates left (a Salesforce field the user cannot see until
    field-level security allows it). A second run finds nothing to do and makes only the reads.
    """
    specs = target_specs(mappings)
    problems = compare(specs, provisioner.read_fields(_objects(specs)) if specs else {})
    planned = tuple(p for p in problems if p.creatable)
    manual = [p for p in problems if not p.creatable]
    if dry_run or not planned:
        return SetupReport(mappings.crm, dry_run, planned, manual=tuple(manual))
    results = provisioner.create_fields([p.spec for p in planned])
    touched: dict[str, tuple[MissingField, Outcome]] = {}
    refused: str | None = None
    for problem, result in zip(planned, results, strict=True):
        if result.outcome is Outcome.REFUSED:
            refused = refused or result.detail
            manual.append(_refused(problem, result.detail))
        else:
            touched[problem.spec.full_name] = (problem, result.outcome)
    created = tuple(p.spec for p, o in touched.values() if o is Outcome.CREATED)
    existed = tuple(p.spec for p, o in touched.values() if o is Outcome.EXISTS)
    if touched:
        again = provisioner.read_fields(_objects([p.spec for p, _ in touched.values()]))
        left = compare([p.spec for p, _ in touched.values()], again)
        manual.extend(_unsettled(p, touched[p.spec.full_name][1]) for p in left)
    return SetupReport(mappings.crm, False, planned, created, existed, tuple(manual), refused)
