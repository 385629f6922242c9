"""``crmsync crm check``, the pure half: what an org offers against what the mappings need.

The I/O half (:mod:`app.crm.salesforce.org`, :mod:`app.crm.hubspot.org`) logs in and reads the
org into an :class:`OrgFacts`; :func:`needs_from` turns a :class:`~app.mappers.spec.MappingSet`
into :class:`ObjectNeed` values; :func:`findings` compares the two and returns one
:class:`Finding` per check, each problem with the fix it needs. No I/O, no clock: the CLI renders
the findings and exits 2 when one is :attr:`Status.MISSING`.

Why a check at all: a missing custom field or a field the integration user cannot edit only
shows at the first pull (or the first write-back), possibly in a nightly job; the daily API
budget is shared by every integration of the org, so an admin wants to see it before a backfill.
This module must not import ``app.sync``/``app.db``/``crmsync_sandbox``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.crm.base import CrmName
from app.mappers.spec import MappingSet

#: Warn when less than this share of the daily budget is left.
LOW_BUDGET_FRACTION = 0.1

FIELDS_DOC = {
    "salesforce": 'docs/connect-salesforce.md "Fields"',
    "hubspot": 'docs/connect-hubspot.md "Fields"',
}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but worth knowing (a low budget, an optional field absent)
    MISSING = "missing"  # crmsync cannot work as configured: exit 2


@dataclass(frozen=True)
class FieldFacts:
    """One field (Salesforce) or property (HubSpot) as the integration user sees it."""

    name: str
    updateable: bool


@dataclass(frozen=True)
class OrgFacts:
    """What :mod:`...org` read from a CRM.

    ``objects`` maps each object asked for to its fields, or to None when the object does not
    exist or the user cannot read it. ``api_versions`` is what the org offers (None when the
    CRM versions by path, as HubSpot does). ``daily_max``/``daily_used`` are None when the CRM
    did not report them (HubSpot OAuth apps have no daily cap). ``bulk`` is None where the CRM
    has no bulk export (HubSpot).
    """

    crm: CrmName
    api_version: str
    api_versions: tuple[str, ...] | None
    daily_max: int | None
    daily_used: int | None
    bulk: bool | None
    objects: Mapping[str, Mapping[str, FieldFacts] | None]


@dataclass(frozen=True)
class ObjectNeed:
    """The fields a CRM object must have for the mappings: read by pulls, written by pushes."""

    object_name: str
    read: tuple[str, ...]
    optional: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    status: Status
    detail: str
    fix: str | None = None


def needs_from(mappings: MappingSet) -> tuple[ObjectNeed, ...]:
    """Each mapped object's fields: required reads, optional reads, and writes."""
    out: list[ObjectNeed] = []
    for m in mappings:
        optional = tuple(f.crm_field for f in m.inbound_fields if f.optional)
        out.append(
            ObjectNeed(
                object_name=m.crm_object,
                read=m.read_fields(available=None),
                optional=tuple(dict.fromkeys(optional)),
                write=m.write_fields(),
            )
        )
    return tuple(out)


def _version_key(version: str) -> tuple[float, str]:
    try:
        return (float(version), version)
    except ValueError:
        return (-1.0, version)


def check_version(facts: OrgFacts) -> Finding:
    if facts.api_versions is None:
        return Finding("API version", facts.crm, Status.OK, facts.api_version)
    offered = sorted(facts.api_versions, key=_version_key)
    latest = offered[-1] if offered else "?"
    if facts.api_version in offered:
        return Finding(
            "API version",
            facts.crm,
            Status.OK,
            f"{facts.api_version} (the org offers up to {latest})",
        )
    return Finding(
        "API version",
        facts.crm,
        Status.MISSING,
        f"{facts.api_version} is not offered by the org (it offers up to {latest})",
        f"set CRMSYNC_SALESFORCE_API_VERSION={latest}",
    )


