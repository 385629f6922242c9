"""The new-onboarding notice (#20 item 5, #19's notice job): one JSON POST per plan, retried on
5xx and connection errors, not on a 4xx; an outbox on the plan that the sweeper drains, so a
kill between the plan's commit and the POST loses nothing; mocked with respx."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import respx
from huey import MemoryHuey
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.engine import make_session_factory
from app.db.models import Account, Csm, OnboardingPlan
from app.db.onboarding_store import create_plan_once
from app.domain.onboarding import build_plan
from app.jobs.tasks import JobQueue
from app.settings import Settings, WebhookSettings
from app.wiring import webhook_processing
from app.wiring.notices import RETRY, deliver_notice, send_onboarding_notices
from app.wiring.webhook_processing import ProcessingContext

URL = "https://chat.example.test/hooks/onboarding"


def plan(engine: Engine) -> int:
    with Session(engine) as s:
        csm = Csm(name="Ada", email="ada@cs.example", tiers=["high"])
        account = Account(name="Acme Oy", hs_id="512")
        s.add_all([csm, account])
        s.flush()
        row = OnboardingPlan(
            account_id=account.id,
            tier_at_close="high",
            started_on=date(2026, 12, 4),
            csm_id=csm.id,
            notice_status="pending",
            notice_due_at=utcnow(),
        )
        s.add(row)
        s.commit()
        return row.id


def settings(database_url: str, tmp_path: Path | None = None) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        webhooks=WebhookSettings(notice_url=URL, notice_attempts=3, notice_backoff_seconds=0),
        **({"data_dir": tmp_path} if tmp_path is not None else {}),
    )


def notice_of(engine: Engine, plan_id: int) -> tuple[str | None, int, str | None]:
    with Session(engine) as s:
        row = s.get(OnboardingPlan, plan_id)
        assert row is not None
        return row.notice_status, row.notice_attempts, row.notice_error


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
    assert notice_of(engine, plan_id) == ("sent", 1, None)
    # Sent: a second round (a repeated job message, the sweeper) sends nothing.
    assert (
        send_onboarding_notices(settings(database_url), make_session_factory(engine), [plan_id])
        == []
    )
    assert route.call_count == 3
    body = route.calls.last.request.read()

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
    assert notice_of(engine, plan_id) == ("failed", 1, "HTTP 400")  # refused: not retried
    plain = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    assert send_onboarding_notices(plain, factory, [plan_id]) == []


@respx.mock
def test_a_round_that_fails_leaves_the_notice_pending_for_a_later_round(
    engine: Engine, database_url: str
) -> None:
    plan_id = plan(engine)
    factory = make_session_factory(engine)
    route = respx.post(URL).mock(return_value=httpx.Response(503))
    config = settings(database_url)

    before = utcnow()
    assert deliver_notice(plan_id, settings=config, factory=factory, sleep=lambda _s: None) == (
        "pending"
    )
    assert route.call_count == 3  # one round: notice_attempts tries
    assert notice_of(engine, plan_id) == ("pending", 1, "HTTP 503")
    with Session(engine) as s:
        row = s.get(OnboardingPlan, plan_id)
        assert row is not None
        assert row.notice_due_at is not None
        assert row.notice_due_at >= before + RETRY  # not due again before the pause
    assert deliver_notice(plan_id, settings=config, factory=factory) == "not_due"
    assert route.call_count == 3

    with Session(engine) as s:  # the pause is over
        s.execute(update(OnboardingPlan).values(notice_due_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    route.mock(return_value=httpx.Response(204))
    assert deliver_notice(plan_id, settings=config, factory=factory) == "sent"
    assert notice_of(engine, plan_id) == ("sent", 2, None)


@respx.mock
def test_the_sweeper_sends_a_notice_left_pending_by_a_kill_after_the_commit(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan stored with its pending notice (as the closed-won job commits it) whose process
    died before the POST: the sweep enqueues the notice job, which sends it once."""
    factory = make_session_factory(engine)
    with Session(engine) as s:
        account = Account(name="Globex", hs_id="77")
        s.add(account)
        s.flush()
        decision = build_plan(
            "low", "new_business", date(2026, 12, 1), date(2026, 12, 1), handover=None
        )
        created = create_plan_once(
            s,
            account_id=account.id,
            opportunity_id=None,  # type: ignore[arg-type]
            decision=decision,
            notice_at=utcnow() - timedelta(minutes=10),
        )
        s.commit()
    plan_id = created.plan_id
    assert notice_of(engine, plan_id) == ("pending", 0, None)
    route = respx.post(URL).mock(return_value=httpx.Response(200))
    config = settings(database_url, tmp_path)
    # The job's handler runs with the worker's process-wide context: this test's database.
    monkeypatch.setattr(webhook_processing, "_default", ProcessingContext(config, factory))
    jobs = JobQueue(
        config,
        session_factory=factory,
        huey=MemoryHuey(immediate=True),  # the enqueued job runs inside the sweep
        periodic=False,
    )

    report = jobs.sweep()

    assert report.notices == [plan_id]
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.read())["account"]["name"] == "Globex"
    assert notice_of(engine, plan_id) == ("sent", 1, None)
    assert jobs.sweep().notices == []  # sent: nothing left to enqueue
    assert route.call_count == 1
