"""The admin console in a real Chromium against a live ``crmsync serve --with-worker`` and the
sandbox (tests/browser/conftest.py): roles, a backfill from the form to ``succeeded``, an
error's payload and its retry, and a dead webhook replayed. Screenshots of each page."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select

from app.db.base import utcnow
from app.db.models import Account, AuditEntry, SyncErrorRecord, SyncRun, WebhookEvent
from tests.browser.conftest import ACCOUNTS, Live
from tests.integration.test_pull_pitfalls import sf_rest

if TYPE_CHECKING:
    from playwright.sync_api import Page

PageAs = Callable[[str], "Page"]
Shot = Callable[["Page", str], None]
#: Generous waits for a loaded machine; nothing here measures time.
WAIT_MS = 180_000


def audit(live: Live, action: str) -> list[tuple[str, str | None]]:
    with live.factory() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return [(a.actor, a.target) for a in rows]


def test_roles_decide_the_buttons_and_the_server_refuses_a_forged_post(
    page_as: PageAs, live: Live, shot: Shot
) -> None:
    viewer = page_as("viewer")
    viewer.wait_for_selector("#status-panel table")
    assert viewer.locator("time[data-local]").count() > 0  # shown in the browser's time zone
    shot(viewer, "status")
    viewer.goto("/console/runs")
    assert viewer.get_by_text("New backfill").count() == 0
    viewer.goto("/console/errors")
    assert viewer.get_by_role("button", name="Retry all filtered").count() == 0
    assert viewer.locator('a[href="/console/keys"]').count() == 0
    # A viewer's forged POST, with its own session and CSRF token: the server says no.
    token = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    forged = viewer.request.post(
        "/console/runs/new", form={"csrf_token": token, "crm": "salesforce"}
    )
    assert forged.status == 403
    assert "needs the operator role" in forged.text()
    no_csrf = viewer.request.post("/console/sign-out", form={"csrf_token": "forged"})
    assert no_csrf.status == 403
    with live.factory() as s:
        assert s.scalars(select(SyncRun)).all() == []

    operator = page_as("operator")
    operator.goto("/console/runs")
    assert operator.get_by_text("New backfill").count() == 1
    assert operator.locator('a[href="/console/keys"]').count() == 0

    admin = page_as("admin")
    admin.goto("/console/keys")
    admin.fill("input[name=name]", "browser-made")
    admin.select_option("select[name=role]", "viewer")
    admin.click("text=Create key")
    assert admin.locator("#new-key").inner_text().startswith("crmsync_")
    shot(admin, "keys")


def test_a_backfill_from_the_form_reaches_succeeded(
    page_as: PageAs, live: Live, shot: Shot
) -> None:
    page = page_as("operator")
    page.goto("/console/runs/new")
    page.select_option("select[name=crm]", "salesforce")
    page.fill("input[name=object]", "Account")
    page.click("text=Estimate API calls")
    page.wait_for_selector("#estimate")
    shot(page, "new-backfill")
    page.click("text=Start backfill")
    page.wait_for_url(re.compile(r".*/console/runs/\d+\?notice=.*"))
    run_id = int(page.url.split("/console/runs/")[1].split("?")[0])
    # htmx polls the run's panel until the run ends; the page itself is never reloaded.
    page.wait_for_selector('[data-run-status="succeeded"]', timeout=WAIT_MS)
    assert page.locator('[data-count="read"]').inner_text() == str(ACCOUNTS)
    with live.factory() as s:
        assert len(s.scalars(select(Account.sf_id)).all()) == ACCOUNTS
    shot(page, "run")
    page.goto("/console/runs")
    assert page.locator(f'a[href="/console/runs/{run_id}"]').count() == 1
    shot(page, "runs")
    assert audit(live, "sync_run.trigger") == [("key:browser-operator", f"sync_run:{run_id}")]


def test_an_errors_payload_opens_and_its_retry_resolves_it(
    page_as: PageAs, live: Live, shot: Shot
) -> None:
    """An open retriable error on a record the sandbox has: the retry re-reads it and syncs it."""
    record_id = _some_account_id(live)
    with live.factory() as s:
        row = SyncErrorRecord(
            crm="salesforce",
            object="Account",
            record_id=record_id,
            category="server_error",
            message="HTTP 503 while reading the record",
            payload={"Id": record_id, "attempt": "browser-test"},
            retriable=True,
            direction="pull",
            first_seen_at=utcnow(),
            last_seen_at=utcnow(),
        )
        s.add(row)
        s.commit()
        error_id = row.id
    page = page_as("operator")
    page.goto("/console/errors?crm=salesforce")
    row_el = page.locator(f"#error-{error_id}")
    row_el.locator("summary").click()
    assert "browser-test" in row_el.locator("pre").inner_text()
    shot(page, "errors")
    page.goto(f"/console/errors/{error_id}")
    shot(page, "error")
    page.get_by_role("button", name="Retry").click()
    page.wait_for_selector(".notice")
    assert "resolved" in page.locator(".notice").inner_text(), page.content()
    with live.factory() as s:
        assert s.get(SyncErrorRecord, error_id).resolved_at is not None  # type: ignore[union-attr]
    assert ("key:browser-operator", f"sync_error:{error_id}") in audit(live, "sync_error.retry")


def _some_account_id(live: Live) -> str:
    """The last Salesforce Account id the sandbox serves (asked from its REST API)."""
    query = "SELECT Id FROM Account ORDER BY Id DESC LIMIT 1"
    answer = sf_rest(live.sandbox, "GET", "query/", params={"q": query})
    return str(answer.json()["records"][0]["Id"])


def test_a_dead_webhook_is_replayed(page_as: PageAs, live: Live, shot: Shot) -> None:
    with live.factory() as s:
        event = WebhookEvent(
            source="hubspot",
            external_id="browser-dead-1",
            event_type="company.propertyChange",
            object_id="1",
            raw_body='[{"eventId": 1, "subscriptionType": "company.propertyChange"}]',
            headers={"X-HubSpot-Signature-v3": "do-not-show", "Content-Type": "application/json"},
            status="dead",
            attempts=8,
            last_error="HTTP 500",
            received_at=utcnow(),
        )
        s.add(event)
        s.commit()
        event_id = event.id
    page = page_as("operator")
    page.goto("/console/inbox?status=dead")
    assert page.locator(f"#event-{event_id}").count() == 1
    shot(page, "inbox")
    page.goto(f"/console/inbox/{event_id}")
    assert "do-not-show" not in page.content()
    assert "subscriptionType" in page.locator("#event-body").inner_text()
    shot(page, "event")
    page.get_by_role("button", name="Replay").click()
    page.wait_for_selector(".notice")
    assert f"event {event_id} replayed" in page.locator(".notice").inner_text()
    with live.factory() as s:
        replayed = s.get(WebhookEvent, event_id)
        assert replayed is not None
        assert replayed.attempts < 8
    assert audit(live, "webhook_event.replay") == [
        ("key:browser-operator", f"webhook_event:{event_id}")
    ]
