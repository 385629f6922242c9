"""The notes API stores first (stamped, with a crmsync id), answers 4xx naming the field, and
reports a note it could not push as queued, never lost (issue #17 item 7)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db.engine import make_session_factory
from app.db.models import Account, HandoverNote, Opportunity
from app.main import create_app
from app.mappers.handover import parse_handover
from app.settings import Settings
from tests.support.api import api_client


@pytest.fixture
def parents(engine: Engine) -> dict[str, int]:
    with make_session_factory(engine)() as s:
        account = Account(name="Acme", sf_id="001000000000001AAA")
        hs_account = Account(name="Globex", hs_id="1001")
        s.add_all([account, hs_account])
        s.flush()
        opportunity = Opportunity(
            name="Acme renewal", account_id=account.id, sf_id="006000000000001AAA"
        )
        deal = Opportunity(name="Globex new", account_id=hs_account.id, hs_id="2001")
        deal.hs_company_id = "1001"
        gone = Account(name="Gone", sf_id="001000000000009AAA")
        gone.deleted_at = datetime(2026, 1, 1).astimezone()
        s.add_all([opportunity, deal, gone])
        s.commit()
        return {
            "account": account.id,
            "hs_account": hs_account.id,
            "opportunity": opportunity.id,
            "deal": deal.id,
            "gone": gone.id,
        }


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    # No CRM configured: every push stays queued, which is what these tests look at.
    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    with api_client(create_app(settings)) as c:
        yield c


def notes(engine: Engine) -> list[HandoverNote]:
    with Session(engine) as s:
        return list(s.scalars(select(HandoverNote).order_by(HandoverNote.id)))


def test_account_note_is_stored_stamped_and_queued(
    client: TestClient, engine: Engine, parents: dict[str, int]
) -> None:
    response = client.post(
        f"/api/v1/accounts/{parents['account']}/notes",
        json={"title": "Kickoff", "body": "They want SSO.", "author": "Ada", "goals": ["go live"]},
    )
    assert response.status_code == 202, response.text
    out = response.json()
    assert out["push"] == [
        {
            "crm": "salesforce",
            "status": "queued",
            "crm_id": None,
            "message": "salesforce is not configured",
        }
    ]
    [row] = notes(engine)
    assert out["id"] == row.id
    assert row.crmsync_id is not None
    assert len(row.crmsync_id) == 36
    assert row.origin == "cs"
    assert row.account_id == parents["account"]
    assert row.sf_parent_id == "001000000000001AAA"
    assert row.body == "Handover: Kickoff\nGoals: go live\n\nThey want SSO."
    assert parse_handover(row.body).is_handover
    assert row.goals == ["go live"]
    assert row.author == "Ada"
    assert row.cs_changed_at is not None
    assert {"title", "body", "goals", "fit"} <= set(row.field_stamps)
    assert datetime.fromisoformat(row.field_stamps["title"]) == row.cs_changed_at


def test_opportunity_note_links_the_opportunity_and_its_account(
    client: TestClient, engine: Engine, parents: dict[str, int]
) -> None:
    response = client.post(
        f"/api/v1/opportunities/{parents['opportunity']}/notes", json={"title": "Handover"}
    )
    assert response.status_code == 202
    [row] = notes(engine)
    assert (row.account_id, row.opportunity_id) == (parents["account"], parents["opportunity"])
    assert row.sf_parent_id == "006000000000001AAA", "a Salesforce Note's parent: the opportunity"
    assert parse_handover(row.body).opportunity_id == "006000000000001AAA"

    response = client.post(f"/api/v1/opportunities/{parents['deal']}/notes", json={"title": "D"})
    assert response.status_code == 202
    hs_row = notes(engine)[-1]
    assert (hs_row.hs_deal_id, hs_row.hs_company_id, hs_row.sf_parent_id) == ("2001", "1001", None)
    assert [p["crm"] for p in response.json()["push"]] == ["hubspot"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 256}, "title"),
        ({"title": "T", "body": "x" * 32_001}, "body"),
        ({"title": "T", "fit": "great"}, "fit"),
        ({"title": "T", "goals": "not a list"}, "goals"),
        ({"title": "T", "contacts": [{"role": "boss"}]}, "contacts"),
        ({"title": "T", "sold": {"seats": -1}}, "sold"),
        ({"title": "T", "colour": "red"}, "colour"),
        # a whole handover body and structured fields besides: which one wins is unclear
        ({"title": "T", "body": "Handover: X\nGoals: a", "goals": ["b"]}, "body"),
        # the handover lines push the body over what a CRM note holds
        ({"title": "T", "body": "x" * 31_990}, "body"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    client: TestClient,
    engine: Engine,
    parents: dict[str, int],
    payload: dict[str, Any],
    field: str,
) -> None:
    response = client.post(f"/api/v1/accounts/{parents['account']}/notes", json=payload)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(error["loc"][:2] == ["body", field] for error in detail), detail
    assert notes(engine) == []


def test_malformed_json_is_a_4xx_json_answer(client: TestClient, parents: dict[str, int]) -> None:
    response = client.post(
        f"/api/v1/accounts/{parents['account']}/notes",
        content=b'{"title": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/accounts/999/notes", "account 999 not found"),
        ("/api/v1/opportunities/999/notes", "opportunity 999 not found"),
    ],
)
def test_unknown_parent_is_404_json(
    client: TestClient, engine: Engine, path: str, message: str
) -> None:
    response = client.post(path, json={"title": "T"})
    assert response.status_code == 404
    assert response.json() == {"detail": message}
    assert notes(engine) == []


def test_deleted_account_is_404(client: TestClient, parents: dict[str, int]) -> None:
    response = client.post(f"/api/v1/accounts/{parents['gone']}/notes", json={"title": "T"})
    assert response.status_code == 404


def test_patch_stamps_only_what_changed(
    client: TestClient, engine: Engine, parents: dict[str, int]
) -> None:
    created = client.post(
        f"/api/v1/accounts/{parents['account']}/notes",
        json={"title": "Kickoff", "body": "They want SSO.", "fit": "good"},
    ).json()
    before = notes(engine)[0]

    response = client.patch(f"/api/v1/notes/{created['id']}", json={"title": "Kick-off"})
    assert response.status_code == 202
    after = notes(engine)[0]
    assert after.title == "Kick-off"
    assert after.body == "Handover: Kick-off\nFit: good\n\nThey want SSO."
    assert after.fit == "good"
    assert after.cs_changed_at is not None
    assert before.cs_changed_at is not None
    assert after.cs_changed_at > before.cs_changed_at
    assert after.field_stamps["title"] > before.field_stamps["title"]
    assert after.field_stamps["body"] > before.field_stamps["body"]
    assert after.field_stamps["fit"] == before.field_stamps["fit"], "fit did not change"

    # a free-text body keeps the handover lines; a whole handover body is taken as sent
    response = client.patch(f"/api/v1/notes/{created['id']}", json={"body": "Call on Monday."})
    assert response.json()["body"] == "Handover: Kick-off\nFit: good\n\nCall on Monday."
    response = client.patch(
        f"/api/v1/notes/{created['id']}", json={"body": "Handover: Kick-off\nFit: bad"}
    )
    assert response.json()["body"] == "Handover: Kick-off\nFit: bad"
    assert response.json()["fit"] == "bad"

    unchanged = notes(engine)[0]
    response = client.patch(
        f"/api/v1/notes/{created['id']}", json={"body": "Handover: Kick-off\nFit: bad"}
    )
    assert response.status_code == 200, "nothing changed: nothing stamped, nothing pushed"
    assert response.json()["push"] == []
    assert notes(engine)[0].cs_changed_at == unchanged.cs_changed_at


@pytest.mark.parametrize(
    ("payload", "field"),
    [({}, "body"), ({"title": ""}, "title"), ({"author": "x"}, "author")],
)
def test_patch_bad_input(
    client: TestClient, parents: dict[str, int], payload: dict[str, Any], field: str
) -> None:
    created = client.post(f"/api/v1/accounts/{parents['account']}/notes", json={"title": "T"})
    response = client.patch(f"/api/v1/notes/{created.json()['id']}", json=payload)
    assert response.status_code == 422
    assert any(e["loc"][:2] == ["body", field] for e in response.json()["detail"])


def test_get_and_patch_unknown_note_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/notes/5").status_code == 404
    response = client.patch("/api/v1/notes/5", json={"title": "x"})
    assert response.status_code == 404
    assert response.json() == {"detail": "note 5 not found"}


def test_get_reads_the_note(client: TestClient, parents: dict[str, int], engine: Engine) -> None:
    created = client.post(f"/api/v1/accounts/{parents['account']}/notes", json={"title": "T"})
    response = client.get(f"/api/v1/notes/{created.json()['id']}")
    assert response.status_code == 200
    assert response.json()["title"] == "T"
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(HandoverNote)) == 1


def test_patch_of_a_pulled_note_without_title_keeps_it_a_handover(
    client: TestClient, engine: Engine, parents: dict[str, int]
) -> None:
    """A HubSpot note has no title: its ``Handover:`` line names it, and a free-text edit keeps
    that line (else the next pull would no longer see the note as a handover)."""
    with Session(engine) as s:
        pulled = HandoverNote(
            hs_id="30000000001",
            hs_company_id="1001",
            account_id=parents["hs_account"],
            body="Handover: Globex 2027\nGoals: a; b",
            goals=["a", "b"],
            origin="crm",
        )
        s.add(pulled)
        s.commit()
        note_id = pulled.id
    response = client.patch(f"/api/v1/notes/{note_id}", json={"body": "Call on Monday."})
    assert response.status_code == 202
    out = response.json()
    assert out["body"] == "Handover: Globex 2027\nGoals: a; b\n\nCall on Monday."
    assert out["title"] is None, "no title is made up for it"
    assert parse_handover(out["body"]).is_handover
    [row] = notes(engine)
    assert "title" not in row.field_stamps
    assert set(row.field_stamps) == {"body"}
