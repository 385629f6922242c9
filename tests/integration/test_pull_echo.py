"""No echoes, and conflicts by policy, end to end (issue #17 items 2 and 4; ADR 0006 section 1).

Sandbox over HTTPS -> real adapters -> pull engine -> the test database (SQLite or PostgreSQL),
for both CRMs. A push is simulated the way a confirmed one ends: the value is written to the CRM
with the real client library (simple-salesforce, hubspot-api-client) and the ledger row is
written as the push engine writes it (``value_hash`` = ``crm_hash`` = ``field_hash`` of the
value sent). Then:

* the next pull counts the record unchanged: no data column, no ``updated_at``, no
  ``field_stamps`` or ``cs_changed_at`` change (only the CRM's new modification stamp is kept);
* a CRM edit of the field after that is taken;
* one field edited on both sides between passes is settled by the field's policy
  (``prefer_crm``, ``prefer_cs``, ``newest_wins`` both ways round).

The handover note's body (an outbound composite of its structured columns) is checked the same
way: the rendered body read back is an echo, and a CRM edit of the body brings its columns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.objects import SimplePublicObjectInput
from simple_salesforce.api import Salesforce
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.core.types import CrmName
from app.crm.base import CrmClient
from app.crm.hubspot.client import HubSpotClient
from app.crm.salesforce.client import SalesforceClient
from app.db.cs_writes import stamp_cs_change
from app.db.engine import make_session_factory
from app.db.models import Account, HandoverNote, PushLedgerEntry
from app.db.sync_store import SqlSyncStore
from app.mappers.defaults import default_mappings
from app.mappers.ledger import field_hash, outbound_value
from app.mappers.record import map_to_crm
from app.mappers.spec import ConflictPolicy, Direction, FieldMapping, ObjectMapping
from app.settings import Settings, SyncSettings
from app.sync.pull import PullEngine, PullResult
from crmsync_sandbox import Sandbox, SandboxConfig

CRMS: tuple[CrmName, ...] = ("salesforce", "hubspot")
ACCOUNTS = {"salesforce": "Account", "hubspot": "companies"}
NOTES = {"salesforce": "Note", "hubspot": "notes"}
PLAN = {"salesforce": "Plan__c", "hubspot": "plan"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=6, hs_rate_limits=False)) as sb:
        yield sb


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def settings_for(sb: Sandbox) -> Settings:
    sf, hs = sb.info.salesforce, sb.info.hubspot
    return Settings(
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_client_id=sf.client_id,
        salesforce_client_secret=sf.client_secret,
        hubspot_base_url=hs.base_url,
        hubspot_access_token=hs.access_token,
        ca_bundle=sb.info.ca_file,
        sync=SyncSettings(lookback_seconds=0, max_retries=12),
    )


def with_plan_both(mapping: ObjectMapping, policy: ConflictPolicy) -> ObjectMapping:
    """The account mapping with its plan field synced both ways under ``policy``."""
    fields = tuple(
        replace(f, direction=Direction.BOTH, conflict_policy=policy) if f.column == "plan" else f
        for f in mapping.fields
    )
    return replace(mapping, fields=fields)


class Harness:
    """One CRM of the sandbox: the pull engine, a real client library to write with, the DB."""

    def __init__(
        self,
        sb: Sandbox,
        factory: sessionmaker[Session],
        crm: CrmName,
        policy: ConflictPolicy = ConflictPolicy.NEWEST_WINS,
    ) -> None:
        self.crm = crm
        self.factory = factory
        settings = settings_for(sb)
        self.client: CrmClient
        if crm == "salesforce":
            self.client = SalesforceClient(settings, sleep=lambda _s: None)
            session = sb.session()
            self.sf = Salesforce(
                instance_url=sb.info.salesforce.instance_url,
                session_id=sb.info.salesforce.access_token,
                session=session,
                version=sb.info.salesforce.api_version,
            )
        else:
            self.client = HubSpotClient(
                settings, sleep=lambda _s: None, index_lag_margin=timedelta(0)
            )
            self.hs = HubSpot(
                access_token=sb.info.hubspot.access_token,
                host=sb.info.hubspot.base_url,
                ssl_ca_cert=str(sb.info.ca_file),
            )
        mappings = {m.crm_object: m for m in default_mappings(crm)}
        account = ACCOUNTS[crm]
        mappings[account] = with_plan_both(mappings[account], policy)
        self.mappings = mappings
        self.engine = PullEngine(SqlSyncStore(factory), self.client, mappings, settings.sync)

    def pull(self, object_name: str) -> PullResult:
        result = self.engine.pull(object_name)
        assert result.status is RunStatus.SUCCEEDED, result.error
        return result

    def crm_write(self, object_name: str, record_id: str, values: dict[str, Any]) -> None:
        """Write ``values`` (wire values) with the CRM's own client library."""
        time.sleep(0.01)  # a modification stamp after the last one read
        if self.crm == "salesforce":
            getattr(self.sf, object_name).update(record_id, values)
        else:
            api = getattr(self.hs.crm, object_name) if object_name != "notes" else None
            if api is None:
                api = self.hs.crm.objects.notes
            api.basic_api.update(
                record_id, simple_public_object_input=SimplePublicObjectInput(properties=values)
            )

    def confirmed_push(
        self, model: type[Any], row_id: int, object_name: str, fm: FieldMapping
    ) -> dict[str, Any]:
        """Push ``fm`` of a CS row as a confirmed push leaves it: the CRM holds the value sent,
        and the ledger row says both sides agree on it. Returns the wire values sent."""
        mapping = self.mappings[object_name]
        with self.factory() as s:
            row = s.get(model, row_id)
            assert row is not None
            data = {c.key: getattr(row, c.key) for c in model.__table__.columns}
        wire = map_to_crm(mapping, data, only={fm.crm_field})
        crm_id = data[mapping.id_column]
        self.crm_write(object_name, crm_id, wire)
        agreed = field_hash(fm, outbound_value(fm, data, self.crm), self.crm)
        with self.factory() as s, s.begin():
            entry = s.scalars(
                select(PushLedgerEntry).where(
                    PushLedgerEntry.crm == self.crm,
                    PushLedgerEntry.object == object_name,
                    PushLedgerEntry.record_id == crm_id,
                    PushLedgerEntry.field == fm.crm_field,
                )
            ).one_or_none()
            if entry is None:
                entry = PushLedgerEntry(
                    crm=self.crm, object=object_name, record_id=crm_id, field=fm.crm_field
                )
                s.add(entry)
            entry.value_hash = entry.crm_hash = agreed
            entry.value = wire[fm.crm_field]
        return wire

    def close(self) -> None:
        self.client.close()  # type: ignore[attr-defined]


