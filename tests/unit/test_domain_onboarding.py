"""Onboarding plans (domain.md 7.2-7.4): each table row's id names the section it checks."""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

import pytest

from app.domain.handover import HandoverFacts, check_handover
from app.domain.onboarding import (
    TaskState,
    build_plan,
    classify_deal,
    due_date,
    plan_progress,
    services_sold,
)
from app.mappers.handover import parse_handover

MON = date(2026, 12, 7)  # a Monday
FRI = date(2026, 12, 11)
SEED = """Handover: Acme
What was sold: Pro, 40 seats, EUR 30000 ARR
Term: 2026-12-01 to 2027-11-30, billed yearly, auto-renew yes
Primary contact: Ada Lovelace, VP Operations, ada@acme.test
Technical contact: Bob Stone, IT lead, bob@acme.test
Why they bought: replace shared drives
Special terms: none"""


def complete_for(tier: Any) -> Any:
    """A handover with every field, so task 1 is not in the plan."""
    body = SEED + (
        "\nServices sold: none\nSecondary contacts: Cy, Finance, cy@a.test\nChampion: Ada\n"
        "Decision maker: Dee\nExecutive sponsor: Eve\nGoals: g\nSuccess criteria: s\nFit: good\n"
        "Risks: r\nTimeline: t"
    )
    check = check_handover(HandoverFacts.from_columns(parse_handover(body).columns()), tier)
    assert check.status == "complete"
    return check


@pytest.mark.parametrize(
    ("type_", "stage", "kind"),
    [
        pytest.param("New Business", None, "new_business", id="7.3-salesforce-new-business"),
        pytest.param("newbusiness", "trial", "new_business", id="7.3-hubspot-newbusiness"),
        pytest.param(None, None, "new_business", id="7.3-no-type-is-new-business"),
        pytest.param("Renewal", "renewal", "renewal", id="7.3-renewal"),
        pytest.param("Renewal", "churned", "renewal", id="7.3-renewal-never-a-winback"),
        pytest.param("Expansion", "steady", "expansion", id="7.3-expansion"),
        pytest.param("existingbusiness", "steady", "expansion", id="7.3-hubspot-existingbusiness"),
        pytest.param("New Business", "churned", "winback", id="7.3-churned-account-winback"),
        pytest.param("Expansion", "churned", "winback", id="7.3-expansion-on-churned-winback"),
        pytest.param("New Business", "steady", "new_business", id="7.3-type-decides-by-default"),
    ],
)
def test_classify_deal(type_: str | None, stage: str | None, kind: str) -> None:
    assert classify_deal(type_, account_stage=stage) == kind


def test_classify_new_business_on_customer_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """7.3 "expansion (existing customer)": optional reading, `onboarding.` setting."""
    from app.settings import Settings

    for key in list(os.environ):
        if key.startswith("CRMSYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRMSYNC_SCORING__ONBOARDING__NEW_BUSINESS_ON_CUSTOMER_IS_EXPANSION", "1")
    cfg = Settings(_env_file=None).scoring.config  # type: ignore[call-arg]
    assert classify_deal("New Business", account_stage="adoption", cfg=cfg) == "expansion"
    assert classify_deal("New Business", account_stage=None, cfg=cfg) == "new_business"


@pytest.mark.parametrize(
    ("tier", "codes"),
    [
        pytest.param(
            "key",
            [
                "welcome",
                "internal_handover",
                "provision_accounts",
                "kickoff_meeting",
                "first_admin_login",
                "check_in_week_1",
                "success_plan",
                "admin_training",
                "exec_sponsor_intro",
                "user_training",
                "check_in_day_30",
                "backup_csm_intro",
                "go_live",
                "first_value",
                "goal_review_day_60",
                "onboarding_csat",
                "account_plan",
                "onboarding_close",
            ],
            id="7.2-key-plan",
        ),
        pytest.param(
            "high",
            [
                "welcome",
                "internal_handover",
                "provision_accounts",
                "kickoff_meeting",
                "first_admin_login",
                "check_in_week_1",
                "success_plan",
                "admin_training",
                "user_training",
                "go_live",
                "check_in_day_30",
                "first_value",
                "goal_review_day_60",
                "onboarding_csat",
                "onboarding_close",
            ],
            id="7.2-high-plan",
        ),
        pytest.param(
            "low",
            [
                "welcome",
                "provision_accounts",
                "intro_call",
                "first_admin_login",
                "check_in_week_1",
                "admin_training",
                "success_plan",
                "go_live",
                "first_value",
                "check_in_day_30",
                "goal_review_day_60",
                "onboarding_csat",
                "onboarding_close",
            ],
            id="7.2-low-plan",
        ),
        pytest.param(
            "tech",
            [
                "welcome",
                "provision_accounts",
                "first_admin_login",
                "admin_training",
                "check_in_week_1",
                "go_live",
                "first_value",
                "check_in_day_30",
                "onboarding_csat",
                "onboarding_close",
            ],
            id="7.2-tech-plan",
        ),
    ],
)
def test_full_plan_per_tier(tier: Any, codes: list[str]) -> None:
    """7.2: the tier's tasks in due order (no task 1 when the handover is complete, no 9-10
    when those services were not sold)."""
    plan = build_plan(tier, "new_business", MON, MON, handover=complete_for(tier))
    assert [t.code for t in plan.tasks] == codes
    assert plan.kind == "full"
    assert plan.lifecycle_stage == "onboarding"
    for task in plan.tasks:
        assert task.due_on == due_date(MON, task.offset_days, MON)[0]


