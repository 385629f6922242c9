"""Closed-won processing end to end (#20 items 2-3): the sandbox delivers real, signed webhooks
to crmsync served by uvicorn with its embedded worker; the worker reads the deal's current
state from the sandbox. SQLite and PostgreSQL (the suite's database)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.models import OnboardingPlan, Opportunity, WebhookEvent
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.webhooks import (
    LiveApp,
    point_sandbox_at,
    sandbox_settings,
    wait_for,
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=12, seed=20)) as sb:
        yield sb


@pytest.fixture
def server(sandbox: Sandbox, database_url: str) -> Iterator[LiveApp]:
    app = LiveApp(sandbox_settings(sandbox, database_url))
    point_sandbox_at(sandbox, app)
    yield app
    sandbox.control("PUT", "/webhooks", {"hold": False, "duplicate": False, "reorder": False})
    sandbox.control("POST", "/webhooks/clear")
    app.stop()


def hs(sb: Sandbox, method: str, path: str, **kw: Any) -> Any:
    session = sb.session()
    try:
        response = session.request(
            method,
            sb.info.hubspot.base_url + path,
            headers={"Authorization": f"Bearer {sb.info.hubspot.access_token}"},
            timeout=30,
            **kw,
        )
        response.raise_for_status()
        return response.json() if response.content else None
    finally:
        session.close()


def open_deals(sb: Sandbox, count: int) -> list[str]:
    found = hs(
        sb,
        "POST",
        "/crm/v3/objects/deals/search",
        json={
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "dealstage",
                            "operator": "NOT_IN",
                            "values": ["closedwon", "closedlost"],
                        }
                    ]
                }
            ],
            "limit": 100,
        },
    )
    ids = [str(r["id"]) for r in found["results"]]
    assert len(ids) >= count, "the seed has too few open deals"
    return ids[:count]


def events(engine: Engine, object_id: str | None = None) -> list[WebhookEvent]:
    with Session(engine) as s:
        query = select(WebhookEvent).order_by(WebhookEvent.id)
        if object_id is not None:
            query = query.where(WebhookEvent.object_id == object_id)
        return list(s.scalars(query))


def plans_for(engine: Engine, hs_id: str) -> list[OnboardingPlan]:
    with Session(engine) as s:
        return list(
            s.scalars(
                select(OnboardingPlan)
                .join(Opportunity, Opportunity.id == OnboardingPlan.opportunity_id)
                .where(Opportunity.hs_id == hs_id)
            )
        )


def settled(engine: Engine, object_id: str, count: int = 1) -> list[WebhookEvent]:
    def check() -> list[WebhookEvent] | None:
        rows = events(engine, object_id)
        done = [r for r in rows if r.status in ("done", "ignored", "dead")]
        return rows if len(rows) >= count and len(done) == len(rows) else None

    result: list[WebhookEvent] = wait_for(check, timeout=60)
    return result


def test_a_deal_deleted_before_processing_is_ignored(
    sandbox: Sandbox, server: LiveApp, engine: Engine
) -> None:
    (deal,) = open_deals(sandbox, 1)
    sandbox.control("PUT", "/webhooks", {"hold": True})
    sandbox.control("POST", "/hubspot/close-won", {"id": deal})
    hs(sandbox, "DELETE", f"/crm/v3/objects/deals/{deal}")
    sandbox.control("POST", "/webhooks/flush", {"wait": 20})
    (event,) = settled(engine, deal)
    assert event.status == "ignored"
    assert event.last_error == "deleted in the CRM before processing"
    assert plans_for(engine, deal) == []


def test_won_then_lost_before_processing_is_ignored(
    sandbox: Sandbox, server: LiveApp, engine: Engine
) -> None:
    (deal,) = open_deals(sandbox, 1)
    sandbox.control("PUT", "/webhooks", {"hold": True})
    sandbox.control("POST", "/hubspot/close-won", {"id": deal})
    hs(
        sandbox,
        "PATCH",
        f"/crm/v3/objects/deals/{deal}",
        json={"properties": {"dealstage": "closedlost"}},
    )
    sandbox.control("POST", "/webhooks/flush", {"wait": 20})
    rows = settled(engine, deal)
    assert all(r.status == "ignored" for r in rows)
    assert "not won in the CRM now" in (rows[0].last_error or "")
    with Session(engine) as s:
        opportunity = s.scalars(select(Opportunity).where(Opportunity.hs_id == deal)).one()
        assert opportunity.is_won is False
        assert opportunity.is_closed is True
    assert plans_for(engine, deal) == []
