"""Declarative field mappings: which CRM field fills which CS column, how, and in which direction.

A :class:`MappingSet` holds one :class:`ObjectMapping` per CRM object of one CRM; each lists its
:class:`FieldMapping` entries and :class:`ParentRef` links. Everything is a frozen value: the
defaults live in :mod:`app.mappers.defaults`, a user's TOML file is applied with
:func:`app.mappers.config.apply_overrides`, and :func:`validate_mapping_set` checks the result.

Directions (:class:`Direction`):

* ``crm_to_cs``: pulled; the CRM always wins; never pushed.
* ``cs_to_crm``: pushed (write-back); never pulled.
* ``both``: pulled and pushed; each pass merges the field three ways against the push ledger
  and, on a true conflict, applies the field's :class:`ConflictPolicy` (see
  :mod:`app.mappers.ownership`).
* ``none``: not synced (kept in the mapping so an override can switch a default off).

A direction must be one the field's converter can carry: pulling needs ``to_cs``, pushing
``to_crm`` (:func:`validate_field` refuses the mapping otherwise, naming the field). A CRM field
is written from one column at most. Other inbound fields may read the same CRM field as a
``both`` field (the handover ``Body`` feeds the structured columns): a pull takes them exactly
when it takes the ``both`` field (:meth:`ObjectMapping.two_way_fields`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

from app.core.types import CrmName
from app.mappers.columns import CS_COLUMNS, CS_TABLES, is_mappable
from app.mappers.convert import get_converter
from app.mappers.errors import MappingConfigError

#: Prefix of HubSpot association keys in a wire record (``associations.companies``).
ASSOCIATION_PREFIX = "associations."


class Direction(StrEnum):
    CRM_TO_CS = "crm_to_cs"
    CS_TO_CRM = "cs_to_crm"
    BOTH = "both"
    NONE = "none"

    @property
    def inbound(self) -> bool:
        """Pulled from the CRM into the CS database."""
        return self in (Direction.CRM_TO_CS, Direction.BOTH)

    @property
    def outbound(self) -> bool:
        """Pushed from the CS database to the CRM."""
        return self in (Direction.CS_TO_CRM, Direction.BOTH)


class ConflictPolicy(StrEnum):
    """Who wins a ``both`` field when the CRM and the CS database disagree on a pull."""

    PREFER_CRM = "prefer_crm"
    PREFER_CS = "prefer_cs"
    NEWEST_WINS = "newest_wins"


@dataclass(frozen=True)
class FieldMapping:
    """One CRM field <-> one CS column.

    ``convert`` names a converter of :mod:`app.mappers.convert` (``"text:255"`` carries an
    argument). ``conflict_policy`` only matters for ``direction=both``. ``optional`` fields are
    only read when the CRM object has them (``CurrencyIsoCode`` exists only in multi-currency
    Salesforce orgs): see :meth:`ObjectMapping.read_fields`. A ``derived`` converter computes the
    pushed value from the column at write time (``days_until``: ``Days_To_Renewal__c``).
    ``required``: a record whose value is empty or invalid is kept out (a record-level
    ``sync_errors`` row) instead of being stored with the field empty; no default field is.
    """

    crm_field: str
    column: str
    convert: str = "string"
    direction: Direction = Direction.CRM_TO_CS
    conflict_policy: ConflictPolicy = ConflictPolicy.PREFER_CRM
    optional: bool = False
    required: bool = False

    @property
    def derived(self) -> bool:
        return get_converter(self.convert).derived


@dataclass(frozen=True)
class ParentRef:
    """A link from this record to its parent, by the parent's CRM id.

    ``map_record`` reads ``crm_field`` (converted with ``convert``) and reports the id under
    ``link_column`` in ``MappedRecord.parent_refs``; the engine looks up the ``target_table`` row
    with that ``sf_id``/``hs_id`` and sets ``link_column`` (or leaves it null until the parent
    arrives: the CRM id is also stored in a plain column such as ``sf_account_id``). When several
    refs fill one link column, the first with a value wins. ``id_prefix`` keeps only ids with that
    Salesforce key prefix (a Note's ``ParentId`` may be an Account ``001`` or Opportunity ``006``).
    """

    link_column: str
    target_table: str
    crm_field: str
    convert: str = "string"
    id_prefix: str | None = None


@dataclass(frozen=True)
class ObjectMapping:
    """How one CRM object maps to one CS table.

    ``id_field`` / ``modified_field`` / ``deleted_field`` are the CRM's record id, last-modified
    stamp and soft-delete flag (``Id``/``SystemModstamp``/``IsDeleted``;
    ``id``/``hs_lastmodifieddate``/``archived``). They fill :attr:`id_column` and
    :attr:`modified_column` (``sf_id``/``sf_modified_at`` or ``hs_id``/``hs_modified_at``).
    ``defaults`` are CS values used when the CRM gives none (``currency``: the configured default
    currency, since single-currency Salesforce orgs and HubSpot companies carry no currency).
    """

    crm: CrmName
    crm_object: str
    cs_table: str
    id_field: str
    modified_field: str
    deleted_field: str | None
    fields: tuple[FieldMapping, ...]
    parents: tuple[ParentRef, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: ``"handover:<field>"``: only records whose ``<field>`` is a handover note are synced
    #: (a CRM holds many notes; crmsync owns the handovers). None: every record.
    record_filter: str | None = None

    @property
    def id_column(self) -> str:
        return "sf_id" if self.crm == "salesforce" else "hs_id"

    @property
    def modified_column(self) -> str:
        return "sf_modified_at" if self.crm == "salesforce" else "hs_modified_at"

    @cached_property
    def inbound_fields(self) -> tuple[FieldMapping, ...]:
        """Fields pulled into the CS database (``crm_to_cs`` and ``both``).

        Cached: the mapping is frozen, and the pull asks for this once per record.
        """
        return tuple(f for f in self.fields if f.direction.inbound)

    @cached_property
    def two_way_fields(self) -> tuple[tuple[FieldMapping, tuple[str, ...]], ...]:
        """Each ``both`` field with the columns its CRM field fills (its own first, then those of
        the other inbound fields reading the same CRM field): the unit of the three-way merge."""
        result: list[tuple[FieldMapping, tuple[str, ...]]] = []
        for fm in self.fields:
            if fm.direction is not Direction.BOTH:
                continue
            columns = [fm.column] + [
                f.column
                for f in self.inbound_fields
                if f.crm_field == fm.crm_field and f.column != fm.column
            ]
            result.append((fm, tuple(dict.fromkeys(columns))))
        return tuple(result)

    @property
    def outbound_fields(self) -> tuple[FieldMapping, ...]:
        """Fields pushed to the CRM (``cs_to_crm`` and ``both``, with a writer)."""
        return tuple(
            f
            for f in self.fields
            if f.direction.outbound and get_converter(f.convert).to_crm is not None
        )

    def field_for(self, crm_field: str) -> FieldMapping | None:
        """The first mapping of ``crm_field`` (a field may feed several columns)."""
        return next((f for f in self.fields if f.crm_field == crm_field), None)

    def field_for_column(self, column: str) -> FieldMapping | None:
        """The inbound mapping that fills ``column``, if any."""
        return next((f for f in self.inbound_fields if f.column == column), None)

    def read_fields(self, available: Collection[str] | None = None) -> tuple[str, ...]:
        """CRM fields (HubSpot: properties) a pull must request, in a stable order.

        Includes the id, modified and deleted fields for Salesforce (HubSpot returns ``id`` and
        ``archived`` outside the properties, so they are left out), every inbound field and every
        parent ref, but not association keys (see :meth:`associations`). ``optional`` fields are
        included only when ``available`` (the object's describe) lists them; without
        ``available`` they are left out, so a query never names a field the org lacks.
        """
        names: list[str] = []
        if self.crm == "salesforce":
            names.append(self.id_field)
        names.append(self.modified_field)
        if self.crm == "salesforce" and self.deleted_field:
            names.append(self.deleted_field)
        for f in self.inbound_fields:
            if f.optional and (available is None or f.crm_field not in available):
                continue
            names.append(f.crm_field)
        names.extend(p.crm_field for p in self.parents)
        seen: set[str] = set()
        result: list[str] = []
        for name in names:
            if name not in seen and not name.startswith(ASSOCIATION_PREFIX):
                seen.add(name)
                result.append(name)
        return tuple(result)

    def associations(self) -> tuple[str, ...]:
        """HubSpot association types the pull must request (``("companies", "deals")``)."""
        keys = [f.crm_field for f in self.inbound_fields] + [p.crm_field for p in self.parents]
        found: list[str] = []
        for key in keys:
            if key.startswith(ASSOCIATION_PREFIX):
                kind = key[len(ASSOCIATION_PREFIX) :]
                if kind not in found:
                    found.append(kind)
        return tuple(found)

    def write_fields(self) -> tuple[str, ...]:
        """CRM fields a push may write."""
        return tuple(dict.fromkeys(f.crm_field for f in self.outbound_fields))


@dataclass(frozen=True)
class MappingSet:
    """All object mappings of one CRM."""

    crm: CrmName
    objects: tuple[ObjectMapping, ...]

    def __iter__(self) -> Iterator[ObjectMapping]:
        return iter(self.objects)

    def object(self, crm_object: str) -> ObjectMapping:
        """The mapping of ``crm_object`` (``"Account"``, ``"deals"``); KeyError if none."""
        for mapping in self.objects:
            if mapping.crm_object == crm_object:
                return mapping
        known = ", ".join(m.crm_object for m in self.objects)
        raise KeyError(f"no {self.crm} mapping for object {crm_object!r} (known: {known})")

    def for_table(self, cs_table: str) -> ObjectMapping:
        """The mapping that fills ``cs_table``; KeyError if none."""
        for mapping in self.objects:
            if mapping.cs_table == cs_table:
                return mapping
        raise KeyError(f"no {self.crm} mapping fills table {cs_table!r}")

    @property
    def object_names(self) -> tuple[str, ...]:
        return tuple(m.crm_object for m in self.objects)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate_field(table: str, fm: FieldMapping, key: str) -> None:
    """Check one field mapping; ``key`` is its TOML path for the error message."""
    if not isinstance(fm.direction, Direction):
        raise MappingConfigError(f"{key}.direction", f"unknown direction {fm.direction!r}")
    if not isinstance(fm.conflict_policy, ConflictPolicy):
        raise MappingConfigError(
            f"{key}.conflict_policy", f"unknown conflict policy {fm.conflict_policy!r}"
        )
    if fm.column not in CS_COLUMNS[table]:
        raise MappingConfigError(
            f"{key}.column",
            f"table {table!r} has no column {fm.column!r}; "
            f"known: {', '.join(sorted(c for c in CS_COLUMNS[table] if is_mappable(table, c)))}",
        )
    if not is_mappable(table, fm.column):
        raise MappingConfigError(
            f"{key}.column", f"column {fm.column!r} is managed by the sync engine, not mappable"
        )
    try:
        converter = get_converter(fm.convert)
    except (KeyError, ValueError) as exc:
        raise MappingConfigError(f"{key}.convert", str(exc.args[0])) from None
    if fm.direction.inbound and converter.to_cs is None:
        raise MappingConfigError(
            f"{key}.direction",
            f"column {fm.column!r}: converter {fm.convert!r} cannot read from the CRM (it only "
            f"writes), but direction {fm.direction.value!r} pulls the field; "
            "use 'cs_to_crm' or 'none'",
        )
    if fm.direction.outbound and converter.to_crm is None:
        raise MappingConfigError(
            f"{key}.direction",
            f"column {fm.column!r}: converter {fm.convert!r} cannot write to the CRM (it only "
            f"reads), but direction {fm.direction.value!r} pushes the field; "
            "use 'crm_to_cs' or 'none'",
        )


def validate_object_mapping(mapping: ObjectMapping, key: str | None = None) -> None:
    """Check an object mapping: table, columns, converters, directions, unique inbound columns."""
    key = key or f"{mapping.crm}.{mapping.crm_object}"
    if mapping.cs_table not in CS_TABLES:
        raise MappingConfigError(key, f"unknown CS table {mapping.cs_table!r}")
    inbound: dict[str, str] = {}
    outbound: dict[str, str] = {}
    for fm in mapping.fields:
        field_key = f"{key}.fields.{fm.crm_field}"
        validate_field(mapping.cs_table, fm, field_key)
        if fm.direction.outbound:
            if fm.crm_field in outbound:
                raise MappingConfigError(
                    f"{field_key}.direction",
                    f"the CRM field is already written from column {outbound[fm.crm_field]!r}; "
                    f"column {fm.column!r} cannot write it too (set one to 'crm_to_cs' or 'none')",
                )
            outbound[fm.crm_field] = fm.column
        if fm.direction.inbound:
            other = inbound.get(fm.column)
            if other is not None:
                raise MappingConfigError(
                    f"{field_key}.column",
                    f"column {fm.column!r} is already filled by {key}.fields.{other}; "
                    "set one of them to direction 'none' or 'cs_to_crm'",
                )
            inbound[fm.column] = fm.crm_field
    for parent in mapping.parents:
        parent_key = f"{key}.parents.{parent.link_column}"
        if parent.link_column not in CS_COLUMNS[mapping.cs_table]:
            raise MappingConfigError(parent_key, f"unknown link column {parent.link_column!r}")
        if parent.target_table not in CS_TABLES:
            raise MappingConfigError(parent_key, f"unknown table {parent.target_table!r}")
        try:
            get_converter(parent.convert)
        except (KeyError, ValueError) as exc:
            raise MappingConfigError(f"{parent_key}.convert", str(exc.args[0])) from None
    for column in mapping.defaults:
        if not is_mappable(mapping.cs_table, column):
            raise MappingConfigError(f"{key}.defaults.{column}", "not a mappable column")


def validate_mapping_set(mappings: MappingSet) -> None:
    """Check every object mapping of a set; raises :class:`MappingConfigError`."""
    seen: set[str] = set()
    for mapping in mappings:
        if mapping.crm != mappings.crm:
            raise MappingConfigError(
                f"{mappings.crm}.{mapping.crm_object}", f"belongs to {mapping.crm}"
            )
        if mapping.crm_object in seen:
            raise MappingConfigError(f"{mappings.crm}.{mapping.crm_object}", "mapped twice")
        seen.add(mapping.crm_object)
        validate_object_mapping(mapping)