def snapshot(factory: sessionmaker[Session], model: type[Any], row_id: int) -> dict[str, Any]:
    with factory() as s:
        row = s.get(model, row_id)
        assert row is not None
        return {c.key: getattr(row, c.key) for c in model.__table__.columns}


def cs_edit(
    factory: sessionmaker[Session], model: type[Any], row_id: int, at: datetime, **values: Any
) -> None:
    """A CS-side write, stamped as every CS-side write is (app.db.cs_writes)."""
    with factory() as s, s.begin():
        row = s.get(model, row_id)
        assert row is not None
        for column, value in values.items():
            setattr(row, column, value)
        stamp_cs_change(row, values, at)


def first_account(factory: sessionmaker[Session], crm: CrmName) -> int:
    with factory() as s:
        id_column = Account.sf_id if crm == "salesforce" else Account.hs_id
        found = s.scalars(select(Account.id).where(id_column.is_not(None)).order_by(Account.id))
        return int(found.first() or 0)


def plan_field(h: Harness) -> FieldMapping:
    return next(f for f in h.mappings[ACCOUNTS[h.crm]].fields if f.column == "plan")


@pytest.mark.parametrize("crm", CRMS)
@pytest.mark.parametrize("edited_again", [False, True], ids=["echo", "echo-after-a-new-cs-edit"])
def test_a_pushed_value_read_back_is_unchanged_and_a_later_crm_edit_is_taken(
    sandbox: Sandbox, factory: sessionmaker[Session], crm: CrmName, edited_again: bool
) -> None:
    """``edited_again``: the CS side changed the field once more after the push, before the
    pull: the echo (the CRM value equals the ledger's) must not revert that new edit either,
    even under ``prefer_crm`` (the CRM did not change the field: there is no conflict)."""
    policy = ConflictPolicy.PREFER_CRM if edited_again else ConflictPolicy.NEWEST_WINS
    h = Harness(sandbox, factory, crm, policy)
    obj = ACCOUNTS[crm]
    try:
        assert h.pull(obj).counts.created == 6
        row_id = first_account(factory, crm)
        cs_edit(factory, Account, row_id, datetime.now(UTC), plan="Pushed Plan 0.50")
        h.confirmed_push(Account, row_id, obj, plan_field(h))
        if edited_again:
            cs_edit(factory, Account, row_id, datetime.now(UTC), plan="Edited Again")
        before = snapshot(factory, Account, row_id)

        echo = h.pull(obj)
        assert echo.counts.read >= 1
        assert (echo.counts.updated, echo.counts.created, echo.counts.failed) == (0, 0, 0)
        assert echo.counts.unchanged == echo.counts.read
        after = snapshot(factory, Account, row_id)
        moved = before[h.mappings[obj].modified_column] != after[h.mappings[obj].modified_column]
        assert moved, "the push gave the record a new modification stamp"
        for column in ("updated_at", "field_stamps", "cs_changed_at", "plan", "name"):
            assert after[column] == before[column], column
        if edited_again:
            return  # a CRM edit from here on is a conflict: see the policy tests below

        id_value = after[h.mappings[obj].id_column]
        h.crm_write(obj, id_value, {PLAN[crm]: "Edited In The CRM"})
        taken = h.pull(obj)
        assert taken.counts.updated == 1
        final = snapshot(factory, Account, row_id)
        assert final["plan"] == "Edited In The CRM"
        assert final["field_stamps"] == before["field_stamps"]  # a pull never stamps
        assert final["updated_at"] > before["updated_at"]
    finally:
        h.close()


