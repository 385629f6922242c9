"""The CS pages in a real Chromium against a live ``crmsync serve --with-worker`` and the sandbox
(tests/browser/conftest.py): open an account and see its chart and reasons; mark an onboarding
task done (audited as the signed-in key); the push preview's call count. Screenshots of each."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from app.db.models import (
    Account,
    AuditEntry,
    Csm,
    HealthSnapshot,
    OnboardingTask,
    UsageSnapshot,
)
from app.settings import Settings
from app.wiring.recompute import run_recompute
from tests.browser.conftest import Live
from tests.support.console import won_deal_plan

if TYPE_CHECKING:
    from playwright.sync_api import Page

PageAs = Callable[[str], "Page"]
Shot = Callable[["Page", str], None]
#: Generous waits for a loaded machine; nothing here measures time.
WAIT_MS = 180_000
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def cs(live: Live) -> dict[str, Any]:
    """A dormant account with a year of history (green, a gap, then yellow) and a recompute's
    reasons, and an onboarding plan that started 20 days ago (so with late tasks)."""
    with live.factory() as s, s.begin():
        csm = Csm(name="Cara Browser", email="cara.browser@example.com")
        s.add(csm)
        s.flush()
        account = Account(
            name="Chartwell Industries",
            domain="chartwell.example",
            arr=Decimal(150_000),
            licensed_seats=20,
            customer_since_on=TODAY - timedelta(days=700),
            contract_end_on=TODAY + timedelta(days=60),
            csm_id=csm.id,
        )
        s.add(account)
        s.flush()
        s.add(
            UsageSnapshot(
                account_id=account.id,
                observed_on=TODAY - timedelta(days=1),
                active_users_30d=0,
                logins_30d=0,
                licensed_seats=20,
                key_features_used_30d=0,
                key_features_defined=5,
            )
        )
        plan_id = won_deal_plan(
            s, account.id, TODAY - timedelta(days=20), csm_id=csm.id, deal="Chartwell deal"
        )
        account_id, csm_id = account.id, csm.id
    settings = Settings(_env_file=None, database_url=live.database_url)  # type: ignore[call-arg]
    run_recompute(settings, session_factory=live.factory, account_ids=[account_id])
    with live.factory() as s, s.begin():
        for n in range(330, 1, -1):
            if 120 <= n < 135:
                continue  # no recompute those days: a gap in the chart
            green = n > 135
            s.add(
                HealthSnapshot(
                    account_id=account_id,
                    computed_on=TODAY - timedelta(days=n),
                    computed_at=datetime.now(UTC),
                    score=78 if green else 52,
                    band="green" if green else "yellow",
                    coverage=90,
                    model_version="browser",
                )
            )
        late = s.scalars(
            select(OnboardingTask.id)
            .where(
                OnboardingTask.plan_id == plan_id,
                OnboardingTask.status == "open",
                OnboardingTask.due_on < TODAY,
            )
            .order_by(OnboardingTask.due_on, OnboardingTask.id)
        ).first()
    assert late is not None
    return {"account": account_id, "csm": csm_id, "plan": plan_id, "late_task": late}


def test_open_an_account_and_see_its_chart_and_reasons(
    page_as: PageAs, live: Live, cs: dict[str, Any], shot: Shot
) -> None:
    page = page_as("viewer")
    page.goto("/console/accounts")
    page.fill("input[name=q]", "chartw")
    page.click("text=Filter")
    page.wait_for_selector("table.accounts", timeout=WAIT_MS)
    shot(page, "accounts")
    page.click("text=Chartwell Industries")
    page.wait_for_url(f"**/console/accounts/{cs['account']}", timeout=WAIT_MS)
    chart = page.locator("[data-testid=health-chart] svg")
    chart.wait_for(timeout=WAIT_MS)
    assert chart.get_attribute("role") == "img"
    title = page.locator("[data-testid=health-chart] svg > title").text_content() or ""
    assert "Chartwell Industries" in title
    assert page.locator("[data-testid=health-chart] g.band-change").count() >= 1
    assert page.locator("[data-testid=health-chart] polyline.score-green").count() >= 1
    reasons = page.locator("[data-testid=reasons]").inner_text()
    assert "dormant" in reasons
    assert page.locator("meter").count() >= 1  # components with data as bars
    # a viewer sees the plan but no action button
    assert page.locator(f"[data-testid=plan-{cs['plan']}]").count() == 1
    assert page.get_by_role("button", name="Mark done").count() == 0
    shot(page, "account")


def test_mark_an_onboarding_task_done(
    page_as: PageAs, live: Live, cs: dict[str, Any], shot: Shot
) -> None:
    page = page_as("operator")
    page.goto(f"/console/onboarding?csm={cs['csm']}")
    row = page.locator(f"[data-testid=task-{cs['late_task']}]")
    row.wait_for(timeout=WAIT_MS)
    assert "late" in (row.get_attribute("class") or "")
    shot(page, "onboarding")
    row.get_by_role("button", name="Mark done").click()
    page.wait_for_selector(".notice[role=status]", timeout=WAIT_MS)
    assert "Task done" in page.locator(".notice[role=status]").inner_text()
    with live.factory() as s:
        task = s.get(OnboardingTask, cs["late_task"])
        assert task is not None
        assert task.status == "done"
        audit = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "onboarding_task.set")
        ).all()
    assert [(a.actor, a.target) for a in audit] == [
        ("key:browser-operator", f"onboarding_task:{cs['late_task']}")
    ]
    # the task is no longer offered
    assert (
        page.locator(f"[data-testid=task-{cs['late_task']}]")
        .get_by_role("button", name="Mark done")
        .count()
        == 0
    )


def test_push_preview_shows_the_exact_call_count(
    page_as: PageAs, live: Live, cs: dict[str, Any], shot: Shot
) -> None:
    page = page_as("operator")
    page.goto("/console/push?crm=hubspot")
    calls = page.locator("[data-testid=planned-calls]")
    calls.wait_for(timeout=WAIT_MS)
    key = live.keys["viewer"]
    api = page.request.get(
        "/api/v1/push/preview?crm=hubspot", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert int(calls.inner_text()) == api["planned_calls"]
    assert page.get_by_role("button", name="Confirm: start the push").count() == 1
    shot(page, "push-preview")
