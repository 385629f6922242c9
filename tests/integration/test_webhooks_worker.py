"""The inbox worker's contract (#20 item 2): claim once, retry with backoff, end ``dead`` with
the error, an admin retry, and the sweeper finding what a dead process left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.engine import make_session_factory
from app.db.enums import InboxStatus
from app.db.inbox_store import InboxRow, claim_many, insert_events, retry
from app.db.models import WebhookEvent
from app.settings import Settings, WebhookSettings
from app.wiring.closed_won import finish_event
from app.wiring.webhook_processing import (
    EmbeddedWorker,
    EventView,
    HandlerResult,
    ProcessingContext,
    process_inbox_event,
    sweep,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def context(engine: Engine, database_url: str, handler: object, clock: Clock) -> ProcessingContext:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        webhooks=WebhookSettings(max_attempts=3, backoff_seconds=10, lease_seconds=60),
    )
    return ProcessingContext(
        settings,
        make_session_factory(engine),
        handler=handler,
        clock=clock,  # type: ignore[arg-type]
    )


def store(engine: Engine, clock: Clock, *keys: str) -> list[int]:
    with Session(engine) as s:
        rows = [InboxRow("hubspot", k, "deal.propertyChange", "1", None, {"k": k}) for k in keys]
        stored = insert_events(s, rows, now=clock.now)
        s.commit()
    return stored.new_ids


def test_failures_back_off_then_end_dead_and_an_admin_retry_revives(
    engine: Engine, database_url: str
) -> None:
    clock = Clock()
    calls: list[int] = []

    def broken(event: EventView, ctx: ProcessingContext) -> HandlerResult:
        calls.append(event.id)
        raise RuntimeError("CRM down")

    ctx = context(engine, database_url, broken, clock)
    (event_id,) = store(engine, clock, "e1")
    assert process_inbox_event(event_id, ctx) == "failed"
    assert process_inbox_event(event_id, ctx) == "not_due"  # backoff: 10 s
    clock.now += timedelta(seconds=10)
    assert process_inbox_event(event_id, ctx) == "failed"
    clock.now += timedelta(seconds=19)
    assert sweep(ctx) == 0  # 20 s the second time
    clock.now += timedelta(seconds=1)
    assert sweep(ctx) == 1
    with Session(engine) as s:
        row = s.get(WebhookEvent, event_id)
        assert row is not None
        assert row.status == "dead"
        assert row.attempts == 3
        assert row.last_error == "RuntimeError: CRM down"
    assert len(calls) == 3
    assert sweep(ctx) == 0

    def fixed(event: EventView, c: ProcessingContext) -> HandlerResult:
        return finish_event(c, event.id, InboxStatus.DONE, "ok")

    ctx.handler = fixed
    with Session(engine) as s:
        assert retry(s, event_id, clock.now)
    assert process_inbox_event(event_id, ctx) == "done"
    assert process_inbox_event(event_id, ctx) == "not_due"  # done is final


def test_an_attempt_whose_worker_died_is_due_again_after_its_lease(
    engine: Engine, database_url: str
) -> None:
    clock = Clock()

    def ok(event: EventView, c: ProcessingContext) -> HandlerResult:
        return finish_event(c, event.id, InboxStatus.DONE, "ok")

    ctx = context(engine, database_url, ok, clock)
    (event_id,) = store(engine, clock, "e2")
    with Session(engine) as s:  # a worker claims it, then is killed
        assert claim_many(s, [event_id], clock.now, timedelta(seconds=60)) == [event_id]
    with Session(engine) as s:
        assert claim_many(s, [event_id], clock.now, timedelta(seconds=60)) == []  # held
    assert sweep(ctx) == 0
    clock.now += timedelta(seconds=60)
    assert sweep(ctx) == 1
    with Session(engine) as s:
        row = s.get(WebhookEvent, event_id)
        assert row is not None
        assert (row.status, row.attempts) == ("done", 2)


def test_embedded_worker_processes_what_it_is_told_and_what_it_sweeps(
    engine: Engine, database_url: str
) -> None:
    clock = Clock()
    seen: list[int] = []

    def ok(event: EventView, c: ProcessingContext) -> HandlerResult:
        seen.append(event.id)
        return finish_event(c, event.id, InboxStatus.DONE, "ok")

    ctx = context(engine, database_url, ok, clock)
    left_behind = store(engine, clock, *(f"old-{n}" for n in range(5)))
    worker = EmbeddedWorker(ctx, threads=2, sweep_seconds=0.1)
    worker.start()
    try:
        fresh = store(engine, clock, *(f"new-{n}" for n in range(5)))
        worker.notify(fresh)
        assert worker.run_until_idle(30)
    finally:
        worker.stop()
    assert sorted(seen) == sorted(left_behind + fresh)