@pytest.mark.parametrize(
    ("tier", "code", "due", "owner", "automated"),
    [
        pytest.param(
            "key", "internal_handover", MON + timedelta(2), "ae_csm", False, id="7.2-2-key-d2"
        ),
        pytest.param(
            "high", "internal_handover", MON + timedelta(3), "ae_csm", False, id="7.2-2-high-d3"
        ),
        pytest.param("key", "welcome", MON + timedelta(1), "csm", False, id="7.2-3-key-d1"),
        pytest.param("low", "welcome", MON + timedelta(1), "csm", True, id="7.2-3-low-auto"),
        pytest.param("tech", "welcome", MON, "csm", True, id="7.2-3-tech-d0-auto"),
        pytest.param(
            "low",
            "intro_call",
            MON + timedelta(7),
            "csm",
            False,
            id="7.2-5-low-d5-saturday-to-monday",
        ),
        pytest.param(
            "low", "success_plan", MON + timedelta(21), "csm_customer", False, id="7.2-6-low-d21"
        ),
        pytest.param("tech", "provision_accounts", MON, "cs_ops", True, id="7.2-7-tech-self"),
        pytest.param(
            "tech", "admin_training", MON + timedelta(7), "trainer", True, id="7.2-11-tech-course"
        ),
        pytest.param(
            "key", "user_training", MON + timedelta(30), "trainer", False, id="7.2-12-key-d30"
        ),
        pytest.param("key", "go_live", MON + timedelta(45), "csm", False, id="7.2-13-key-d45"),
        pytest.param(
            "high", "first_value", MON + timedelta(45), "csm", False, id="7.2-14-high-d45"
        ),
        pytest.param(
            "high",
            "onboarding_csat",
            MON + timedelta(77),
            "cs_ops",
            False,
            id="7.2-18-high-d75-sat-to-mon",
        ),
        pytest.param(
            "key",
            "onboarding_close",
            MON + timedelta(120),
            "csm",
            False,
            id="7.2-19-key-d120",
        ),
        pytest.param(
            "key",
            "backup_csm_intro",
            MON + timedelta(30),
            "backup_csm",
            False,
            id="7.2-21-key-d30",
        ),
    ],
)
def test_task_due_owner_automated(
    tier: Any, code: str, due: date, owner: str, automated: bool
) -> None:
    plan = build_plan(tier, "new_business", MON, MON, handover=complete_for(tier))
    task = next(t for t in plan.tasks if t.code == code)
    assert (task.due_on, task.owner_role, task.automated) == (due, owner, automated)


@pytest.mark.parametrize(
    ("d0", "offset", "processing", "due", "moved"),
    [
        pytest.param(FRI, 1, FRI, FRI + timedelta(3), "weekend", id="7.2-saturday-to-monday"),
        pytest.param(FRI, 2, FRI, FRI + timedelta(3), "weekend", id="7.2-sunday-to-monday"),
        pytest.param(FRI, 3, FRI, FRI + timedelta(3), "", id="7.2-monday-stays"),
        pytest.param(
            MON,
            7,
            MON + timedelta(10),
            MON + timedelta(11),
            "late",
            id="7.2-late-past-date-processing-plus-1",
        ),
        pytest.param(
            MON,
            14,
            MON + timedelta(10),
            MON + timedelta(14),
            "",
            id="7.2-late-future-date-keeps-offset",
        ),
        pytest.param(
            MON,
            2,
            MON + timedelta(2),
            MON + timedelta(2),
            "",
            id="7.2-late-due-on-processing-day-not-past",
        ),
        pytest.param(
            MON, 1, FRI, FRI + timedelta(3), "late", id="7.2-late-plus-1-on-saturday-to-monday"
        ),
        pytest.param(
            FRI,
            1,
            FRI + timedelta(3),
            FRI + timedelta(3),
            "weekend",
            id="7.2-weekend-moved-date-not-past-on-monday",
        ),
    ],
)
def test_due_dates(d0: date, offset: int, processing: date, due: date, moved: str) -> None:
    assert due_date(d0, offset, processing) == (due, moved)


