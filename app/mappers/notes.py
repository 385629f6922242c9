"""Notes written on the CS side (issue #17 item 7): their body, their create, their recovery.

Pure: no I/O, no clock (``now`` is an argument). Three parts:

* :func:`compose_note` turns what the API received (title, free text, structured handover
  columns) into the row's ``body`` and structured columns, so that the body **is a handover
  note**: the CRM shows it as one, and the next pull accepts it (the note mappings'
  ``record_filter`` keeps handover notes only) and parses the same columns back, so the pull
  finds nothing to change. A body that is already a handover is kept as sent; otherwise the
  handover lines rendered from the title and the structured columns come first and the free
  text follows after a blank line (a blank line ends the last field, so the text belongs to no
  column).
* :func:`create_extras`: what a create of a note needs beyond its mapped fields: Salesforce
  ``ParentId`` (the account or opportunity), HubSpot ``hs_timestamp`` and the associations to the
  company (190) and the deal (214).
* The Salesforce pending create (ADR 0006 section 3): a Salesforce ``Note`` cannot carry an
  external id, so before its create call the row is marked pending in ``field_stamps`` under
  :data:`PENDING_KEY` (an ISO stamp, like every other value there; no column is named so, so the
  merge never reads it). A later push that finds the mark on a row still without ``sf_id`` first
  lists the parent's notes created since the mark (:func:`lookup_since`) and takes the one whose
  ``Title`` and ``Body`` equal the row's (:func:`match_pending`) instead of creating another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.mappers.handover import parse_handover, render_handover

__all__ = [
    "BODY_MAX",
    "HUBSPOT_NOTE_TO_COMPANY",
    "HUBSPOT_NOTE_TO_DEAL",
    "LOOKUP_MARGIN",
    "PENDING_KEY",
    "STRUCTURED",
    "ComposedNote",
    "CrmNote",
    "PendingNote",
    "compose_note",
    "create_extras",
    "lookup_since",
    "match_pending",
    "pending_since",
    "with_pending",
    "without_pending",
]

#: The structured handover columns (domain.md 6.2), in render order.
STRUCTURED = (
    "sold",
    "contacts",
    "goals",
    "success_criteria",
    "special_terms",
    "risks",
    "fit",
    "timeline",
)

#: The longest body both CRMs take (Salesforce ``Note.Body`` is a 32,000-character text area;
#: HubSpot's ``hs_note_body`` takes 65,536).
BODY_MAX = 32_000

#: HubSpot-defined association types (crm-api.md B.6): note -> company, note -> deal.
HUBSPOT_NOTE_TO_COMPANY = 190
HUBSPOT_NOTE_TO_DEAL = 214

#: ``field_stamps`` key of a Salesforce note whose create call was (about to be) made.
PENDING_KEY = "@pending_create:salesforce"

#: How far before the pending mark the lookup reads: ``CreatedDate`` is the CRM's clock, at
#: one-second precision, and the two clocks may disagree by a little.
LOOKUP_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class ComposedNote:
    """The ``handover_notes`` values a CS-side note is stored with."""

    title: str
    body: str
    columns: Mapping[str, Any]


def compose_note(
    title: str,
    text: str | None,
    structured: Mapping[str, Any] | None = None,
    *,
    opportunity_crm_id: str | None = None,
) -> ComposedNote:
    """The body and structured columns of a note titled ``title`` (see the module docstring).

    ``text`` that already parses as a handover is the body as it is (``structured`` is then
    not used: the body holds its own). Otherwise the body is the handover lines rendered from
    ``title``, ``opportunity_crm_id`` (an ``Opportunity:`` line) and ``structured``, then
    ``text``. The columns are always those parsed back from the body, so the CS row equals what
    a pull of the same body stores.
    """
    given = {k: v for k, v in (structured or {}).items() if k in STRUCTURED}
    free = (text or "").strip("\n")
    if free and parse_handover(free).is_handover:
        body = free
    else:
        header = render_handover(
            {"title": title, **given}, deal_name=title, opportunity_crm_id=opportunity_crm_id
        )
        body = f"{header}\n\n{free}" if free else header
    return ComposedNote(title, body, parse_handover(body).columns())


def create_extras(
    crm: str, row: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str, int]]]:
    """Fields and associations a note's create needs besides its mapped fields.

    Salesforce: ``ParentId`` = the opportunity when the note has one, else the account
    (``sf_parent_id``). HubSpot: ``hs_timestamp`` (required) = when the note was written
    (``created_at``), and ``(object, id, association type)`` for the company and the deal.
    Without a parent id in that CRM (no ``ParentId``, no association) the note cannot be
    created there yet: the push's create hook holds it back until the parent has one.
    """
    if crm == "salesforce":
        parent = row.get("sf_parent_id")
        return ({"ParentId": str(parent)} if parent else {}), []
    fields: dict[str, Any] = {}
    created = row.get("created_at")
    if isinstance(created, datetime):
        fields["hs_timestamp"] = _iso_ms(created)
    links: list[tuple[str, str, int]] = []
    if row.get("hs_company_id"):
        links.append(("companies", str(row["hs_company_id"]), HUBSPOT_NOTE_TO_COMPANY))
    if row.get("hs_deal_id"):
        links.append(("deals", str(row["hs_deal_id"]), HUBSPOT_NOTE_TO_DEAL))
    return fields, links


def _iso_ms(at: datetime) -> str:
    when = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Salesforce pending creates
# --------------------------------------------------------------------------------------------


def pending_since(field_stamps: Mapping[str, Any] | None) -> datetime | None:
    """When the row's Salesforce create was marked pending, or None (never, or unreadable)."""
    raw = (field_stamps or {}).get(PENDING_KEY)
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def with_pending(field_stamps: Mapping[str, Any] | None, at: datetime) -> dict[str, Any]:
    """``field_stamps`` with the pending mark set to ``at`` (an earlier mark is kept: the first
    create call is the oldest a note of this row can be)."""
    stamps = dict(field_stamps or {})
    if pending_since(stamps) is None:
        stamps[PENDING_KEY] = at.astimezone(UTC).isoformat(timespec="microseconds")
    return stamps


