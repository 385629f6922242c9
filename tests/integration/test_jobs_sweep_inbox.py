"""The sweeper's backlog of inbox events in batch jobs: after an outage or a worker restart
many events are due at once; ``JobQueue.sweep`` enqueues them as ``crmsync.webhooks`` jobs of
``CRMSYNC_WEBHOOKS__BATCH_SIZE`` (the routes' size), and each event is still processed once.

The jobs run in huey's immediate mode (inside the sweep) with the worker's process-wide
processing context on this test's database, against the sandbox's HubSpot.
SQLite and PostgreSQL (the suite's database)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import timedelta
from itertools import count
from pathlib import Path

import pytest
from huey import MemoryHuey
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.engine import make_session_factory
from app.db.models import OnboardingPlan, Opportunity, WebhookEvent
from app.jobs.tasks import JobQueue
from app.settings import JobSettings
from app.wiring import webhook_processing
from app.wiring.webhook_processing import ProcessingContext
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.webhooks import (
    hubspot_api,
    hubspot_company_ids,
    sandbox_settings,
    seed_csms,
    store_closed_won,
)

_keys = count(1)
EVENTS = 250
BATCH = 50  # CRMSYNC_WEBHOOKS__BATCH_SIZE's default, set here so the count below is fixed


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=40, seed=31)) as sb:
        yield sb


def won_deals(sb: Sandbox, n: int) -> list[str]:
    """``n`` won new-business deals spread over the sandbox's companies (HubSpot creates at
    most 100 per batch call)."""
    companies = hubspot_company_ids(sb)
    deals: list[str] = []
    for start in range(0, n, 100):
        inputs = [
            {
                "properties": {
                    "dealname": f"sweep {next(_keys)}",
                    "amount": "9000",
                    "closedate": "2026-12-04T00:00:00.000Z",
                    "dealstage": "closedwon",
                    "pipeline": "default",
                    "dealtype": "newbusiness",
                },
                "associations": [
                    {
                        "to": {"id": companies[i % len(companies)]},
                        "types": [
                            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}
                        ],
                    }
                ],
            }
            for i in range(start, min(n, start + 100))
        ]
        made = hubspot_api(
            sb, "POST", "/crm/v3/objects/deals/batch/create", json={"inputs": inputs}
        )
        by_name = {r["properties"]["dealname"]: str(r["id"]) for r in made["results"]}
        deals.extend(by_name[i["properties"]["dealname"]] for i in inputs)
    return deals


def store_due(engine: Engine, deals: Sequence[str]) -> list[int]:
    """One closed-won event per deal, stored ten minutes ago and never attempted (the backlog a
    restart finds: past the sweeper's grace)."""
    return store_closed_won(engine, deals, now=utcnow() - timedelta(minutes=10))


def test_a_backlog_of_due_events_becomes_batch_jobs_and_each_event_is_processed_once(
    sandbox: Sandbox,
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_csms(engine)
    settings = sandbox_settings(
        sandbox, database_url, push_writebacks=False, batch_size=BATCH
    ).model_copy(update={"data_dir": tmp_path, "jobs": JobSettings(name="sweep-batch-test")})
    factory = make_session_factory(engine)
    deals = won_deals(sandbox, EVENTS - 1)
    ids = store_due(engine, [*deals, deals[0]])  # the first deal's close delivered twice
    assert len(ids) == EVENTS
    # The job's handler runs with the worker's process-wide context: this test's database.
    monkeypatch.setattr(webhook_processing, "_default", ProcessingContext(settings, factory))
    jobs = JobQueue(
        settings,
        session_factory=factory,
        huey=MemoryHuey(immediate=True),  # each enqueued job runs inside the sweep
        periodic=False,
    )
    batches: list[list[int]] = []
    send = jobs.enqueue_webhooks

    def enqueue_webhooks(event_ids: Sequence[int]) -> None:
        batches.append(list(event_ids))
        send(event_ids)

    monkeypatch.setattr(jobs, "enqueue_webhooks", enqueue_webhooks)
    monkeypatch.setattr(jobs, "enqueue_webhook", pytest.fail)  # never one job per event

    report = jobs.sweep()

    assert report.inbox_events == ids
    assert len(batches) == math.ceil(EVENTS / BATCH)
    assert all(len(b) <= BATCH for b in batches)
    assert sorted(i for b in batches for i in b) == sorted(ids)
    with Session(engine) as s:
        rows = s.execute(select(WebhookEvent.status, WebhookEvent.attempts)).all()
        assert sorted(set(rows)) == [("done", 1)], rows  # every event, one attempt
        plans = s.execute(
            select(Opportunity.hs_id, func.count(OnboardingPlan.id))
            .join(OnboardingPlan, OnboardingPlan.opportunity_id == Opportunity.id)
            .group_by(Opportunity.hs_id)
        ).all()
    assert sorted(str(d) for d, _ in plans) == sorted(deals)
    assert {n for _, n in plans} == {1}  # one plan per deal, the duplicate delivery included
    assert jobs.sweep().inbox_events == []  # nothing left due