def test_late_plan_keeps_offsets_from_d0() -> None:
    """7.2: a plan created late (replay) keeps offsets from D0; past dates become processing + 1."""
    processing = MON + timedelta(days=31)  # a Thursday
    plan = build_plan("high", "new_business", MON, processing, handover=complete_for("high"))
    assert plan.started_on == MON
    by_code = {t.code: t for t in plan.tasks}
    assert by_code["welcome"].due_on == processing + timedelta(1)
    assert by_code["welcome"].moved == "late"
    assert by_code["go_live"].due_on == processing + timedelta(1)  # D+30 already past
    assert by_code["first_value"].due_on == MON + timedelta(45)
    assert all(t.due_on > processing for t in plan.tasks)


@pytest.mark.parametrize(
    ("tier", "services", "codes"),
    [
        pytest.param(
            "key", ["SSO integration"], {"integrations"}, id="7.2-9-integrations-sold-key"
        ),
        pytest.param(
            "high", ["data migration"], {"data_migration"}, id="7.2-10-migration-sold-high"
        ),
        pytest.param(
            "low",
            ["data migration", "API integration"],
            {"data_migration"},
            id="7.2-9-not-in-low-plan",
        ),
        pytest.param("tech", ["data migration"], set(), id="7.2-10-not-in-tech-plan"),
        pytest.param("key", ["none"], set(), id="7.2-9-10-none-sold"),
        pytest.param("key", ["on-site training"], set(), id="7.2-9-10-other-service"),
    ],
)
def test_tasks_9_10_only_when_sold(tier: Any, services: list[str], codes: set[str]) -> None:
    plan = build_plan(
        tier,
        "new_business",
        MON,
        MON,
        handover=complete_for(tier),
        services=services_sold(services),
    )
    got = {t.code for t in plan.tasks} & {"integrations", "data_migration"}
    assert got == codes
    for task in plan.tasks:
        if task.code in codes:
            assert task.offset_days == 30


def test_integrations_needed_adds_task_9() -> None:
    """7.2 task 9: "if sold or needed"."""
    assert services_sold([], integrations_needed=True) == {"integrations"}


@pytest.mark.parametrize("tier", ["key", "high", "low", "tech"], ids=lambda t: f"7.2-1-{t}")
def test_handover_complete_task_when_fields_missing(tier: Any) -> None:
    """7.2 task 1 / 6.3: the rep's task, due D+2, lists the missing fields."""
    facts = HandoverFacts.from_columns(parse_handover("Handover: Acme\nFit: good").columns())
    check = check_handover(facts, tier)
    plan = build_plan(tier, "new_business", MON, MON, handover=check, deal_name="Acme")
    task = next(t for t in plan.tasks if t.code == "handover_complete")
    assert task.owner_role == "ae"
    assert task.due_on == MON + timedelta(2)
    assert task.detail is not None
    assert "Missing: What was sold" in task.detail
    assert "Acme" in task.detail


def test_no_handover_found_still_asks_for_it() -> None:
    plan = build_plan("low", "new_business", MON, MON, handover=None, deal_name="Acme")
    task = next(t for t in plan.tasks if t.code == "handover_complete")
    assert task.detail is not None
    assert "No handover was found for Acme" in task.detail


def test_renewal_starts_no_onboarding() -> None:
    """7.3: renewal won -> no onboarding plan (the renewal fields are updated by the caller)."""
    plan = build_plan("key", "renewal", MON, MON, handover=None)
    assert plan.kind is None
    assert plan.tasks == ()
    assert not plan.starts_onboarding
    assert plan.lifecycle_stage is None
    assert "renewal" in plan.reason


def test_winback_gets_the_full_plan() -> None:
    """7.3: winback of a churned account: the full plan of its tier."""
    winback = build_plan("high", "winback", MON, MON, handover=complete_for("high"))
    new = build_plan("high", "new_business", MON, MON, handover=complete_for("high"))
    assert winback.tasks == new.tasks
    assert winback.kind == "full"
    assert winback.lifecycle_stage == "onboarding"


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        pytest.param(
            "high",
            [
                ("expansion_kickoff", MON + timedelta(7), False),
                ("new_user_training", MON + timedelta(14), False),
            ],
            id="7.3-expansion-kickoff-d7-training-d14",
        ),
        pytest.param(
            "tech",
            [("new_user_training", MON + timedelta(14), True)],
            id="7.3-expansion-tech-in-app-only",
        ),
    ],
)
def test_expansion_plan(tier: Any, expected: list[tuple[str, date, bool]]) -> None:
    plan = build_plan(tier, "expansion", MON, MON, handover=complete_for(tier))
    assert [(t.code, t.due_on, t.automated) for t in plan.tasks] == expected
    assert plan.kind == "expansion"
    assert plan.lifecycle_stage is None