def check_budget(facts: OrgFacts) -> Finding:
    if facts.daily_max is None or facts.daily_used is None:
        return Finding(
            "daily API limit",
            facts.crm,
            Status.OK,
            "not reported (HubSpot OAuth apps have no daily cap, only the burst limit)"
            if facts.crm == "hubspot"
            else "not reported",
        )
    left = max(0, facts.daily_max - facts.daily_used)
    detail = f"{facts.daily_used:,} of {facts.daily_max:,} used, {left:,} left"
    if facts.daily_max and left < facts.daily_max * LOW_BUDGET_FRACTION:
        return Finding(
            "daily API limit",
            facts.crm,
            Status.WARN,
            detail,
            "the budget is shared by every integration of the org: run a backfill once it "
            "has recovered (rolling 24 h), or ask the admin for more calls",
        )
    return Finding("daily API limit", facts.crm, Status.OK, detail)


def check_bulk(facts: OrgFacts) -> Finding:
    if facts.bulk is None:
        return Finding(
            "Bulk API 2.0", facts.crm, Status.OK, "not applicable (HubSpot pulls use CRM search)"
        )
    if facts.bulk:
        return Finding("Bulk API 2.0", facts.crm, Status.OK, "available")
    return Finding(
        "Bulk API 2.0",
        facts.crm,
        Status.MISSING,
        "not available to this user (no Bulk 2.0 query jobs left or allowed today)",
        "grant the integration user 'API Enabled' on an edition with Bulk API 2.0, or set "
        "CRMSYNC_SYNC__BULK_THRESHOLD=1000000000 so every pull uses REST pages",
    )


def check_object(
    crm: CrmName, need: ObjectNeed, fields: Mapping[str, FieldFacts] | None
) -> list[Finding]:
    """One row when the object is fine; one row per problem otherwise."""
    if fields is None:
        who = "the integration user" if crm == "salesforce" else "the app"
        scope = (
            f"grant {who} read access to {need.object_name} (profile or permission set)"
            if crm == "salesforce"
            else f"add the crm.objects.{need.object_name}.read scope to the app"
        )
        return [
            Finding("object", need.object_name, Status.MISSING, "not found or not readable", scope)
        ]
    out: list[Finding] = []
    doc = FIELDS_DOC[crm]
    for name in need.read:
        if name not in fields:
            out.append(
                Finding(
                    "field",
                    f"{need.object_name}.{name}",
                    Status.MISSING,
                    "read by pulls; not found or not visible",
                    f"create it ({doc}), grant read access to it, or map it away in "
                    "CRMSYNC_MAPPING_FILE",
                )
            )
    for name in need.write:
        field = fields.get(name)
        if field is None:
            out.append(
                Finding(
                    "field",
                    f"{need.object_name}.{name}",
                    Status.MISSING,
                    "written back by crmsync; not found or not visible",
                    f"create it ({doc}) or map it away in CRMSYNC_MAPPING_FILE",
                )
            )
        elif not field.updateable:
            out.append(
                Finding(
                    "field",
                    f"{need.object_name}.{name}",
                    Status.MISSING,
                    "written back by crmsync; not updateable",
                    "give the integration user edit access to it (field-level security)"
                    if crm == "salesforce"
                    else "it is read-only in HubSpot: map another property in CRMSYNC_MAPPING_FILE",
                )
            )
    absent = [n for n in need.optional if n not in fields]
    if not out:
        detail = f"{len(need.read)} read, {len(need.write)} written back"
        if absent:
            detail += f"; optional, not in this org: {', '.join(absent)}"
        out.append(Finding("object", need.object_name, Status.OK, detail))
    return out


def findings(facts: OrgFacts, needs: Sequence[ObjectNeed]) -> list[Finding]:
    """Every check of one CRM, in the order the table shows them."""
    out = [check_version(facts), check_budget(facts), check_bulk(facts)]
    for need in needs:
        out.extend(check_object(facts.crm, need, facts.objects.get(need.object_name)))
    return out


def worst(found: Sequence[Finding]) -> Status:
    statuses = {f.status for f in found}
    for status in (Status.MISSING, Status.WARN):
        if status in statuses:
            return status
    return Status.OK
