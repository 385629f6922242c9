"""``POST /api/v1/signals/{kind}`` on the test database (SQLite, or PostgreSQL in CI): every kind
stored, bad rows 422 naming index and field while the good ones are stored, accounts named four
ways, idempotent by natural key and by external id, ``signals_changed_at`` moved so that the
recompute selects the account (and ``updated_at`` not), 10,000 rows in one batch quickly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import make_session_factory
from app.db.health_store import due_account_ids
from app.db.models import (
    Account,
    Contact,
    Invoice,
    NpsResponse,
    SuccessCriterion,
    SupportTicket,
    SurveyResponse,
    Touchpoint,
    UsageSnapshot,
)
from app.main import create_app
from app.settings import Settings
from app.wiring.recompute import run_recompute
from tests.support.api import api_client

TODAY = datetime.now(UTC).date()


def settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def accounts(factory: sessionmaker[Session]) -> list[int]:
    """Three accounts (one of them with a decision maker contact); a deleted fourth; two
    accounts sharing a domain (one company mirrored from both CRMs)."""
    with factory() as s, s.begin():
        made = [
            Account(name="Acme", domain="acme.com", sf_id="001000000000001AAA", hs_id="501"),
            Account(name="Globex", domain="globex.com", sf_id="001000000000002AAA"),
            Account(name="Initech", domain="initech.com", hs_id="503"),
            Account(name="Gone", domain="gone.com", deleted_at=datetime.now(UTC)),
            Account(name="Twin SF", domain="twin.com", sf_id="001000000000005AAA"),
            Account(name="Twin HS", domain="twin.com", hs_id="506"),
        ]
        s.add_all(made)
        s.flush()
        s.add(
            Contact(
                account_id=made[0].id,
                name="Dana",
                email="Dana@Acme.com",
                roles=["decision_maker"],
            )
        )
        return [a.id for a in made]


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with api_client(create_app(settings(database_url)), role="operator") as c:
        yield c


def count(factory: sessionmaker[Session], model: Any) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def post(client: TestClient, kind: str, rows: list[dict[str, Any]]) -> Any:
    return client.post(f"/api/v1/signals/{kind}", json={"rows": rows})


ROWS: dict[str, tuple[Any, list[dict[str, Any]]]] = {
    "usage": (
        UsageSnapshot,
        [
            {
                "account_id": 0,
                "observed_on": str(TODAY),
                "active_users_30d": 8,
                "licensed_seats": 10,
                "logins_30d": 120,
                "key_features_used_30d": 3,
                "key_features_defined": 5,
                "last_login_at": f"{TODAY}T08:00:00Z",
            }
        ],
    ),
    "tickets": (
        SupportTicket,
        [{"account_id": 0, "external_id": "T-1", "opened_at": f"{TODAY}T08:00:00Z"}],
    ),
    "nps": (
        NpsResponse,
        [
            {
                "account_id": 0,
                "score": 3,
                "responded_on": str(TODAY),
                "contact_email": "dana@acme.com",
            }
        ],
    ),
    "surveys": (
        SurveyResponse,
        [
            {
                "account_id": 0,
                "kind": "ces",
                "score": 2,
                "scale_min": 1,
                "scale_max": 7,
                "responded_on": str(TODAY),
            }
        ],
    ),
    "touchpoints": (
        Touchpoint,
        [
            {
                "account_id": 0,
                "kind": "call",
                "occurred_at": f"{TODAY}T09:00:00Z",
                "direction": "out",
                "two_way": True,
                "contact_email": "DANA@acme.com",
            }
        ],
    ),
    "invoices": (
        Invoice,
        [
            {
                "account_id": 0,
                "external_id": "INV-7",
                "amount": "1200.00",
                "currency": "EUR",
                "due_on": str(TODAY),
            }
        ],
    ),
    "success_criteria": (
        SuccessCriterion,
        [{"account_id": 0, "text": "Weekly report live", "status": "partly_met"}],
    ),
}


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_each_kind_is_stored_once_and_moves_signals_changed_at(
    kind: str, client: TestClient, factory: sessionmaker[Session], accounts: list[int]
) -> None:
    model, rows = ROWS[kind]
    rows = [{**r, "account_id": accounts[0]} for r in rows]
    with factory() as s:
        before_updated = s.get(Account, accounts[0]).updated_at  # type: ignore[union-attr]
    first = post(client, kind, rows)
    assert first.status_code == 200, first.json()
    body = first.json()
    assert body["stored"] == body["created"] == 1
    assert body["stored_rows"] == [[0, 0]]
    assert body["errors"] == []
    again = post(client, kind, rows)
    assert again.status_code == 200
    assert (again.json()["created"], again.json()["updated"]) == (0, 1)
    assert count(factory, model) == 1
    with factory() as s:
        account = s.get(Account, accounts[0])
        assert account is not None
        assert account.signals_changed_at is not None
        assert account.updated_at == before_updated  # the account itself did not change
        stored = s.scalars(select(model)).one()
        assert stored.account_id == accounts[0]
        if kind in ("nps", "touchpoints"):  # the respondent matched the synced contact
            contact_id = s.scalar(select(Contact.id))
            assert stored.contact_id == contact_id


def test_a_bad_row_is_422_naming_index_and_field_and_the_good_rows_are_stored(
    client: TestClient, factory: sessionmaker[Session], accounts: list[int]
) -> None:
    rows = [
        {"account_id": accounts[0], "score": 9, "responded_on": str(TODAY)},
        {"account_id": accounts[1], "score": 11, "responded_on": str(TODAY)},
        {"account_id": accounts[2], "score": 5, "responded_on": str(TODAY)},
        {"domain": "nowhere.com", "score": 5, "responded_on": str(TODAY)},
        {"account_id": accounts[1], "score": 7, "responded_on": str(TODAY)},
    ]
    answer = post(client, "nps", rows)
    assert answer.status_code == 422
    body = answer.json()
    assert body["stored"] == 3
    assert body["stored_rows"] == [[0, 0], [2, 2], [4, 4]]
    assert body["rejected_rows"] == [1, 3]
    assert [(e["loc"], e["field"]) for e in body["detail"]] == [
        (["body", "rows", 1, "score"], "score"),
        (["body", "rows", 3, "domain"], "domain"),
    ]
    assert body["detail"][1]["msg"] == "no such account"
    assert count(factory, NpsResponse) == 3


def test_accounts_named_four_ways_unknown_deleted_and_ambiguous(
    client: TestClient, factory: sessionmaker[Session], accounts: list[int]
) -> None:
    day = str(TODAY)
    usage = {"observed_on": day, "active_users_30d": 1}
    rows = [
        {**usage, "account_id": accounts[0]},
        {**usage, "sf_id": "001000000000002AAA"},
        {**usage, "hs_id": "503"},
        {**usage, "domain": "WWW.Acme.com", "observed_on": str(TODAY - timedelta(days=1))},
        {**usage, "domain": "gone.com"},  # deleted
        {**usage, "account_id": 999_999},
        {**usage, "domain": "twin.com"},  # two accounts
        {**usage, "sf_id": "001000000000005AAA"},
    ]
    body = post(client, "usage", rows).json()
    assert body["stored_rows"] == [[0, 3], [7, 7]]
    errors = {e["index"]: e for e in body["detail"]}
    assert errors[4]["field"] == "domain"
    assert errors[4]["msg"] == "no such account"
    assert errors[5]["field"] == "account_id"
    assert errors[6]["field"] == "domain"
    assert "names 2 accounts" in errors[6]["msg"]
    with factory() as s:
        got = sorted(s.execute(select(UsageSnapshot.account_id, UsageSnapshot.observed_on)))
    assert got == sorted(
        [
            (accounts[0], TODAY),
            (accounts[1], TODAY),
            (accounts[2], TODAY),
            (accounts[0], TODAY - timedelta(days=1)),
            (accounts[4], TODAY),
        ]
    )


def test_idempotent_by_natural_key_and_by_external_id_and_a_resend_updates(
    client: TestClient, factory: sessionmaker[Session], accounts: list[int]
) -> None:
    a = accounts[0]
    opened = f"{TODAY}T08:00:00Z"
    natural = {"account_id": a, "opened_at": opened, "priority": "P1"}
    by_id = {"sf_id": "001000000000001AAA", "external_id": "HD-9", "opened_at": opened}
    assert post(client, "tickets", [natural, by_id]).status_code == 200
    # the same two facts again, the first closed now, named another way, twice in one batch
    closed = {**natural, "closed_at": f"{TODAY}T09:00:00Z"}
    again = post(client, "tickets", [closed, {**by_id, "escalated": True}, closed])
    assert again.status_code == 200
    assert (again.json()["created"], again.json()["updated"]) == (0, 2)
    with factory() as s:
        tickets = s.scalars(select(SupportTicket).order_by(SupportTicket.id)).all()
        assert len(tickets) == 2
        assert tickets[0].closed_at is not None
        assert tickets[0].external_id.startswith("nk:")
        assert (tickets[1].source, tickets[1].external_id, tickets[1].escalated) == (
            "cs",
            "HD-9",
            True,
        )
    # the same external id from another source is another row
    other = post(client, "tickets", [{**by_id, "source": "zendesk"}])
    assert other.json()["created"] == 1
    assert count(factory, SupportTicket) == 3


def test_a_stored_signal_makes_the_account_due_for_the_recompute(
    client: TestClient, factory: sessionmaker[Session], accounts: list[int], database_url: str
) -> None:
    run_recompute(settings(database_url), session_factory=factory)
    with factory() as s:
        assert due_account_ids(s.connection(), TODAY) == []
    row = {"account_id": accounts[1], "observed_on": str(TODAY), "active_users_30d": 3}
    assert post(client, "usage", [row]).status_code == 200
    with factory() as s:
        assert due_account_ids(s.connection(), TODAY) == [accounts[1]]
    outcome = run_recompute(settings(database_url), session_factory=factory)
    assert outcome.selected == 1
    with factory() as s:
        snapshot = s.scalar(select(Account.health_computed_at).where(Account.id == accounts[1]))
        assert snapshot is not None


def test_bad_bodies_name_the_field(client: TestClient, accounts: list[int]) -> None:
    unknown = client.post("/api/v1/signals/weather", json={"rows": []})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["path", "kind"]
    not_rows = client.post("/api/v1/signals/usage", json=[{"account_id": 1}])
    assert not_rows.status_code == 422
    assert not_rows.json()["detail"][0]["loc"][0] == "body"
    too_many = client.post("/api/v1/signals/usage", json={"rows": [{}] * 10_001})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["body", "rows"]
    not_object = post(client, "usage", [5])  # type: ignore[list-item]
    assert not_object.status_code == 422
    assert not_object.json()["detail"][0]["loc"] == ["body", "rows", 0]
    empty = post(client, "usage", [])
    assert (empty.status_code, empty.json()["stored"]) == (200, 0)


def test_ten_thousand_rows_in_one_batch(client: TestClient, factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        s.add_all(Account(name=f"B{i}", domain=f"b{i}.example.com") for i in range(1_000))
    rows = [
        {
            "domain": f"b{i % 1_000}.example.com",
            "kind": "email",
            "occurred_at": (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)).isoformat(),
            "two_way": i % 3 == 0,
        }
        for i in range(10_000)
    ]
    answer = post(client, "touchpoints", rows)
    assert answer.status_code == 200, answer.json()["errors"][:3]
    assert answer.json()["stored"] == 10_000
    assert answer.json()["accounts"] == 1_000
    assert count(factory, Touchpoint) == 10_000
    again = post(client, "touchpoints", rows)
    assert again.json()["updated"] == 10_000
    assert count(factory, Touchpoint) == 10_000


def test_dates_round_trip(
    client: TestClient, factory: sessionmaker[Session], accounts: list[int]
) -> None:
    row = {
        "account_id": accounts[0],
        "external_id": "INV-1",
        "amount": "10.5",
        "currency": "usd",
        "due_on": "2026-02-28",
        "paid_on": "2026-03-02",
    }
    assert post(client, "invoices", [row]).status_code == 200
    with factory() as s:
        invoice = s.scalars(select(Invoice)).one()
        assert (invoice.currency, invoice.due_on, invoice.paid_on) == (
            "USD",
            date(2026, 2, 28),
            date(2026, 3, 2),
        )
        assert float(invoice.amount) == 10.5
        assert invoice.source == "billing"