# (policy, CS edit older or newer than the CRM's) -> who wins
CONFLICTS = [
    (ConflictPolicy.PREFER_CRM, "older", "crm"),
    (ConflictPolicy.PREFER_CRM, "newer", "crm"),
    (ConflictPolicy.PREFER_CS, "older", "cs"),
    (ConflictPolicy.PREFER_CS, "newer", "cs"),
    (ConflictPolicy.NEWEST_WINS, "older", "crm"),
    (ConflictPolicy.NEWEST_WINS, "newer", "cs"),
]


@pytest.mark.parametrize("crm", CRMS)
@pytest.mark.parametrize(("policy", "cs_edit_is", "winner"), CONFLICTS)
def test_a_field_edited_on_both_sides_between_passes_follows_the_policy(
    sandbox: Sandbox,
    factory: sessionmaker[Session],
    crm: CrmName,
    policy: ConflictPolicy,
    cs_edit_is: str,
    winner: str,
) -> None:
    h = Harness(sandbox, factory, crm, policy)
    obj = ACCOUNTS[crm]
    try:
        h.pull(obj)
        row_id = first_account(factory, crm)
        # An earlier push both sides agreed on: the merge base.
        cs_edit(factory, Account, row_id, datetime.now(UTC), plan="Agreed")
        h.confirmed_push(Account, row_id, obj, plan_field(h))
        h.pull(obj)
        # Between passes: the CS side and the CRM both change the plan.
        shift = timedelta(minutes=10) if cs_edit_is == "newer" else -timedelta(minutes=10)
        cs_edit(factory, Account, row_id, datetime.now(UTC) + shift, plan="CS Plan")
        crm_id = snapshot(factory, Account, row_id)[h.mappings[obj].id_column]
        h.crm_write(obj, crm_id, {PLAN[crm]: "CRM Plan"})
        before = snapshot(factory, Account, row_id)

        result = h.pull(obj)
        after = snapshot(factory, Account, row_id)
        assert after["field_stamps"] == before["field_stamps"]
        assert after["cs_changed_at"] == before["cs_changed_at"]
        with factory() as s:
            entry = s.scalars(
                select(PushLedgerEntry).where(
                    PushLedgerEntry.crm == crm,
                    PushLedgerEntry.record_id == crm_id,
                    PushLedgerEntry.field == PLAN[crm],
                )
            ).one()
        fm = plan_field(h)
        assert entry.crm_hash == field_hash(fm, "CRM Plan", crm)  # as last pulled, always
        if winner == "crm":
            assert after["plan"] == "CRM Plan"
            assert result.counts.updated == 1
            assert entry.value_hash == field_hash(fm, "CRM Plan", crm)
        else:
            assert after["plan"] == "CS Plan"  # kept, still to push
            assert (result.counts.updated, result.counts.unchanged) == (0, result.counts.read)
            assert after["updated_at"] == before["updated_at"]
            assert entry.value_hash == field_hash(fm, "Agreed", crm)  # the base stays
    finally:
        h.close()


@pytest.mark.parametrize("crm", CRMS)
def test_the_handover_body_composite_is_an_echo_and_a_crm_body_edit_brings_its_columns(
    sandbox: Sandbox, factory: sessionmaker[Session], crm: CrmName
) -> None:
    h = Harness(sandbox, factory, crm)
    notes = NOTES[crm]
    try:
        for obj in (ACCOUNTS[crm], "Opportunity" if crm == "salesforce" else "deals", notes):
            h.pull(obj)
        with factory() as s:
            id_column = HandoverNote.sf_id if crm == "salesforce" else HandoverNote.hs_id
            note_id = s.scalars(
                select(HandoverNote.id).where(id_column.is_not(None)).order_by(HandoverNote.id)
            ).first()
        assert note_id is not None
        # The CS side edits a structured column: the body pushed is the columns rendered.
        cs_edit(factory, HandoverNote, note_id, datetime.now(UTC), fit="stretch", goals=["SSO"])
        body = next(f for f in h.mappings[notes].fields if f.column == "body")
        wire = h.confirmed_push(HandoverNote, note_id, notes, body)
        assert "Fit: stretch" in wire[body.crm_field]
        before = snapshot(factory, HandoverNote, note_id)

        echo = h.pull(notes)
        assert (echo.counts.updated, echo.counts.created) == (0, 0)
        after = snapshot(factory, HandoverNote, note_id)
        for column in ("updated_at", "field_stamps", "body", "fit", "goals"):
            assert after[column] == before[column], column

        # The CRM edits the body: taken, with the columns parsed from it.
        edited = wire[body.crm_field].replace("stretch", "good")
        h.crm_write(notes, after[h.mappings[notes].id_column], {body.crm_field: edited})
        taken = h.pull(notes)
        assert taken.counts.updated == 1
        final = snapshot(factory, HandoverNote, note_id)
        assert (final["body"], final["fit"], final["goals"]) == (edited, "good", ["SSO"])
    finally:
        h.close()
