"""The new-onboarding notice (#20 item 5): one JSON POST per plan, retried on 5xx and
connection errors, not on a 4xx; mocked with respx."""

from __future__ import annotations

from datetime import date

import httpx
import respx
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.engine import make_session_factory
from app.db.models import Account, Csm, OnboardingPlan
from app.settings import Settings, WebhookSettings
from app.wiring.notices import send_onboarding_notices

URL = "https://chat.example.test/hooks/onboarding"


def plan(engine: Engine) -> int:
    with Session(engine) as s:
        csm = Csm(name="Ada", email="ada@cs.example", tiers=["high"])
        account = Account(name="Acme Oy", hs_id="512")
        s.add_all([csm, account])
        s.flush()
        row = OnboardingPlan(
            account_id=account.id, tier_at_close="high", started_on=date(2026, 12, 4), csm_id=csm.id
        )
        s.add(row)
        s.commit()
        return row.id


def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        webhooks=WebhookSettings(notice_url=URL, notice_attempts=3, notice_backoff_seconds=0),
    )


@respx.mock
def test_notice_is_retried_on_5xx_and_connection_errors(engine: Engine, database_url: str) -> None:
    plan_id = plan(engine)
    route = respx.post(URL).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(503),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    (result,) = send_onboarding_notices(
        settings(database_url), make_session_factory(engine), [plan_id], sleep=lambda _s: None
    )
    assert result.delivered
    assert result.attempts == 3
    assert route.call_count == 3
    body = route.calls.last.request.read()
    import json

    message = json.loads(body)
    assert message["event"] == "onboarding.started"
    assert message["tier"] == "high"
    assert message["account"]["name"] == "Acme Oy"
    assert message["csm"]["email"] == "ada@cs.example"
    assert "Acme Oy" in message["text"]


@respx.mock
def test_a_4xx_is_not_retried_and_no_url_sends_nothing(engine: Engine, database_url: str) -> None:
    plan_id = plan(engine)
    route = respx.post(URL).mock(return_value=httpx.Response(400))
    factory = make_session_factory(engine)
    (result,) = send_onboarding_notices(settings(database_url), factory, [plan_id])
    assert not result.delivered
    assert (result.attempts, result.status) == (1, 400)
    assert route.call_count == 1
    plain = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    assert send_onboarding_notices(plain, factory, [plan_id]) == []
