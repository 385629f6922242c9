"""Salesforce note creates never happen twice (ADR 0006 section 3), against the sandbox.

The create of a Salesforce ``Note`` is a plain insert (no custom field to upsert on). A push
killed between the create call and the commit of its answer leaves the note in Salesforce and the
row without ``sf_id``; the next push must find that note, not create a second one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.crm.salesforce.client import SalesforceClient
from app.crm.writes import WriteKind, WriteOp, WriteOutcome, WriteResult
from app.db.engine import make_session_factory
from app.db.models import Account, HandoverNote
from app.db.note_store import SqlPendingNotes
from app.mappers.notes import PENDING_KEY, compose_note, pending_since
from app.settings import Settings
from app.sync.note_creates import NoteCreateGuard
from app.wiring.notes import SalesforceNoteLookup, guard_note_creates
from crmsync_sandbox import Sandbox, SandboxConfig


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=3, seed=7)) as sb:
        yield sb


def sf_settings(sb: Sandbox) -> Settings:
    sf = sb.info.salesforce
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_client_id=sf.client_id,
        salesforce_client_secret=sf.client_secret,
        ca_bundle=sb.info.ca_file,
    )


class NoteInserts:
    """The create the Salesforce writer makes for a Note (``POST /composite/sobjects``), through
    the real client; ``die_after_call`` raises once the call returned, before its answer is used:
    what a kill -9 there leaves behind."""

    name = "salesforce"

    def __init__(self, client: SalesforceClient, *, die_after_call: bool = False) -> None:
        self.client = client
        self.die_after_call = die_after_call
        self.calls = 0

    @property
    def api_calls(self) -> int:
        return self.client.api_calls

    def write(self, object_name: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        self.calls += 1
        body = {
            "allOrNone": False,
            "records": [{"attributes": {"type": object_name}, **op.fields} for op in ops],
        }
        answer: list[dict[str, Any]] = self.client._call(
            "create",
            lambda sf: sf.restful("composite/sobjects", method="POST", json=body),
            object_name,
        )
        if self.die_after_call:
            raise SystemExit("killed between the create call and the commit of its answer")
        return [
            WriteResult(op.key, WriteOutcome.CREATED, crm_id=str(a["id"]))
            for op, a in zip(ops, answer, strict=True)
        ]


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def sandbox_account_ids(client: SalesforceClient) -> list[str]:
    result = client._call("query", lambda sf: sf.query("SELECT Id FROM Account ORDER BY Id"), None)
    return [str(r["Id"]) for r in result["records"]]


def notes_in_salesforce(client: SalesforceClient, parent: str) -> list[dict[str, Any]]:
    soql = f"SELECT Id, Title, Body FROM Note WHERE ParentId = '{parent}'"
    result = client._call("query", lambda sf: sf.query_all(soql), "Note")
    return list(result["records"])


def store_note(factory: sessionmaker[Session], parent: str, title: str, text: str) -> WriteOp:
    composed = compose_note(title, text)
    with factory() as s:
        account = s.scalars(select(Account).where(Account.sf_id == parent)).first()
        if account is None:
            account = Account(name="Acme", sf_id=parent)
            s.add(account)
            s.flush()
        note = HandoverNote(
            account_id=account.id,
            sf_parent_id=parent,
            title=title,
            body=composed.body,
            crmsync_id=str(uuid.uuid4()),
            origin="cs",
        )
        s.add(note)
        s.commit()
        return WriteOp(
            note.id,
            WriteKind.UPSERT,
            {"Title": title, "Body": composed.body, "ParentId": parent},
            external_id=note.crmsync_id,
        )


def test_a_create_whose_answer_was_lost_is_found_not_made_again(
    sandbox: Sandbox, factory: sessionmaker[Session]
) -> None:
    settings = sf_settings(sandbox)
    with SalesforceClient(settings) as client:
        parent = sandbox_account_ids(client)[0]
        op = store_note(factory, parent, "Kickoff", "They want SSO.")
        before = datetime.now(UTC)

        dying = NoteCreateGuard(
            NoteInserts(client, die_after_call=True),
            SqlPendingNotes(factory),
            SalesforceNoteLookup(client),
        )
        with pytest.raises(SystemExit):
            dying.write("Note", [op])
        with factory() as s:
            row = s.get(HandoverNote, op.key)
            assert row is not None
            assert row.sf_id is None, "the answer was never stored"
            mark = pending_since(row.field_stamps)
            assert mark is not None, "the pending mark was committed before the create call"
            assert before <= mark <= datetime.now(UTC)
        assert len(notes_in_salesforce(client, parent)) == 1

        # The next push: the note is looked up (one query) and answered without a create.
        inserts = NoteInserts(client)
        rerun = NoteCreateGuard(inserts, SqlPendingNotes(factory), SalesforceNoteLookup(client))
        calls = client.api_calls
        [result] = rerun.write("Note", [op])
        assert inserts.calls == 0, "no second create call"
        assert client.api_calls == calls + 1, "one lookup query"
        [note] = notes_in_salesforce(client, parent)
        assert result.outcome is WriteOutcome.CREATED
        assert result.crm_id == note["Id"]
        assert rerun.recovered == 1


def test_new_notes_are_created_once_and_pending_twins_get_one_note_each(
    sandbox: Sandbox, factory: sessionmaker[Session]
) -> None:
    settings = sf_settings(sandbox)
    with SalesforceClient(settings) as client:
        parent = sandbox_account_ids(client)[1]
        seeded = {n["Id"] for n in notes_in_salesforce(client, parent)}
        # Two CS notes with the same title and text under one account, and a third.
        first = store_note(factory, parent, "Twin", "same text")
        second = store_note(factory, parent, "Twin", "same text")
        lonely = store_note(factory, parent, "Lonely", "never sent")

        # Both twins' creates are lost; the third note was never sent.
        dying = NoteCreateGuard(
            NoteInserts(client, die_after_call=True),
            SqlPendingNotes(factory),
            SalesforceNoteLookup(client),
        )
        with pytest.raises(SystemExit):
            dying.write("Note", [first, second])
        twins = [n["Id"] for n in notes_in_salesforce(client, parent) if n["Id"] not in seeded]
        assert len(twins) == 2

        inserts = NoteInserts(client)
        guard = NoteCreateGuard(inserts, SqlPendingNotes(factory), SalesforceNoteLookup(client))
        results = guard.write("Note", [first, lonely, second])
        assert [r.key for r in results] == [first.key, lonely.key, second.key], "in op order"
        assert inserts.calls == 1, "only the never-sent note is created"
        now = {n["Id"]: n for n in notes_in_salesforce(client, parent) if n["Id"] not in seeded}
        assert len(now) == 3
        by_key = {r.key: r.crm_id for r in results}
        assert {by_key[first.key], by_key[second.key]} == set(twins), "one note each"
        assert now[by_key[lonely.key]]["Title"] == "Lonely"


def test_updates_and_other_objects_pass_straight_through(
    sandbox: Sandbox, factory: sessionmaker[Session]
) -> None:
    settings = sf_settings(sandbox)
    with SalesforceClient(settings) as client:
        inner = NoteInserts(client)
        guard = guard_note_creates(inner, settings, factory)  # type: ignore[arg-type]
        assert isinstance(guard, NoteCreateGuard)
        parent = sandbox_account_ids(client)[2]
        op = store_note(factory, parent, "Plain", "text")
        calls = client.api_calls
        [result] = guard.write("Note", [op])
        assert result.ok
        assert client.api_calls == calls + 1, "one create; no lookup for a note never sent"
        with factory() as s:
            row = s.get(HandoverNote, op.key)
            assert row is not None
            assert PENDING_KEY in row.field_stamps, "marked before its (first) create"
