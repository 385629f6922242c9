"""Closed-won handling: what one inbox event about a deal / opportunity does.

The event is only a hint: the handler reads the record's **current** state from the CRM (never
the event's copy; deliveries come late, twice and out of order) and stores it through the pull's
own mapping and upsert (so the CS rows are exactly what the next pull would make):

1. not a deal / opportunity event (companies, contacts, other properties): ``ignored``;
2. the record is gone from the CRM (deleted before processing): its row is soft-deleted,
   ``ignored``;
3. the record is not won (any more: won -> lost): its row is updated, ``ignored``; a later
   won event (lost -> won again) is handled then;
4. won: the account and the handover notes are read too and stored, then the onboarding is
   started exactly once per opportunity (:mod:`app.wiring.onboarding_start`): the plan's unique
   ``opportunity_id`` and the event's ``done`` commit in one transaction.

:meth:`ClosedWonHandler.handle_batch` does the same for many events at once (the worker's
path): the deals of all of them in one CRM batch read, their accounts in one, their handover
notes in one or two (HubSpot: the associations, then the notes), each stored once; then the won
events are started together in one transaction
(:func:`app.wiring.onboarding_start.start_onboarding_batch`), and the ignored ones are closed
together in another. A CRM read that fails fails the events that needed it (retried); one
event's failure to start fails only that event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.types import CrmName
from app.crm.base import CrmClient, RecordPage, WireRecord
from app.crm.factory import build_client
from app.db.enums import InboxStatus
from app.db.inbox_store import finish_many
from app.db.models import Opportunity
from app.db.sync_store import SqlSyncStore
from app.errors import ConfigError
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.mappers.spec import MappingSet, ObjectMapping
from app.sync.ports import Counts
from app.sync.pull import PullEngine
from app.wiring.webhook_processing import EventView, HandlerResult, ProcessingContext

__all__ = ["ClosedWonHandler", "deal_event"]

log = get_logger("crmsync.webhooks")

#: HubSpot subscription types that can mean "this deal's stage changed".
_HUBSPOT_DEAL_EVENTS = frozenset({"deal.propertyChange", "deal.creation", "deal.restore"})
_HUBSPOT_STAGE_PROPERTIES = frozenset({"dealstage", "hs_is_closed_won", "hs_is_closed"})


def deal_event(event: EventView, opportunity_object: str) -> bool:
    """Whether ``event`` may announce a deal / opportunity stage change (pure)."""
    if event.source == "salesforce":
        return (event.event_type or "").lower() == opportunity_object.lower()
    kind = event.event_type or ""
    payload: dict[str, Any] = json.loads(event.raw_body) if event.raw_body else {}
    if kind.startswith("object.") and str(payload.get("objectTypeId")) == "0-3":
        kind = "deal." + kind.partition(".")[2]
    if kind not in _HUBSPOT_DEAL_EVENTS:
        return False
    if kind == "deal.propertyChange":
        return payload.get("propertyName") in _HUBSPOT_STAGE_PROPERTIES
    return True


def finish_event(
    context: ProcessingContext, event_id: int, status: InboxStatus, note: str | None
) -> HandlerResult:
    """Close an event that did no other database work."""
    return finish_events(context, [(event_id, status, note)])[event_id]


def finish_events(
    context: ProcessingContext, outcomes: Sequence[tuple[int, InboxStatus, str | None]]
) -> dict[int, HandlerResult]:
    """Close events that did no other database work, in one transaction."""
    if outcomes:
        with context.session_factory() as session:
            finish_many(session, outcomes, context.clock())
            session.commit()
    return {event_id: HandlerResult(status, note) for event_id, status, note in outcomes}


class CrmState:
    """What the CRM says now about one deal / opportunity and, when won, its account and
    handover notes (wire records)."""

    def __init__(self, crm: CrmName, mappings: MappingSet) -> None:
        self.crm = crm
        self.mappings = mappings
        self.pages: list[tuple[ObjectMapping, RecordPage]] = []


class ClosedWonHandler:
    """The :class:`~app.wiring.webhook_processing.EventHandler` for deal / opportunity events
    (and its batch form, :meth:`handle_batch`)."""

    def __call__(self, event: EventView, context: ProcessingContext) -> HandlerResult:
        outcome = self.handle_batch([event], context)[event.id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def handle_batch(
        self, events: Sequence[EventView], context: ProcessingContext
    ) -> dict[int, HandlerResult | Exception]:
        """Every event's result (or the exception that fails it); see the module docstring."""
        out: dict[int, HandlerResult | Exception] = {}
        by_crm: dict[CrmName, list[EventView]] = {}
        for event in events:
            crm: CrmName = "salesforce" if event.source == "salesforce" else "hubspot"
            by_crm.setdefault(crm, []).append(event)
        for crm, group in by_crm.items():
            try:
                self._crm_batch(context, crm, group, out)
            except Exception as exc:
                for event in group:
                    out.setdefault(event.id, exc)
        return out

    def _mappings(self, context: ProcessingContext, crm: CrmName) -> MappingSet:
        """The CRM's mapping set, loaded once per context (the settings do not change)."""
        cache: dict[str, MappingSet] | None = getattr(context.local, "mappings", None)
        if cache is None:
            cache = {}
            context.local.mappings = cache
        if crm not in cache:
            settings = context.settings
            cache[crm] = load_mapping_set(
                crm, settings.mapping_file, default_currency=settings.default_currency
            )
        return cache[crm]

    def _crm_batch(
        self,
        context: ProcessingContext,
        crm: CrmName,
        events: Sequence[EventView],
        out: dict[int, HandlerResult | Exception],
    ) -> None:
        mappings = self._mappings(context, crm)
        opp_mapping = mappings.for_table("opportunities")
        deals: list[EventView] = []
        other: list[tuple[int, InboxStatus, str | None]] = []
        for event in events:
            if not deal_event(event, opp_mapping.crm_object) or not event.object_id:
                other.append((event.id, InboxStatus.IGNORED, "not a deal stage event"))
            else:
                deals.append(event)
        out.update(finish_events(context, other))
        if not deals:
            return
        if crm not in context.settings.enabled_crms:
            raise ConfigError(f"{crm} is not configured: cannot read the record the event names")
        client = self._client(context, crm)
        record_ids = list(dict.fromkeys(str(e.object_id) for e in deals))
        page = _read(client, opp_mapping, record_ids)
        store = _Store(context, client, mappings)
        store.write(opp_mapping, page)
        id_field = opp_mapping.id_field
        wires = {str(r.get(id_field)): r for r in page.records}
        deleted = set(page.deleted_ids)
        with context.session_factory() as session:
            stored = _opportunities(session, opp_mapping, record_ids)
        won: list[EventView] = []
        ignored: list[tuple[int, InboxStatus, str | None]] = []
        for event in deals:
            record_id = str(event.object_id)
            if record_id not in wires or record_id in deleted:
                ignored.append(
                    (event.id, InboxStatus.IGNORED, "deleted in the CRM before processing")
                )
                continue
            is_won, stage = stored.get(record_id, (False, None))
            if not is_won:
                ignored.append(
                    (event.id, InboxStatus.IGNORED, f"not won in the CRM now (stage {stage})")
                )
                continue
            won.append(event)
        out.update(finish_events(context, ignored))
        if won:
            won_wires = [wires[i] for i in dict.fromkeys(str(e.object_id) for e in won)]
            self._read_related(client, store, mappings, opp_mapping, won_wires)
        store.link()  # the opportunities to their accounts, the notes to both
        if not won:
            return
        from app.wiring.onboarding_start import start_onboarding_batch

        items = [(event, str(event.object_id)) for event in won]
        out.update(start_onboarding_batch(context, items, crm, mappings))

    def _client(self, context: ProcessingContext, crm: CrmName) -> CrmClient:
        clients: dict[str, CrmClient] | None = getattr(context.local, "clients", None)
        if clients is None:
            clients = {}
            context.local.clients = clients
        if crm not in clients:
            client = build_client(crm, context.settings, token_cache=context.token_cache)
            clients[crm] = client
            context.on_close(client.close)
        return clients[crm]

    def _read_related(
        self,
        client: CrmClient,
        store: _Store,
        mappings: MappingSet,
        opp_mapping: ObjectMapping,
        wires: Sequence[WireRecord],
    ) -> None:
        """The accounts and the handover notes of won deals, read (one batch per object) and
        stored, parents first."""
        account_mapping = mappings.for_table("accounts")
        note_mapping = mappings.for_table("handover_notes")
        ref = opp_mapping.parents[0].crm_field if opp_mapping.parents else None
        account_ids = list(
            dict.fromkeys(a for a in (_first(w.get(ref)) if ref else None for w in wires) if a)
        )
        if account_ids:
            store.write(account_mapping, _read(client, account_mapping, account_ids))
        deal_ids = [str(w[opp_mapping.id_field]) for w in wires]
        notes: RecordPage | None = None
        read = getattr(client, "read_records", None)
        if client.name == "salesforce" and read is not None:
            fields = note_mapping.read_fields()
            notes = read(note_mapping.crm_object, fields, deal_ids + account_ids, by="ParentId")
        elif client.name == "hubspot":
            associations = getattr(client, "read_associations", None)
            if associations is not None and read is not None:
                found = associations(opp_mapping.crm_object, note_mapping.crm_object, deal_ids)
                ids = list(dict.fromkeys(n for d in deal_ids for n in found.get(d, [])))
                if ids:
                    notes = read(note_mapping.crm_object, note_mapping.read_fields(), ids)
        if notes is not None:
            # Notes not returned are not "deleted" here: only live ones were asked for.
            store.write(note_mapping, RecordPage(records=notes.records))


