"""The console's CS pages (app/console/pages/{accounts,onboarding,push_preview}.py) over HTTP on
the test database (SQLite or PostgreSQL): what they show, what a viewer and an operator may do,
CSRF, and that actions go through the API's functions (audited as the signed-in key)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import (
    Account,
    AuditEntry,
    Csm,
    HealthSnapshot,
    OnboardingTask,
    SyncRun,
    UsageSnapshot,
)
from app.main import create_app
from app.settings import Settings
from app.wiring.recompute import run_recompute
from tests.support.api import api_client
from tests.support.console import console_client, csrf_token, won_deal_plan

TODAY = datetime.now(UTC).date()


def _settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,
        hubspot_base_url="https://127.0.0.1:9",  # never called: previews read the database
        hubspot_access_token="pat-test",
        webhooks={"embedded_worker": False},
    )


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    return create_app(_settings(database_url, tmp_path))


@pytest.fixture
def data(app: FastAPI, database_url: str, tmp_path: Path) -> dict[str, Any]:
    """Six recomputed accounts (two of Cara's), a year of snapshots for the first with a band
    change and a gap, and an onboarding plan with a late task for the second."""
    factory = app.state.session_factory
    with factory() as s, s.begin():
        cara = Csm(name="Cara", email="cara@example.com")
        s.add(cara)
        s.flush()
        ids = []
        for i, (name, domain) in enumerate(
            [
                ("Acme Corp", "acme.com"),
                ("Beta Labs", "beta.io"),
                ("Gamma", "gamma.example"),
                ("Delta", None),
                ("Acme Twin", "twin.example"),
                ("Epsilon", "eps.example"),
            ]
        ):
            a = Account(
                name=name,
                domain=domain,
                arr=Decimal([150_000, 30_000, 10_000, 2_000][i % 4]),
                licensed_seats=20,
                customer_since_on=TODAY - timedelta(days=500),
                contract_end_on=TODAY + timedelta(days=[40, 120, 300][i % 3]),
                csm_id=cara.id if i < 2 else None,
            )
            s.add(a)
            s.flush()
            ids.append(a.id)
            s.add(
                UsageSnapshot(
                    account_id=a.id,
                    observed_on=TODAY - timedelta(days=1),
                    active_users_30d=0 if i == 0 else 18,
                    logins_30d=0 if i == 0 else 200,
                    licensed_seats=20,
                    key_features_used_30d=4,
                    key_features_defined=5,
                )
            )
        plan = won_deal_plan(s, ids[1], TODAY - timedelta(days=20), csm_id=cara.id)
        csm_id = cara.id
    run_recompute(_settings(database_url, tmp_path), session_factory=factory)
    with factory() as s, s.begin():
        # a year of history for Acme: green, a gap of 10 days, then yellow; one unknown day
        for n in range(300, 0, -1):
            if 100 <= n < 110:
                continue
            band = "green" if n > 110 else "yellow"
            band = "unknown" if n == 50 else band
            s.add(
                HealthSnapshot(
                    account_id=ids[0],
                    computed_on=TODAY - timedelta(days=n),
                    computed_at=datetime.now(UTC),
                    score=80 if band == "green" else 55,
                    band=band,
                    coverage=90,
                    model_version="test",
                )
            )
        tasks = s.scalars(
            select(OnboardingTask).where(OnboardingTask.plan_id == plan).order_by(OnboardingTask.id)
        ).all()
        late = [t.id for t in tasks if t.due_on < TODAY and t.status == "open"]
    assert late, "the plan started 20 days ago has late tasks"
    return {"accounts": ids, "csm": csm_id, "plan": plan, "late_task": late[0]}


@pytest.fixture
def viewer(app: FastAPI) -> Iterator[TestClient]:
    with console_client(app, "viewer", name="watcher") as client:
        yield client


@pytest.fixture
def operator(app: FastAPI) -> Iterator[TestClient]:
    with console_client(app, "operator", name="fixer") as client:
        yield client


def _rows(html: str) -> list[str]:
    """The account names of a list page, in order."""
    return re.findall(r'<a href="/console/accounts/\d+">([^<]+)</a>', html)


def _audit(app: FastAPI, action: str) -> list[AuditEntry]:
    with app.state.session_factory() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# --- accounts --------------------------------------------------------------------------------


def test_list_filters_search_and_pages_like_the_api(
    app: FastAPI, viewer: TestClient, data: dict[str, Any]
) -> None:
    page = viewer.get("/console/accounts")
    assert page.status_code == 200
    assert _rows(page.text) == [
        "Acme Corp", "Beta Labs", "Gamma", "Delta", "Acme Twin", "Epsilon"
    ]  # fmt: skip
    assert _rows(viewer.get("/console/accounts?q=ACME").text) == ["Acme Corp", "Acme Twin"]
    assert _rows(viewer.get("/console/accounts?q=beta.io").text) == ["Beta Labs"]
    assert _rows(viewer.get(f"/console/accounts?csm_id={data['csm']}").text) == [
        "Acme Corp",
        "Beta Labs",
    ]
    with api_client(app, "viewer") as api:
        for params in ({"tier": "key"}, {"band": "green"}, {"renewal_window": "in_window"}):
            expected = [
                i["name"] for i in api.get("/api/v1/accounts", params=params).json()["items"]
            ]
            assert _rows(viewer.get("/console/accounts", params=params).text) == expected
    # server paging: 50 a page; with 60 more accounts the next page link carries the cursor
    with app.state.session_factory() as s, s.begin():
        s.add_all(Account(name=f"Zed {i:02d}") for i in range(60))
    first = viewer.get("/console/accounts")
    assert len(_rows(first.text)) == 50
    link = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert link
    second = viewer.get(link.group(1).replace("&amp;", "&"))
    assert len(_rows(second.text)) == 16
    assert not set(_rows(first.text)) & set(_rows(second.text))


def test_a_bad_filter_shows_the_apis_message_next_to_its_field(
    viewer: TestClient, data: dict[str, Any]
) -> None:
    page = viewer.get("/console/accounts?band=purple")
    assert page.status_code == 422
    assert 'id="err-band"' in page.text
    assert 'aria-invalid="true"' in page.text
    bad_cursor = viewer.get("/console/accounts?cursor=nope")
    assert bad_cursor.status_code == 422
    assert "not a cursor" in bad_cursor.text


def test_account_page_has_score_components_reasons_renewal_chart_and_plan(
    viewer: TestClient, data: dict[str, Any]
) -> None:
    page = viewer.get(f"/console/accounts/{data['accounts'][0]}")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="health-score"' in html
    assert "<strong>dormant</strong>" in html  # the reason code, with its text
    assert "<strong>usage</strong>" in html
    assert "active_users_30d = 0" in html  # a component's inputs
    assert "<meter" in html
    assert "Loyalty type" in html
    assert "Risk" in html
    svg = re.search(r"<svg .*?</svg>", html, re.S)
    assert svg
    assert "Health score of Acme Corp, last 12 months" in svg.group(0)
    assert 'class="band-change"' in svg.group(0)
    assert "green \u2192 yellow" in svg.group(0)
    # the plan shows on its account's page, late task first
    beta = viewer.get(f"/console/accounts/{data['accounts'][1]}").text
    assert f'data-testid="plan-{data["plan"]}"' in beta
    rows = re.findall(r'<tr class="(late)?" data-testid="task-(\d+)"', beta)
    assert rows[0] == ("late", str(data["late_task"]))
    assert viewer.get("/console/accounts/999999").status_code == 404


# --- onboarding ------------------------------------------------------------------------------


def test_onboarding_by_csm_late_first_viewer_has_no_button_and_a_forged_post_is_403(
    app: FastAPI, viewer: TestClient, data: dict[str, Any]
) -> None:
    page = viewer.get("/console/onboarding")
    assert page.status_code == 200
    assert "cara@example.com" in page.text
    assert "Mark done" not in page.text
    assert "/console/onboarding/tasks/" not in page.text
    forged = viewer.post(
        f"/console/onboarding/tasks/{data['late_task']}/done",
        data={"csrf_token": csrf_token(viewer)},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    with app.state.session_factory() as s:
        assert s.get(OnboardingTask, data["late_task"]).status == "open"  # type: ignore[union-attr]


def test_onboarding_late_plans_come_first_across_pages(
    app: FastAPI, viewer: TestClient, data: dict[str, Any]
) -> None:
    """The late plan is the newest of more plans than a page holds, yet it is on the first
    page (the API's ``order=due``), and the pages together list every plan once."""
    from app.console.pages.onboarding import PAGE_SIZE

    with app.state.session_factory() as s, s.begin():
        for i in range(PAGE_SIZE + 5):
            account = Account(name=f"Fresh {i:02d}")
            s.add(account)
            s.flush()
            won_deal_plan(s, account.id, TODAY)
        account = Account(name="Very Late")
        s.add(account)
        s.flush()
        newest = won_deal_plan(s, account.id, TODAY - timedelta(days=40))
    assert newest > data["plan"]
    first = viewer.get("/console/onboarding")
    assert first.status_code == 200
    plans = [int(p) for p in re.findall(r'data-testid="plan-(\d+)"', first.text)]
    assert len(plans) == PAGE_SIZE
    assert newest in plans
    assert data["plan"] in plans  # the fixture's plan has late tasks too
    link = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert link
    second = viewer.get(link.group(1).replace("&amp;", "&"))
    more = [int(p) for p in re.findall(r'data-testid="plan-(\d+)"', second.text)]
    assert len(more) == PAGE_SIZE + 5 + 2 - PAGE_SIZE
    assert not set(plans) & set(more)
    assert "late</strong>" not in second.text  # every late plan was on the first page


def test_operator_marks_a_task_done_through_the_api_function_audited_as_the_key(
    app: FastAPI, operator: TestClient, data: dict[str, Any]
) -> None:
    page = operator.get(f"/console/onboarding?csm={data['csm']}")
    assert "Mark done" in page.text
    task = data["late_task"]
    no_token = operator.post(f"/console/onboarding/tasks/{task}/done", follow_redirects=False)
    assert no_token.status_code == 403
    done = operator.post(
        f"/console/onboarding/tasks/{task}/done",
        data={
            "csrf_token": csrf_token(operator),
            "next": f"/console/accounts/{data['accounts'][1]}?notice=old",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith(f"/console/accounts/{data['accounts'][1]}?notice=Task+done")
    assert "old" not in location
    with app.state.session_factory() as s:
        row = s.get(OnboardingTask, task)
        assert row is not None
        assert (row.status, row.done_on) == ("done", TODAY)
    audit = _audit(app, "onboarding_task.set")
    assert [(e.actor, e.target) for e in audit] == [("key:fixer", f"onboarding_task:{task}")]
    # an unknown task: the API's 404 as an error notice; an outside next is not followed
    missing = operator.post(
        "/console/onboarding/tasks/999999/done",
        data={"csrf_token": csrf_token(operator), "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert missing.headers["location"].startswith("/console/?error=Task+999999")


# --- push preview ----------------------------------------------------------------------------


def test_push_preview_shows_old_new_and_the_apis_exact_call_count(
    app: FastAPI, viewer: TestClient, data: dict[str, Any]
) -> None:
    with api_client(app, "viewer") as api:
        expected = api.get("/api/v1/push/preview", params={"crm": "hubspot"}).json()
    page = viewer.get("/console/push?crm=hubspot")
    assert page.status_code == 200
    calls = re.search(r'data-testid="planned-calls">(\d+)<', page.text)
    assert calls
    assert int(calls.group(1)) == expected["planned_calls"]
    records = sum(o["planned_records"] for o in expected["objects"])
    assert records > 0, "the recompute's changes are to be pushed"
    assert f"would write <strong>{records}</strong>" in page.text
    assert 'class="old"' in page.text
    assert 'class="new"' in page.text
    assert "Confirm: start the push" not in page.text  # a viewer
    bad = viewer.get("/console/push?crm=salesforce")  # not configured here
    assert bad.status_code == 422
    assert 'id="err-crm"' in bad.text


def test_push_preview_is_server_paginated_with_the_whole_pushs_call_count(
    app: FastAPI, viewer: TestClient, data: dict[str, Any]
) -> None:
    """A page lists PAGE_SIZE records per object; every page shows the whole push's exact call
    count and record count; next / previous links walk the pages, each record listed once."""
    from app.console.pages.push_preview import PAGE_SIZE

    now = datetime.now(UTC)
    with app.state.session_factory() as s, s.begin():
        s.add_all(
            Account(
                name=f"Pushed {i:03d}",
                hs_id=str(90_000 + i),
                health_score=40 + i % 50,
                cs_changed_at=now,
                field_stamps={"health_score": now.isoformat()},
            )
            for i in range(2 * PAGE_SIZE + 7)
        )
    with api_client(app, "viewer") as api:
        whole = api.get("/api/v1/push/preview", params={"crm": "hubspot", "limit": 10_000}).json()
    records = sum(o["planned_records"] for o in whole["objects"])
    longest = max(o["planned_records"] for o in whole["objects"])
    assert longest > 2 * PAGE_SIZE
    expected_ids = [r["row_id"] for o in whole["objects"] for r in o["records"]]
    seen: list[int] = []
    url: str | None = "/console/push?crm=hubspot"
    pages = 0
    while url:
        page = viewer.get(url)
        assert page.status_code == 200
        pages += 1
        calls = re.search(r'data-testid="planned-calls">(\d+)<', page.text)
        assert calls
        assert int(calls.group(1)) == whole["planned_calls"]
        assert f"would write <strong>{records}</strong>" in page.text
        shown = [
            int(i)
            for i in re.findall(r'data-testid="push-record">\s*<td[^>]*>\w+ #(\d+)', page.text)
        ]
        assert 0 < len(shown) <= PAGE_SIZE * len(whole["objects"])
        seen += shown
        if pages > 1:
            assert 'rel="prev"' in page.text
        link = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = link.group(1).replace("&amp;", "&") if link else None
    assert pages == -(-longest // PAGE_SIZE)
    assert sorted(seen) == sorted(expected_ids)
    assert len(seen) == len(set(seen))
    bad = viewer.get("/console/push?crm=hubspot&page=zero")
    assert bad.status_code == 422
    assert 'id="err-page"' in bad.text


def test_confirm_queues_a_push_run_audited_as_the_key_and_a_viewer_gets_403(
    app: FastAPI, viewer: TestClient, operator: TestClient, data: dict[str, Any]
) -> None:
    forged = viewer.post(
        "/console/push", data={"csrf_token": csrf_token(viewer), "crm": "hubspot"},
        follow_redirects=False,
    )  # fmt: skip
    assert forged.status_code == 403
    assert "Confirm: start the push" in operator.get("/console/push?crm=hubspot").text
    no_token = operator.post("/console/push", data={"crm": "hubspot"}, follow_redirects=False)
    assert no_token.status_code == 403
    bad = operator.post(
        "/console/push",
        data={"csrf_token": csrf_token(operator), "crm": "hubspot", "object": "nope"},
        follow_redirects=False,
    )
    assert bad.status_code == 422
    assert 'id="err-object"' in bad.text
    with app.state.session_factory() as s:
        assert not s.scalars(select(SyncRun).where(SyncRun.kind == "push")).all()
    ok = operator.post(
        "/console/push",
        data={"csrf_token": csrf_token(operator), "crm": "hubspot"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert ok.headers["location"].startswith(
        f"/console/runs/{runs_first(app)}?notice=Push+queued+as+run"
    )
    with app.state.session_factory() as s:
        runs = s.scalars(select(SyncRun).where(SyncRun.kind == "push")).all()
    assert runs
    assert {(r.kind, r.crm, r.status) for r in runs} == {("push", "hubspot", "queued")}
    audit = _audit(app, "sync_run.trigger")
    assert {e.actor for e in audit} == {"key:fixer"}
    assert len(audit) == len(runs)


def test_pages_need_a_session(app: FastAPI, data: dict[str, Any]) -> None:
    with TestClient(app) as anonymous:
        for path in ("/console/accounts", f"/console/accounts/{data['accounts'][0]}",
                     "/console/onboarding", "/console/push"):  # fmt: skip
            answer = anonymous.get(path, follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/sign-in?next=")


def runs_first(app: FastAPI) -> int:
    """The first queued push run's id (the confirm redirects to its page)."""
    with app.state.session_factory() as s:
        first = s.scalars(select(SyncRun.id).where(SyncRun.kind == "push").order_by(SyncRun.id))
        return int(first.first() or 0)