def without_pending(field_stamps: Mapping[str, Any] | None) -> dict[str, Any]:
    """``field_stamps`` without the pending mark."""
    return {k: v for k, v in (field_stamps or {}).items() if k != PENDING_KEY}


def lookup_since(marks: Iterable[datetime]) -> datetime | None:
    """Lower bound of the lookup's ``CreatedDate``: the oldest mark minus :data:`LOOKUP_MARGIN`,
    cut to whole seconds (SOQL datetime literals carry none)."""
    oldest = min(marks, default=None)
    if oldest is None:
        return None
    return (oldest - LOOKUP_MARGIN).astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class PendingNote:
    """A row marked pending and still without a Salesforce id."""

    key: int
    parent_id: str
    title: str | None
    body: str | None
    since: datetime


@dataclass(frozen=True)
class CrmNote:
    """A Salesforce note the lookup found."""

    crm_id: str
    parent_id: str
    title: str | None
    body: str | None
    created_at: datetime


def _same_text(a: str | None, b: str | None) -> bool:
    def norm(value: str | None) -> str:
        return (value or "").replace("\r\n", "\n").replace("\r", "\n").strip()

    return norm(a) == norm(b)


def match_pending(
    pending: Sequence[PendingNote],
    found: Sequence[CrmNote],
    taken: Iterable[str] = (),
) -> dict[int, str]:
    """Row key -> Salesforce id of the note its lost create made.

    A found note matches a pending row when it has the row's parent, was created no earlier than
    the row's mark minus :data:`LOOKUP_MARGIN`, and has the row's ``Title`` and ``Body``
    (line ends and surrounding blanks aside). Each note is given to one row at most, oldest note
    to oldest mark, and none in ``taken`` (ids other rows already hold). Rows without a match
    are absent: their create is still to be made.
    """
    used = set(taken)
    matches: dict[int, str] = {}
    notes = sorted(found, key=lambda n: (n.created_at, n.crm_id))
    for row in sorted(pending, key=lambda p: (p.since, p.key)):
        for note in notes:
            if note.crm_id in used or note.parent_id != row.parent_id:
                continue
            if note.created_at < row.since - LOOKUP_MARGIN:
                continue
            if _same_text(note.title, row.title) and _same_text(note.body, row.body):
                matches[row.key] = note.crm_id
                used.add(note.crm_id)
                break
    return matches