def _first(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        return str(value[0]) if value else None
    return str(value) if value not in (None, "") else None


def _read(client: CrmClient, mapping: ObjectMapping, ids: Sequence[str]) -> RecordPage:
    read = getattr(client, "read_records", None)
    if read is None:  # pragma: no cover - both adapters have it
        raise ConfigError(f"the {client.name} client cannot read single records")
    page: RecordPage = read(mapping.crm_object, mapping.read_fields(), list(ids))
    return page


def _opportunities(
    session: Session, mapping: ObjectMapping, crm_ids: Sequence[str]
) -> dict[str, tuple[bool, str | None]]:
    """``crm id -> (is_won, stage)`` of the stored opportunities among ``crm_ids``."""
    column = getattr(Opportunity, mapping.id_column)
    rows = session.execute(
        select(column, Opportunity.is_won, Opportunity.stage).where(column.in_(list(crm_ids)))
    ).all()
    return {str(crm_id): (bool(won), stage) for crm_id, won, stage in rows}


class _Store:
    """Stores wire records the way a pull does (mapping, merge, upsert, parents, deletes)."""

    def __init__(self, context: ProcessingContext, client: CrmClient, mappings: MappingSet) -> None:
        self.context = context
        by_object: Mapping[str, ObjectMapping] = {m.crm_object: m for m in mappings}
        self.store = SqlSyncStore(context.session_factory)
        self.engine = PullEngine(self.store, client, by_object, context.settings.sync)
        self._written: set[str] = set()

    def link(self) -> None:
        """Link the children whose parent arrived after them (the pull's links touching a table
        written), once for all the pages of the batch and in one transaction."""
        tables = self._written
        self._written = set()
        links = [link for link in self.engine._links if link[0] in tables or link[3] in tables]
        if links:
            self.store.link_orphans_many(links)

    def write(self, mapping: ObjectMapping, page: RecordPage) -> None:
        """Store a page as a pull would; :meth:`link` then links what it left orphaned."""
        engine = self.engine
        mapped, failures, _skipped = engine._map_page(mapping, page.records)
        gone = set(page.deleted_ids) | {m.crm_id for m in mapped if m.deleted}
        live = [m for m in mapped if m.crm_id not in gone]
        now = self.context.clock()
        with engine.store.page() as writer:
            engine._write_records(writer, mapping, live, failures, Counts(), now)
            if gone:
                writer.soft_delete(mapping.cs_table, mapping.id_column, sorted(gone), now)
        self._written.add(mapping.cs_table)
        for failure in failures:
            log.warning(
                "webhooks.record.invalid",
                crm=mapping.crm,
                object=mapping.crm_object,
                record_id=failure.record_id,
                error=failure.message,
            )
