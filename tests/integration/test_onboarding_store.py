"""Onboarding plans in the database (domain.md 7): created once per opportunity under concurrent
calls, tasks marked, the exit criteria moving the account to adoption (stamped for the push)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import make_session_factory
from app.db.models import (
    Account,
    AccountEvent,
    Csm,
    OnboardingPlan,
    OnboardingTask,
    Opportunity,
    UsageSnapshot,
)
from app.db.onboarding_store import (
    close_plan,
    create_plan_once,
    list_plans,
    plan_view,
    set_task_status,
)
from app.domain.onboarding import build_plan

TODAY = datetime.now(UTC).date()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def make_deal(factory: sessionmaker[Session], *, seats: int = 20) -> tuple[int, int]:
    with factory() as s, s.begin():
        account = Account(name="Acme", arr=Decimal(30_000), licensed_seats=seats, tier="high")
        s.add(account)
        s.flush()
        opp = Opportunity(name="Acme new", account_id=account.id, is_closed=True, is_won=True)
        s.add(opp)
        s.flush()
        return account.id, opp.id


def decision(tier: Any = "high", d0: date = TODAY) -> Any:
    return build_plan(tier, "new_business", d0, TODAY, handover=None, deal_name="Acme new")


def test_created_once_then_found(factory: sessionmaker[Session]) -> None:
    account_id, opp_id = make_deal(factory)
    plan = decision()
    with factory() as s, s.begin():
        first = create_plan_once(
            s,
            account_id=account_id,
            opportunity_id=opp_id,
            decision=plan,
            assignees={"csm": "cara@example.com", "ae": "005AE"},
        )
    with factory() as s, s.begin():
        again = create_plan_once(s, account_id=account_id, opportunity_id=opp_id, decision=plan)
    assert first.created
    assert not again.created
    assert first.plan_id == again.plan_id
    with factory() as s:
        tasks = s.scalars(select(OnboardingTask).where(OnboardingTask.plan_id == first.plan_id))
        by_code = {t.code: t for t in tasks}
    assert len(by_code) == len(plan.tasks)
    assert by_code["welcome"].assignee == "cara@example.com"
    assert by_code["handover_complete"].assignee == "005AE"
    assert by_code["handover_complete"].detail is not None
    assert "No handover was found for Acme new" in by_code["handover_complete"].detail


def test_renewal_is_refused(factory: sessionmaker[Session]) -> None:
    account_id, opp_id = make_deal(factory)
    renewal = build_plan("high", "renewal", TODAY, TODAY, handover=None)
    with factory() as s, pytest.raises(ValueError, match="renewal"):
        create_plan_once(s, account_id=account_id, opportunity_id=opp_id, decision=renewal)


def test_concurrent_calls_create_one_plan(engine: Engine) -> None:
    """Two deliveries of one event handled at once: one plan, one set of tasks, the same id."""
    factory = make_session_factory(engine)
    account_id, opp_id = make_deal(factory)
    plan = decision()
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        try:
            barrier.wait()
            with factory() as s, s.begin():
                results.append(
                    create_plan_once(s, account_id=account_id, opportunity_id=opp_id, decision=plan)
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(results) == 8
    assert sum(r.created for r in results) == 1
    assert len({r.plan_id for r in results}) == 1
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(OnboardingPlan)) == 1
        assert s.scalar(select(func.count()).select_from(OnboardingTask)) == len(plan.tasks)


def test_rollback_leaves_nothing_and_a_retry_creates(factory: sessionmaker[Session]) -> None:
    """A processing killed before its commit leaves no plan and no task; the retry makes one."""
    account_id, opp_id = make_deal(factory)
    with factory() as s:
        s.begin()
        create_plan_once(s, account_id=account_id, opportunity_id=opp_id, decision=decision())
        s.rollback()
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(OnboardingTask)) == 0
    with factory() as s, s.begin():
        assert create_plan_once(
            s, account_id=account_id, opportunity_id=opp_id, decision=decision()
        ).created


def _plan_with_tasks(
    factory: sessionmaker[Session], tier: Any = "high", d0: date = TODAY
) -> tuple[int, int, dict[str, int]]:
    account_id, opp_id = make_deal(factory)
    with factory() as s, s.begin():
        account = s.get(Account, account_id)
        assert account is not None
        account.lifecycle_stage = "onboarding"
        created = create_plan_once(
            s, account_id=account_id, opportunity_id=opp_id, decision=decision(tier, d0)
        )
        tasks = dict(
            s.execute(
                select(OnboardingTask.code, OnboardingTask.id).where(
                    OnboardingTask.plan_id == created.plan_id
                )
            ).all()
        )
    return account_id, created.plan_id, tasks


def _usage(factory: sessionmaker[Session], account_id: int, active: int) -> None:
    with factory() as s, s.begin():
        s.add(
            UsageSnapshot(
                account_id=account_id,
                observed_on=TODAY - timedelta(days=1),
                active_users_30d=active,
                licensed_seats=20,
                logins_30d=100,
            )
        )


def test_exit_criteria_move_the_account_to_adoption(factory: sessionmaker[Session]) -> None:
    """7.4: go-live, first value, admin training done, CSAT sent, seats >= 50 % -> adoption,
    a CS-side write the push sends (stamped), and a lifecycle event."""
    account_id, _plan_id, tasks = _plan_with_tasks(factory)
    _usage(factory, account_id, active=10)
    for code in ("go_live", "first_value", "admin_training"):
        with factory() as s, s.begin():
            change = set_task_status(s, tasks[code], status="done", note=f"{code} ok")
            assert not change.adoption
            assert change.task.done_on == datetime.now(UTC).date()
    with factory() as s, s.begin():
        change = set_task_status(s, tasks["onboarding_csat"], status="done", note="sent")
        assert change.adoption
        assert change.view.plan.status == "completed"
        assert change.view.progress.exit_met
    with factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        assert account.lifecycle_stage == "adoption"
        assert account.cs_changed_at is not None
        assert set(account.field_stamps) >= {"lifecycle_stage", "lifecycle_entered_at"}
        event = s.scalars(select(AccountEvent).where(AccountEvent.account_id == account_id)).one()
        assert event.kind == "lifecycle_stage_entered"
        assert event.payload["stage"] == "adoption"
        task = s.get(OnboardingTask, tasks["go_live"])
        assert task is not None
        assert task.note == "go_live ok"
        assert task.status_changed_at


def test_seats_below_half_keep_onboarding(factory: sessionmaker[Session]) -> None:
    account_id, _plan_id, tasks = _plan_with_tasks(factory)
    _usage(factory, account_id, active=9)
    with factory() as s, s.begin():
        for code in ("go_live", "first_value", "admin_training", "onboarding_csat"):
            change = set_task_status(s, tasks[code], status="done", note=None)
    assert not change.adoption
    assert change.view.progress.exit_missing == ("active_seat_share",)
    with factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        assert account.lifecycle_stage == "onboarding"


def test_skipped_go_live_does_not_count_and_repeat_is_no_change(
    factory: sessionmaker[Session],
) -> None:
    account_id, _plan_id, tasks = _plan_with_tasks(factory)
    _usage(factory, account_id, active=20)
    with factory() as s, s.begin():
        set_task_status(s, tasks["go_live"], status="skipped", note="no go-live: pilot only")
        for code in ("first_value", "admin_training", "onboarding_csat"):
            set_task_status(s, tasks[code], status="done", note=None)
        again = set_task_status(
            s, tasks["go_live"], status="skipped", note="no go-live: pilot only"
        )
    assert not again.changed
    assert not again.adoption
    assert again.view.progress.exit_missing == ("go_live",)
    assert again.task.done_on is None


def test_close_by_hand(factory: sessionmaker[Session]) -> None:
    account_id, plan_id, _tasks = _plan_with_tasks(factory)
    with factory() as s, s.begin():
        view, adoption = close_plan(s, plan_id, reason="customer self-served")
    assert adoption
    assert view.plan.status == "closed"
    assert view.progress.exit_met
    with factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        assert account.lifecycle_stage == "adoption"


def test_overdue_filter(factory: sessionmaker[Session]) -> None:
    """7.4: past onboarding.max_days (high 90) the plan is overdue; not at 90."""
    _a, late, _t = _plan_with_tasks(factory, "high", TODAY - timedelta(days=91))
    _a, on_time, _t = _plan_with_tasks(factory, "high", TODAY - timedelta(days=90))
    _a, tech_late, _t = _plan_with_tasks(factory, "tech", TODAY - timedelta(days=31))
    with factory() as s:
        overdue = [v.plan.id for v in list_plans(s, today=TODAY, overdue=True)]
        not_overdue = [v.plan.id for v in list_plans(s, today=TODAY, overdue=False)]
        assert overdue == [late, tech_late]
        assert not_overdue == [on_time]
        assert plan_view(s, late, today=TODAY).progress.overdue
        assert not plan_view(s, on_time, today=TODAY).progress.overdue


def test_csm_filter(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        csm = Csm(name="Cara", email="cara@example.com")
        s.add(csm)
        s.flush()
        csm_id = csm.id
    _a, plan_id, _t = _plan_with_tasks(factory)
    _plan_with_tasks(factory)
    with factory() as s, s.begin():
        plan = s.get(OnboardingPlan, plan_id)
        assert plan is not None
        plan.csm_id = csm_id
    with factory() as s:
        views = list_plans(s, today=TODAY, csm_ids=[csm_id])
        assert [v.plan.id for v in views] == [plan_id]
        assert views[0].csm_email == "cara@example.com"
