"""Push one CS-side note right after it is stored (``POST .../notes``, ``PATCH /notes/{id}``).

The note is committed before this runs: whatever happens here, it is in the CS database, stamped,
and the next ``crmsync push`` sends it. This only asks the push engine
(``app.wiring.push.run_push``) to push that one row now, per CRM the note belongs to, and
reports per CRM whether it reached the CRM (``pushed``, with its CRM id) or stays queued (with the
reason: the CRM is not configured, the parent has no id in it yet, the push failed, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from simple_salesforce.api import Salesforce
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.core.types import CrmName
from app.crm.salesforce.client import SalesforceClient
from app.crm.writes import CrmWriter
from app.db.models import Account, HandoverNote, Opportunity
from app.db.note_store import SqlPendingNotes
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.mappers.convert import datetime_to_cs
from app.mappers.notes import CrmNote
from app.settings import Settings
from app.sync.note_creates import NoteCreateGuard

if TYPE_CHECKING:
    from app.wiring.push import PushOutcome

log = get_logger("crmsync.notes")

PushState = Literal["pushed", "queued"]


@dataclass(frozen=True)
class NotePush:
    """Where one note stands in one CRM."""

    crm: CrmName
    status: PushState
    crm_id: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "crm": self.crm,
            "status": self.status,
            "crm_id": self.crm_id,
            "message": self.message,
        }


def note_crms(note: HandoverNote) -> list[CrmName]:
    """The CRMs a note belongs in: those where it, or its account or opportunity, has an id."""
    crms: list[CrmName] = []
    account, opportunity = _parents(note)
    if note.sf_id or note.sf_parent_id or _has(account, "sf_id") or _has(opportunity, "sf_id"):
        crms.append("salesforce")
    if (
        note.hs_id
        or note.hs_company_id
        or note.hs_deal_id
        or _has(account, "hs_id")
        or _has(opportunity, "hs_id")
    ):
        crms.append("hubspot")
    return crms


def _parents(note: HandoverNote) -> tuple[Account | None, Opportunity | None]:
    session = Session.object_session(note)
    if session is None:
        return None, None
    account = session.get(Account, note.account_id) if note.account_id else None
    opportunity = session.get(Opportunity, note.opportunity_id) if note.opportunity_id else None
    return account, opportunity


def _has(row: Any, column: str) -> bool:
    return row is not None and bool(getattr(row, column, None))


def note_object(settings: Settings, crm: CrmName) -> str:
    """The CRM object the notes table maps to (``Note`` / ``notes`` by default)."""
    mappings = load_mapping_set(
        crm, settings.mapping_file, default_currency=settings.default_currency
    )
    return mappings.for_table("handover_notes").crm_object


def push_note(settings: Settings, factory: sessionmaker[Session], note_id: int) -> list[NotePush]:
    """Push the note ``note_id`` to each CRM it belongs in; never raises for a push failure."""
    with factory() as session:
        note = session.get(HandoverNote, note_id)
        if note is None:
            return []
        crms = note_crms(note)
    enabled = set(settings.enabled_crms)
    outcomes: list[NotePush] = []
    for crm in crms:
        if crm not in enabled:
            outcomes.append(NotePush(crm, "queued", message=f"{crm} is not configured"))
            continue
        outcomes.append(_push_one(settings, factory, crm, note_id))
    return outcomes


def _push_one(
    settings: Settings, factory: sessionmaker[Session], crm: CrmName, note_id: int
) -> NotePush:
    # Imported here: the push's wiring imports this module (for the note create guard).
    from app.wiring.push import run_push

    error: str | None = None
    try:
        object_name = note_object(settings, crm)
        outcome = run_push(
            settings,
            crm,
            [object_name],
            only_row_ids={object_name: [note_id]},
            triggered_by="api",
            session_factory=factory,
        )
        error = _first_error(outcome)
    except Exception as exc:  # the note is stored: report, never fail the request
        log.warning("note push failed", extra={"crm": crm, "note_id": note_id, "error": str(exc)})
        error = str(exc) or type(exc).__name__
    with factory() as session:
        note = session.get(HandoverNote, note_id)
        crm_id = None if note is None else (note.sf_id if crm == "salesforce" else note.hs_id)
    if crm_id is not None and error is None:
        return NotePush(crm, "pushed", crm_id=crm_id)
    message = error or "not written yet: the next push sends it"
    return NotePush(crm, "queued", crm_id=crm_id, message=message)


def _first_error(outcome: PushOutcome) -> str | None:
    """The first failed run's error of a push, or a note the CRM refused."""
    for result in outcome.results:
        if result.status not in (RunStatus.SUCCEEDED, RunStatus.PARTIAL):
            return result.error or f"push {result.status}"
        if result.counts.failed:
            return "the CRM refused the note (see sync_errors)"
    return None


# --------------------------------------------------------------------------------------------
# Salesforce pending creates: the wiring of app.sync.note_creates
# --------------------------------------------------------------------------------------------

#: Parents per lookup query (18-character ids: the query stays far below the URI limit).
LOOKUP_PARENTS_PER_QUERY = 200


def _query_all(sf: Salesforce, *, soql: str) -> Mapping[str, Any]:
    result: Mapping[str, Any] = sf.query_all(soql)
    return result


class SalesforceNoteLookup:
    """:class:`app.sync.note_creates.NoteLookup` over a Salesforce client (the push's writer,
    so the lookup's calls are counted with the push's)."""

    def __init__(self, client: SalesforceClient | Callable[[], SalesforceClient]) -> None:
        # A callable makes the client on the first lookup (most pushes never need one).
        self._client = client if isinstance(client, SalesforceClient) else None
        self._make = None if isinstance(client, SalesforceClient) else client

    @property
    def client(self) -> SalesforceClient:
        if self._client is None:
            assert self._make is not None
            self._client = self._make()
        return self._client

    def notes_since(self, parent_ids: Collection[str], since: datetime) -> list[CrmNote]:
        parents = sorted(set(parent_ids))
        found: list[CrmNote] = []
        literal = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for start in range(0, len(parents), LOOKUP_PARENTS_PER_QUERY):
            chunk = parents[start : start + LOOKUP_PARENTS_PER_QUERY]
            ids = ", ".join("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'" for p in chunk)
            soql = (
                "SELECT Id, ParentId, Title, Body, CreatedDate FROM Note "
                f"WHERE ParentId IN ({ids}) AND CreatedDate >= {literal} ORDER BY CreatedDate, Id"
            )
            result = self.client._call("query", partial(_query_all, soql=soql), "Note")
            for record in result.get("records") or ():
                created = datetime_to_cs(record.get("CreatedDate"))
                if created is None:
                    continue
                found.append(
                    CrmNote(
                        str(record["Id"]),
                        str(record.get("ParentId") or ""),
                        record.get("Title"),
                        record.get("Body"),
                        created,
                    )
                )
        return found


def guard_note_creates(
    writer: CrmWriter, settings: Settings, factory: sessionmaker[Session]
) -> CrmWriter:
    """``writer`` with recoverable Salesforce note creates (:class:`NoteCreateGuard`); a HubSpot
    writer is returned as it is (its notes are upserted on ``crmsync_id``)."""
    if writer.name != "salesforce":
        return writer
    lookup = SalesforceNoteLookup(
        writer if isinstance(writer, SalesforceClient) else partial(SalesforceClient, settings)
    )
    return NoteCreateGuard(
        writer,
        SqlPendingNotes(factory),
        lookup,
        object_name=note_object(settings, "salesforce"),
    )
