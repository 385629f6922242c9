"""A backfill command killed and run again, and cursors that must not move into the future.

Through the engine on the test database (SQLite or PostgreSQL) with an in-memory CRM that can be
"killed" mid-stream: the command is emulated as app/wiring/sync.py runs it (plan_backfill, then
backfill() per object, parents first), a kill stops the whole command like a dead process.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus, SyncKind
from app.crm.base import ReadFrom, RecordPage
from app.db.engine import make_session_factory
from app.db.models import Account, Opportunity, SyncCursor
from app.db.sync_store import SqlSyncStore
from app.mappers.defaults import salesforce_mappings
from app.settings import SyncSettings
from app.sync.backfill import BackfillConflictError
from app.sync.cursor import CursorState
from app.sync.pull import PullEngine, PullResult
from tests.integration.test_pull_engine import T0, account, count, opportunity
from tests.support.fake_crm import FakeSalesforce

OBJECTS = ("Account", "Opportunity", "Note")
NOW = T0 + timedelta(days=1)
MINUTES = itertools.count()


class Killed(BaseException):
    """The process died (kill -9): nothing after it runs, no run is closed."""


class KillableSalesforce(FakeSalesforce):
    """Dies when asked for page number ``kill_at`` (counted over all objects)."""

    def __init__(self) -> None:
        super().__init__()
        self.kill_at: int | None = None

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        for page in super().iter_changes(
            object_name, fields, start, page_size=page_size, use_bulk=use_bulk
        ):
            if self.kill_at is not None and self.pages_served >= self.kill_at:
                raise Killed
            yield page


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def crm() -> KillableSalesforce:
    fake = KillableSalesforce()
    for n in range(1, 1001):
        fake.put("Account", account(n, T0 + timedelta(seconds=n)))
        fake.put("Opportunity", opportunity(n, n, T0 + timedelta(seconds=n)))
    return fake


def command(
    factory: sessionmaker[Session],
    crm: FakeSalesforce,
    *,
    since: datetime | None = None,
    restart: bool = False,
    objects: Sequence[str] = OBJECTS,
) -> dict[str, PullResult]:
    """``crmsync sync backfill --crm salesforce`` as a fresh process runs it, a minute later."""
    started = NOW + timedelta(minutes=next(MINUTES))
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    settings = SyncSettings(page_size=200, lookback_seconds=0)
    engine = PullEngine(SqlSyncStore(factory), crm, mappings, settings, clock=lambda: started)
    engine.plan_backfill(list(objects), since=since, restart=restart)
    return {o: engine.backfill(o) for o in objects}


def cursor(factory: sessionmaker[Session], object_name: str, stream: str) -> SyncCursor | None:
    with factory() as s:
        return s.scalars(
            select(SyncCursor).where(SyncCursor.object == object_name, SyncCursor.stream == stream)
        ).one_or_none()


@pytest.mark.parametrize("kill_at", [6, 8], ids=["between objects", "inside opportunities"])
def test_a_killed_backfill_resumes_at_the_first_unfinished_object(
    factory: sessionmaker[Session], crm: KillableSalesforce, kill_at: int
) -> None:
    # Accounts are pages 1-5, opportunities 6-10 (200 each); the kill_at-th page is not committed.
    crm.kill_at = kill_at
    with pytest.raises(Killed):
        command(factory, crm)
    assert count(factory, Account) == 1000
    committed = count(factory, Opportunity)
    assert committed == (kill_at - 6) * 200

    crm.kill_at = None
    crm.calls = 0
    rerun = command(factory, crm)
    accounts, opportunities = rerun["Account"], rerun["Opportunity"]
    # Finished accounts are not read again: no run, no API call, reported as already complete.
    assert accounts.run_id is None
    assert (accounts.counts.read, accounts.counts.api_calls) == (0, 0)
    assert accounts.summary()["backfill"]["step"] == "already_complete"
    assert opportunities.status is RunStatus.SUCCEEDED
    assert opportunities.counts.read == 1000 - committed  # from its last committed page
    assert opportunities.summary()["backfill"]["step"] == ("resume" if committed else "start")
    # the missing pages only: the count comes with the first page, not as a call of its own
    assert crm.calls == (1000 - committed) // 200
    assert count(factory, Opportunity) == 1000
    assert count(factory, Opportunity, Opportunity.account_id.is_(None)) == 0
    generation = accounts.summary()["backfill"]["generation"]
    assert opportunities.summary()["backfill"]["generation"] == generation

    # Complete now: the same command again begins a new backfill, reading everything.
    again = command(factory, crm)
    assert again["Account"].counts.read == 1000
    assert again["Account"].summary()["backfill"]["step"] == "start"
    assert again["Account"].summary()["backfill"]["generation"] != generation


def test_kills_spaced_like_the_rereads_still_finish(
    factory: sessionmaker[Session], crm: KillableSalesforce
) -> None:
    """Killed every 4 pages, the old backfill re-read the finished objects and never ended."""
    lives = 0
    for _ in range(10):
        lives += 1
        crm.pages_served = 0
        crm.kill_at = 4
        try:
            results = command(factory, crm)
        except Killed:
            continue
        break
    else:
        pytest.fail("the backfill never finished")
    assert lives == 4  # 10 pages, 3 committed per life (the 4th one kills it)
    assert all(r.status is RunStatus.SUCCEEDED for r in results.values())
    assert (count(factory, Account), count(factory, Opportunity)) == (1000, 1000)


def test_restart_begins_a_new_backfill_and_another_since_is_refused(
    factory: sessionmaker[Session], crm: KillableSalesforce
) -> None:
    crm.kill_at = 7
    with pytest.raises(Killed):
        command(factory, crm)
    crm.kill_at = None
    before = cursor(factory, "Opportunity", "backfill")
    assert before is not None
    with pytest.raises(BackfillConflictError, match="--restart"):
        command(factory, crm, since=T0 + timedelta(seconds=250))
    after = cursor(factory, "Opportunity", "backfill")
    assert after is not None
    assert (after.watermark_id, after.state) == (before.watermark_id, before.state)  # untouched

    restarted = command(factory, crm, since=T0 + timedelta(seconds=251), restart=True)
    assert restarted["Account"].counts.read == 750
    assert restarted["Opportunity"].counts.read == 750
    assert restarted["Account"].summary()["backfill"]["since"].startswith("2026-11-01T12:04:11")


def test_a_backfill_of_one_object_keeps_the_others_done(
    factory: sessionmaker[Session], crm: KillableSalesforce
) -> None:
    crm.kill_at = 7
    with pytest.raises(Killed):
        command(factory, crm)
    crm.kill_at = None
    only = command(factory, crm, objects=["Account"])
    assert only["Account"].summary()["backfill"]["step"] == "already_complete"
    rest = command(factory, crm)
    assert rest["Account"].counts.api_calls == 0
    assert rest["Opportunity"].counts.read == 800


def test_a_backfill_that_read_nothing_moves_no_cursor(
    factory: sessionmaker[Session], crm: KillableSalesforce
) -> None:
    """`--since 2030-01-01` once "succeeded" with 0 rows and moved `changes` to 2030."""
    crm.objects["Account"] = {}
    crm.put("Account", account(1, T0))
    store = SqlSyncStore(factory)
    with store.page() as writer:
        writer.save_cursor("salesforce", "Account", "changes", CursorState(T0, "001", {}))
    future = command(factory, crm, since=NOW + timedelta(days=3 * 365), objects=["Account"])
    assert future["Account"].status is RunStatus.SUCCEEDED
    assert future["Account"].counts.read == 0
    changes = cursor(factory, "Account", "changes")
    assert changes is not None
    assert (changes.watermark_at, changes.watermark_id) == (T0, "001")  # not moved
    backfill = cursor(factory, "Account", "backfill")
    assert backfill is not None
    assert backfill.watermark_at is None  # the since is a bound, not a stamp that was read
    assert future["Account"].cursor_to == {"at": None, "id": None, "resume": {}}

    # A real edit after T0 is still pulled by the next incremental pass.
    crm.put("Account", account(1, T0 + timedelta(hours=1), Name="Edited"))
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    settings = SyncSettings(lookback_seconds=0)
    engine = PullEngine(store, crm, mappings, settings, clock=lambda: NOW)
    assert engine.pull("Account").counts.created == 1


def test_a_backfill_promotes_only_the_newest_stamp_it_read(
    factory: sessionmaker[Session], crm: KillableSalesforce
) -> None:
    since = T0 + timedelta(seconds=400)
    done = command(factory, crm, since=since, objects=["Account"])
    assert done["Account"].counts.read == 601
    changes = cursor(factory, "Account", "changes")
    assert changes is not None
    assert changes.watermark_at == T0 + timedelta(seconds=1000)
    assert changes.watermark_id == f"001{1000:015d}"


def test_a_cursor_from_the_future_is_brought_back_to_the_run_start(
    factory: sessionmaker[Session], crm: KillableSalesforce
) -> None:
    """A `changes` cursor an older version stored at 2030 never stays past a pass's start."""
    store = SqlSyncStore(factory)
    future = datetime(2030, 1, 1, tzinfo=UTC)
    with store.page() as writer:
        writer.save_cursor("salesforce", "Account", "changes", CursorState(future, None, {}))
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    engine = PullEngine(store, crm, mappings, SyncSettings(), clock=lambda: NOW)
    result = engine.pull("Account", kind=SyncKind.PULL)
    assert result.status is RunStatus.SUCCEEDED
    changes = cursor(factory, "Account", "changes")
    assert changes is not None
    assert changes.watermark_at == NOW