def test_plan_offsets_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """10 `onboarding.plans`: one tier's offset changes, the rest keep domain.md's table."""
    from app.settings import Settings

    for key in list(os.environ):
        if key.startswith("CRMSYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRMSYNC_SCORING__ONBOARDING__PLANS__KICKOFF_MEETING__DAYS__KEY", "4")
    monkeypatch.setenv("CRMSYNC_SCORING__ONBOARDING__SKIP_WEEKENDS", "false")
    cfg = Settings(_env_file=None).scoring.config  # type: ignore[call-arg]
    plan = build_plan("key", "new_business", MON, MON, handover=complete_for("key"), cfg=cfg)
    by_code = {t.code: t for t in plan.tasks}
    assert by_code["kickoff_meeting"].due_on == MON + timedelta(4)
    assert by_code["onboarding_close"].due_on == MON + timedelta(120)  # a Sunday, kept


def state(status: dict[str, str], tier: Any = "high") -> list[TaskState]:
    plan = build_plan(tier, "new_business", MON, MON, handover=complete_for(tier))
    return [TaskState(t.code, status.get(t.code, "open"), t.due_on) for t in plan.tasks]  # type: ignore[arg-type]


EXIT_DONE = {
    "go_live": "done",
    "first_value": "done",
    "admin_training": "done",
    "onboarding_csat": "done",
}


@pytest.mark.parametrize(
    ("status", "kw", "met", "missing"),
    [
        pytest.param(EXIT_DONE, {"active_seat_share": 0.5}, True, (), id="7.4-all-criteria-met"),
        pytest.param(
            EXIT_DONE,
            {"active_seat_share": 0.49},
            False,
            ("active_seat_share",),
            id="7.4-seats-below-half",
        ),
        pytest.param(
            {**EXIT_DONE, "go_live": "skipped"},
            {"active_seat_share": 0.9},
            False,
            ("go_live",),
            id="7.4-skipped-go-live-is-not-done",
        ),
        pytest.param(
            {**EXIT_DONE, "onboarding_csat": "open"},
            {"active_seat_share": 0.9},
            False,
            ("onboarding_csat",),
            id="7.4-csat-must-be-sent",
        ),
        pytest.param({}, {"closed_by_hand": True}, True, (), id="7.4-closed-by-hand"),
    ],
)
def test_exit_criteria(
    status: dict[str, str], kw: dict[str, Any], met: bool, missing: tuple[str, ...]
) -> None:
    p = plan_progress(
        state(status), kind="full", tier="high", started_on=MON, today=MON + timedelta(40), **kw
    )
    assert (p.exit_met, p.exit_missing) == (met, missing)


@pytest.mark.parametrize(
    ("wau", "met"),
    [
        pytest.param(1, True, id="7.4-tech-one-weekly-active-user"),
        pytest.param(0, False, id="7.4-tech-none-active"),
    ],
)
def test_exit_criteria_tech(wau: int, met: bool) -> None:
    p = plan_progress(
        state(EXIT_DONE, "tech"),
        kind="full",
        tier="tech",
        started_on=MON,
        today=MON,
        weekly_active_users=wau,
    )
    assert p.exit_met is met


@pytest.mark.parametrize(
    ("tier", "days", "overdue"),
    [
        pytest.param("key", 120, False, id="7.4-key-day-120-not-overdue"),
        pytest.param("key", 121, True, id="7.4-key-day-121-overdue"),
        pytest.param("high", 91, True, id="7.4-high-past-90"),
        pytest.param("low", 60, False, id="7.4-low-day-60"),
        pytest.param("tech", 31, True, id="7.4-tech-past-30"),
    ],
)
def test_overdue_past_max_days(tier: Any, days: int, overdue: bool) -> None:
    p = plan_progress(
        state({}, tier), kind="full", tier=tier, started_on=MON, today=MON + timedelta(days)
    )
    assert p.overdue is overdue


def test_progress_counts() -> None:
    tasks = state({"welcome": "done", "internal_handover": "skipped"})
    p = plan_progress(tasks, kind="full", tier="high", started_on=MON, today=MON + timedelta(5))
    assert (p.total, p.done, p.skipped, p.open) == (15, 1, 1, 13)
    assert p.percent == 13  # 2 / 15, rounded down
    assert p.late_tasks == ("provision_accounts",)  # due D+3, open on D+5
    assert not p.complete


def test_expansion_plan_has_no_exit_or_overdue() -> None:
    plan = build_plan("high", "expansion", MON, MON, handover=complete_for("high"))
    tasks = [TaskState(t.code, "done", t.due_on) for t in plan.tasks]
    p = plan_progress(
        tasks, kind="expansion", tier="high", started_on=MON, today=MON + timedelta(400)
    )
    assert p.complete
    assert not p.overdue
    assert not p.exit_met
