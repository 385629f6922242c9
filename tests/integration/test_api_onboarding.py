"""``/api/v1/onboarding`` (list with status / csm / overdue filters and a keyset cursor, one plan,
task PATCH, close by hand) and ``/api/v1/csms`` (list with load, create, edit); 4xx answers name
the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import make_session_factory
from app.db.models import Account, Csm, OnboardingTask, Opportunity, UsageSnapshot
from app.db.onboarding_store import create_plan_once
from app.domain.onboarding import build_plan
from app.main import create_app
from app.settings import Settings
from tests.support.api import api_client

TODAY = datetime.now(UTC).date()


def settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with api_client(create_app(settings(database_url)), role="operator") as c:
        yield c


def make_plan(
    factory: sessionmaker[Session], tier: Any = "high", d0: date = TODAY, csm_id: int | None = None
) -> int:
    with factory() as s, s.begin():
        account = Account(name=f"Acme {tier}", tier=tier, lifecycle_stage="onboarding")
        s.add(account)
        s.flush()
        opp = Opportunity(name="deal", account_id=account.id, is_won=True, is_closed=True)
        s.add(opp)
        s.flush()
        s.add(
            UsageSnapshot(
                account_id=account.id,
                observed_on=TODAY,
                active_users_30d=15,
                licensed_seats=20,
            )
        )
        plan = build_plan(
            tier, "new_business", d0, max(d0, TODAY - timedelta(days=400)), handover=None
        )
        return create_plan_once(
            s, account_id=account.id, opportunity_id=opp.id, decision=plan, csm_id=csm_id
        ).plan_id


def all_pages(client: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = client.get(
            "/api/v1/onboarding", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_list_filters_and_pages(client: TestClient, factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        csm = Csm(name="Cara", email="cara@example.com", tiers=["high"])
        s.add(csm)
        s.flush()
        csm_id = csm.id
    mine = [make_plan(factory, csm_id=csm_id) for _ in range(3)]
    late = make_plan(factory, "low", TODAY - timedelta(days=61))
    others = [make_plan(factory) for _ in range(2)]
    everything = all_pages(client, {"limit": 2})
    assert [p["id"] for p in everything] == sorted([*mine, late, *others])
    assert [p["id"] for p in all_pages(client, {"csm": str(csm_id), "limit": 2})] == mine
    assert [p["id"] for p in all_pages(client, {"csm": "CARA@example.com"})] == mine
    assert [p["id"] for p in all_pages(client, {"overdue": "true"})] == [late]
    assert [p["id"] for p in all_pages(client, {"status": "completed"})] == []
    first = everything[0]
    assert first["progress"]["total"] == len(first["tasks"])
    assert first["tasks"][0]["due_on"] >= first["started_on"]
    assert first["csm_email"] == "cara@example.com"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"overdue": "perhaps"}, "overdue"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "bogus"}, "cursor"),
        ({"csm": "nobody@example.com"}, "csm"),
    ],
)
def test_bad_query_names_the_parameter(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    answer = client.get("/api/v1/onboarding", params=params)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][:2] == ["query", field]


def test_cursor_with_other_filters_is_refused(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    for _ in range(3):
        make_plan(factory)
    cursor = client.get("/api/v1/onboarding", params={"limit": 1}).json()["next_cursor"]
    answer = client.get(
        "/api/v1/onboarding", params={"limit": 1, "cursor": cursor, "overdue": "true"}
    )
    assert answer.status_code == 422
    assert "other filters" in answer.json()["detail"][0]["msg"]


def test_one_plan_and_404(client: TestClient, factory: sessionmaker[Session]) -> None:
    plan_id = make_plan(factory, "key")
    body = client.get(f"/api/v1/onboarding/{plan_id}").json()
    assert body["tier_at_close"] == "key"
    assert body["kind"] == "full"
    codes = [t["code"] for t in body["tasks"]]
    assert "account_plan" in codes
    assert "handover_complete" in codes
    assert client.get("/api/v1/onboarding/999999").status_code == 404


def test_patch_tasks_to_adoption(client: TestClient, factory: sessionmaker[Session]) -> None:
    """7.4: the last criterion done -> the plan completes and the account enters adoption."""
    plan_id = make_plan(factory)
    tasks = {
        t["code"]: t["id"] for t in client.get(f"/api/v1/onboarding/{plan_id}").json()["tasks"]
    }
    for code in ("go_live", "first_value", "admin_training"):
        answer = client.patch(
            f"/api/v1/onboarding/tasks/{tasks[code]}", json={"status": "done", "note": "ok"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["adoption"] is False
        assert answer.json()["task"]["note"] == "ok"
    answer = client.patch(
        f"/api/v1/onboarding/tasks/{tasks['onboarding_csat']}", json={"status": "done"}
    )
    body = answer.json()
    assert body["adoption"] is True
    assert body["plan"]["status"] == "completed"
    assert body["plan"]["progress"]["exit_met"] is True
    with factory() as s:
        task = s.get(OnboardingTask, tasks["onboarding_csat"])
        assert task is not None
        account = s.scalars(select(Account).where(Account.name == "Acme high")).one()
        assert account.lifecycle_stage == "adoption"
    assert [p["id"] for p in all_pages(client, {"status": "completed"})] == [plan_id]


def test_skip_with_note(client: TestClient, factory: sessionmaker[Session]) -> None:
    plan_id = make_plan(factory)
    task = client.get(f"/api/v1/onboarding/{plan_id}").json()["tasks"][0]
    answer = client.patch(
        f"/api/v1/onboarding/tasks/{task['id']}", json={"status": "skipped", "note": "not needed"}
    )
    assert answer.status_code == 200
    assert answer.json()["task"]["status"] == "skipped"
    assert answer.json()["plan"]["progress"]["skipped"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "finished"}, "status"),
        ({}, "status"),
        ({"status": "done", "note": "x" * 5000}, "note"),
        ({"status": "done", "colour": "red"}, "colour"),
    ],
)
def test_bad_patch_names_the_field(
    client: TestClient, factory: sessionmaker[Session], body: dict[str, Any], field: str
) -> None:
    plan_id = make_plan(factory)
    task = client.get(f"/api/v1/onboarding/{plan_id}").json()["tasks"][0]
    answer = client.patch(f"/api/v1/onboarding/tasks/{task['id']}", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", field]


def test_task_changes_and_closes_are_audited_as_the_key(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    from app.db.models import AuditEntry

    plan_id = make_plan(factory)
    with api_client(create_app(settings(database_url)), name="csm-bot") as c:
        task = c.get(f"/api/v1/onboarding/{plan_id}").json()["tasks"][0]
        for _ in range(2):  # the second changes nothing: not logged again
            r = c.patch(f"/api/v1/onboarding/tasks/{task['id']}", json={"status": "done"})
            assert r.status_code == 200
        c.post(f"/api/v1/onboarding/{plan_id}/close", json={"reason": "self-served"})
    with factory() as s:
        rows = s.query(AuditEntry).order_by(AuditEntry.id).all()
    assert [(e.actor, e.action, e.target) for e in rows] == [
        ("key:csm-bot", "onboarding_task.set", f"onboarding_task:{task['id']}"),
        ("key:csm-bot", "onboarding_plan.close", f"onboarding_plan:{plan_id}"),
    ]
    assert rows[0].detail["status"] == "done"


def test_unknown_task_404(client: TestClient) -> None:
    answer = client.patch("/api/v1/onboarding/tasks/999999", json={"status": "done"})
    assert answer.status_code == 404
    assert "999999" in answer.json()["detail"]


def test_close_by_hand(client: TestClient, factory: sessionmaker[Session]) -> None:
    plan_id = make_plan(factory)
    assert client.post(f"/api/v1/onboarding/{plan_id}/close", json={}).json()["detail"][0][
        "loc"
    ] == [
        "body",
        "reason",
    ]
    body = client.post(f"/api/v1/onboarding/{plan_id}/close", json={"reason": "self-served"}).json()
    assert body["adoption"] is True
    assert body["plan"]["status"] == "closed"
    assert body["plan"]["close_reason"] == "self-served"


# --- CSMs ----------------------------------------------------------------------------------


def test_csms_create_list_patch(client: TestClient, factory: sessionmaker[Session]) -> None:
    created = client.post(
        "/api/v1/csms", json={"name": "Cara", "email": "Cara@Example.com", "tiers": ["high", "key"]}
    )
    assert created.status_code == 201, created.text
    cara = created.json()
    assert cara["email"] == "cara@example.com"
    assert cara["tiers"] == ["key", "high"]
    assert cara["capacity_units"] == 100
    assert cara["load_units"] == 0
    with factory() as s, s.begin():
        s.add(
            Account(
                name="K",
                tier="key",
                lifecycle_stage="onboarding",
                csm_id=cara["id"],
                arr=Decimal(1),
            )
        )
    listed = client.get("/api/v1/csms").json()["items"]
    assert listed[0]["load_units"] == 15
    assert listed[0]["utilisation"] == 0.15
    patched = client.patch(f"/api/v1/csms/{cara['id']}", json={"capacity_units": 50})
    assert patched.status_code == 200
    assert patched.json()["utilisation"] == 0.3
    assert patched.json()["reassigned_account_ids"] == []
    # deactivated: her account goes through 8.3 steps 4-6; nobody else serves key and no
    # fallback owner is set, so nobody owns it now, flagged for the CS manager
    patched = client.patch(f"/api/v1/csms/{cara['id']}", json={"active": False})
    assert patched.status_code == 200
    assert patched.json()["active"] is False
    with factory() as s:
        account = s.scalars(select(Account).where(Account.name == "K")).one()
        assert patched.json()["reassigned_account_ids"] == [account.id]
        assert account.csm_id is None
        assert "csm_capacity_exceeded" in (account.flags or [])
    assert patched.json()["utilisation"] == 0.0
    assert client.get("/api/v1/csms", params={"active": "true"}).json()["items"] == []
    assert client.get(f"/api/v1/csms/{cara['id']}").json()["capacity_units"] == 50


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@b.test"}, "name"),
        ({"name": "A", "email": "nope"}, "email"),
        ({"name": "A", "email": "a@b.test", "tiers": ["gold"]}, "tiers"),
        ({"name": "A", "email": "a@b.test", "capacity_units": -5}, "capacity_units"),
        ({"name": "A", "email": "a@b.test", "boss": "x"}, "boss"),
    ],
)
def test_csm_bad_body_names_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    answer = client.post("/api/v1/csms", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][:2] == ["body", field]


def test_csm_duplicates_are_409_naming_the_field(client: TestClient) -> None:
    client.post("/api/v1/csms", json={"name": "A", "email": "a@b.test", "sf_user_id": "005A"})
    dup = client.post("/api/v1/csms", json={"name": "B", "email": "A@B.test"})
    assert dup.status_code == 409
    assert dup.json()["detail"][0]["loc"] == ["body", "email"]
    b = client.post("/api/v1/csms", json={"name": "B", "email": "b@b.test"}).json()
    clash = client.patch(f"/api/v1/csms/{b['id']}", json={"sf_user_id": "005A"})
    assert clash.status_code == 409
    assert clash.json()["detail"][0]["loc"] == ["body", "sf_user_id"]
    null = client.patch(f"/api/v1/csms/{b['id']}", json={"name": None})
    assert null.status_code == 422
    assert null.json()["detail"][0]["loc"] == ["body", "name"]
    assert client.patch("/api/v1/csms/99999", json={"name": "x"}).status_code == 404


def test_order_due_puts_plans_with_late_tasks_first_across_pages(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    """``order=due``: by the earliest open task's due date, then id, keyset-paged: the plans
    with late tasks lead across all pages, the most overdue first; plans with nothing open
    last; every plan exactly once. The default order stays by id."""
    fresh = [make_plan(factory) for _ in range(3)]  # started today: nothing late yet
    late = make_plan(factory, "low", TODAY - timedelta(days=30))  # created after the fresh ones
    later = make_plan(factory, "low", TODAY - timedelta(days=10))
    done = make_plan(factory)
    with factory() as s, s.begin():
        for task in s.scalars(select(OnboardingTask).where(OnboardingTask.plan_id == done)):
            task.status = "done"
    ordered = all_pages(client, {"order": "due", "limit": 2})
    ids = [p["id"] for p in ordered]
    assert sorted(ids) == sorted([*fresh, late, later, done])  # each plan once
    assert ids[:2] == [late, later]  # the oldest late task first, on the first page
    assert ids[-1] == done  # no open task: last
    assert all(p["progress"]["late_tasks"] for p in ordered[:2])
    assert not any(p["progress"]["late_tasks"] for p in ordered[2:])
    keys = [(p["next_due_on"] or "9999-12-31", p["id"]) for p in ordered]
    assert keys == sorted(keys)
    assert ordered[0]["next_due_on"] == min(
        t["due_on"] for t in ordered[0]["tasks"] if t["status"] == "open"
    )
    assert ordered[-1]["next_due_on"] is None
    # the default order is unchanged (by id)
    assert [p["id"] for p in all_pages(client, {"limit": 2})] == sorted(ids)
    # filters still apply, with the order
    assert [p["id"] for p in all_pages(client, {"order": "due", "overdue": "true"})] == []


def test_order_due_cursor_is_bound_to_its_order(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    for _ in range(3):
        make_plan(factory)
    by_id = client.get("/api/v1/onboarding", params={"limit": 1}).json()["next_cursor"]
    by_due = client.get("/api/v1/onboarding", params={"limit": 1, "order": "due"}).json()
    assert by_due["next_cursor"]
    for params in (
        {"limit": 1, "order": "due", "cursor": by_id},  # an id cursor in the due order
        {"limit": 1, "cursor": by_due["next_cursor"]},  # and the other way round
    ):
        answer = client.get("/api/v1/onboarding", params=params)
        assert answer.status_code == 422, params
        assert answer.json()["detail"][0]["loc"][:2] == ["query", "cursor"]
    bad = client.get("/api/v1/onboarding", params={"order": "urgency"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][:2] == ["query", "order"]
    # the order is documented in the OpenAPI description
    spec = client.get("/openapi.json").json()["paths"]["/api/v1/onboarding"]["get"]
    (order,) = [p for p in spec["parameters"] if p["name"] == "order"]
    assert order["schema"]["enum"] == ["id", "due"]
    assert order["schema"]["default"] == "id"
    assert "late (overdue) tasks come first across all pages" in order["description"]
    assert "come first across all pages" in spec["description"]
