"""The pull engine against an in-memory CRM, on the test database (SQLite or PostgreSQL).

These pin the engine's guarantees independently of any adapter: page and cursor commit together,
a killed pass resumes without loss or duplicates, deletes soft-delete, late parents get linked,
bad records become sync_errors without stopping the pass.
"""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus, SyncKind
from app.db.engine import make_session_factory
from app.db.models import Account, JobLease, Opportunity, SyncCursor, SyncErrorRecord, SyncRun
from app.db.sync_store import SqlPageWriter, SqlSyncStore
from app.mappers.defaults import salesforce_mappings
from app.settings import SyncSettings
from app.sync.pull import PullEngine
from tests.support.fake_crm import FakeSalesforce, sf_stamp

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def account(n: int, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "Id": f"001{n:015d}",
        "Name": f"Account {n}",
        "Website": f"https://www.acct{n}.test/",
        "ARR__c": 1000.0 * n,
        "SystemModstamp": sf_stamp(at),
        "IsDeleted": False,
        **extra,
    }


def opportunity(n: int, account_n: int, at: datetime) -> dict[str, Any]:
    return {
        "Id": f"006{n:015d}",
        "Name": f"Deal {n}",
        "AccountId": f"001{account_n:015d}",
        "StageName": "Closed Won",
        "Amount": 5000.0,
        "CloseDate": "2026-10-01",
        "IsClosed": True,
        "IsWon": True,
        "Type": "New Business",
        "SystemModstamp": sf_stamp(at),
        "IsDeleted": False,
    }


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def crm() -> FakeSalesforce:
    return FakeSalesforce()


@pytest.fixture
def clock() -> list[datetime]:
    return [T0 + timedelta(days=1)]


def make_engine(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime], page_size: int = 200
) -> PullEngine:
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    settings = SyncSettings(page_size=page_size, lookback_seconds=0)
    return PullEngine(SqlSyncStore(factory), crm, mappings, settings, clock=lambda: clock[0])


def count(factory: sessionmaker[Session], model: type[Any], *where: Any) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_first_pass_creates_rows_links_parents_and_stores_the_cursor(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    for n in range(1, 451):
        crm.put("Account", account(n, T0 + timedelta(seconds=n)))
    crm.put("Opportunity", opportunity(1, 7, T0))
    engine = make_engine(factory, crm, clock)

    result = engine.pull("Account")
    assert result.status is RunStatus.SUCCEEDED
    assert (result.counts.read, result.counts.created, result.counts.updated) == (450, 450, 0)
    assert result.counts.api_calls == 3  # three pages of 200/200/50; no count call
    engine.pull("Opportunity")

    with factory() as s:
        acc = s.scalars(select(Account).where(Account.sf_id == f"001{7:015d}")).one()
        assert acc.domain == "acct7.test"
        opp = s.scalars(select(Opportunity)).one()
        assert opp.account_id == acc.id
        assert opp.is_won
        cursor = s.scalars(select(SyncCursor).where(SyncCursor.object == "Account")).one()
        assert cursor.watermark_at == T0 + timedelta(seconds=450)
        assert cursor.state == {}
        run = s.scalars(select(SyncRun).where(SyncRun.object == "Account")).one()
        assert (run.status, run.read_count, run.created_count) == ("succeeded", 450, 450)


def test_second_pass_reports_unchanged_and_updates_only_what_moved(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    for n in range(1, 11):
        crm.put("Account", account(n, T0))
    engine = make_engine(factory, crm, clock)
    engine.pull("Account")
    crm.put("Account", account(3, T0 + timedelta(hours=1), Name="Renamed 3"))
    result = engine.pull("Account")
    # The boundary second is re-read (inclusive cursor): unchanged, never duplicated.
    assert result.counts.updated == 1
    assert result.counts.created == 0
    assert count(factory, Account) == 10
    assert count(factory, Account, Account.name == "Renamed 3") == 1


def test_delete_soft_deletes_and_a_restore_clears_it(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    for n in range(1, 4):
        crm.put("Account", account(n, T0))
    engine = make_engine(factory, crm, clock)
    engine.pull("Account")
    crm.delete("Account", f"001{2:015d}", T0 + timedelta(hours=1))
    result = engine.pull("Account")
    assert result.counts.deleted == 1
    assert count(factory, Account, Account.deleted_at.is_not(None)) == 1
    assert count(factory, Account) == 3  # kept, not destroyed
    crm.put("Account", account(2, T0 + timedelta(hours=2)))
    engine.pull("Account")
    assert count(factory, Account, Account.deleted_at.is_not(None)) == 0


def test_child_arriving_before_parent_is_kept_and_linked_later(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    crm.put("Opportunity", opportunity(1, 42, T0))
    engine = make_engine(factory, crm, clock)
    engine.pull("Opportunity")
    assert count(factory, Opportunity, Opportunity.account_id.is_(None)) == 1
    crm.put("Account", account(42, T0))
    engine.pull("Account")
    assert count(factory, Opportunity, Opportunity.account_id.is_not(None)) == 1


def test_bad_record_goes_to_sync_errors_and_the_pass_goes_on(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    crm.put("Account", account(1, T0))
    crm.put("Account", account(2, T0, ARR__c="not-a-number"))  # stored, ARR empty
    crm.put("Account", account(3, T0, Id="001" + "9" * 20))  # not a Salesforce id: kept out
    engine = make_engine(factory, crm, clock)
    result = engine.pull("Account")
    assert result.status is RunStatus.PARTIAL
    assert (result.counts.created, result.counts.failed) == (2, 2)
    with factory() as s:
        errors = s.scalars(select(SyncErrorRecord).order_by(SyncErrorRecord.record_id)).all()
        assert [(e.record_id, e.category) for e in errors] == [
            (f"001{2:015d}", "invalid_field"),
            ("001" + "9" * 20, "validation"),
        ]
        assert not any(e.retriable for e in errors)
        assert errors[0].payload is not None
        assert errors[0].payload["value"] == "not-a-number"
        assert errors[1].payload is not None
        assert errors[1].payload["Name"] == "Account 3"  # the record as received
    # Fixed in the CRM: the next pass syncs it and resolves its error.
    crm.put("Account", account(2, T0 + timedelta(minutes=5)))
    engine.pull("Account")
    assert count(factory, SyncErrorRecord, SyncErrorRecord.resolved_at.is_not(None)) == 1


def test_nul_characters_from_the_crm_do_not_fail_the_page(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    """JSON allows \u0000 and PostgreSQL text does not: one such value used to fail its page."""
    crm.put("Account", account(1, T0, Name="Acme\x00 Oy", Industry="\x00"))
    crm.put("Account", account(2, T0))
    result = make_engine(factory, crm, clock).pull("Account")
    assert result.status is RunStatus.SUCCEEDED, result.error
    with factory() as s:
        acme = s.scalars(select(Account).where(Account.sf_id == f"001{1:015d}")).one()
    assert (acme.name, acme.industry) == ("Acme Oy", None)
    assert count(factory, Account) == 2


def test_a_failed_records_payload_is_stored_whatever_its_values(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    """The Salesforce client decodes numbers as Decimal, and JSON allows \u0000: neither may
    stop a failed record from reaching sync_errors (they once failed the page instead)."""
    bad_id = "001" + "1" * 30  # too long for sf_id: the record is kept out
    crm.put("Account", account(1, T0, Id=bad_id, ARR__c=Decimal("12.50"), Industry="A\x00B"))
    crm.put("Account", account(2, T0))
    result = make_engine(factory, crm, clock).pull("Account")
    assert result.status is RunStatus.PARTIAL, result.error
    assert (result.counts.created, result.counts.failed) == (1, 1)
    with factory() as s:
        error = s.scalars(select(SyncErrorRecord)).one()
    assert error.payload is not None
    assert error.payload["ARR__c"] == "12.50"  # exact, as text
    assert error.payload["Industry"] == "A\ufffdB"
    assert error.payload["Id"] == bad_id


def test_killed_pass_resumes_at_the_last_committed_page(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    for n in range(1, 1001):
        crm.put("Account", account(n, T0))  # all share one stamp: resumption must use the id
    crm.fail_after_pages = 3
    engine = make_engine(factory, crm, clock, page_size=200)
    failed = engine.pull("Account", kind=SyncKind.BACKFILL)
    assert failed.status is RunStatus.FAILED
    assert count(factory, Account) == 600

    crm.fail_after_pages = None
    crm.pages_served = 0
    resumed = engine.pull("Account", kind=SyncKind.BACKFILL)
    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.counts.read == 400  # only the pages not yet committed
    assert count(factory, Account) == 1000
    with factory() as s:
        cursors = {c.stream: c for c in s.scalars(select(SyncCursor))}
        assert cursors["backfill"].state["in_progress"] is False
        assert cursors["changes"].watermark_at == T0  # incremental passes continue from here


def test_crash_between_row_write_and_cursor_save_loses_nothing(
    factory: sessionmaker[Session],
    crm: FakeSalesforce,
    clock: list[datetime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(1, 601):
        crm.put("Account", account(n, T0 + timedelta(seconds=n)))
    engine = make_engine(factory, crm, clock, page_size=200)
    original = SqlPageWriter.save_cursor
    calls = {"n": 0}

    def crash_on_second_save(self: SqlPageWriter, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("process killed after the rows, before the cursor")
        original(self, *args)

    monkeypatch.setattr(SqlPageWriter, "save_cursor", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        engine.pull("Account")
    # The second page's rows were rolled back with its cursor.
    assert count(factory, Account) == 200
    monkeypatch.setattr(SqlPageWriter, "save_cursor", original)
    result = engine.pull("Account")
    assert count(factory, Account) == 600
    assert result.counts.created == 400


def test_a_second_pass_over_the_same_object_is_refused_while_one_runs(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    crm.put("Account", account(1, T0))
    engine = make_engine(factory, crm, clock)
    other = SqlSyncStore(factory)
    other.acquire_lease("sync:salesforce:Account", "worker-2", timedelta(minutes=5))
    refused = engine.pull("Account")
    assert refused.status is RunStatus.CANCELLED
    assert refused.error is not None
    assert "worker-2" in refused.error
    assert count(factory, Account) == 0
    # The other object is not blocked, and the refusal is visible as a run.
    assert engine.pull("Opportunity").status is RunStatus.SUCCEEDED
    assert count(factory, SyncRun, SyncRun.status == "cancelled") == 1
    other.release_lease("sync:salesforce:Account", "worker-2")
    assert engine.pull("Account").counts.created == 1


def test_a_crashed_holders_lease_expires_and_is_taken_over(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    crm.put("Account", account(1, T0))
    store = SqlSyncStore(factory)
    store.acquire_lease("sync:salesforce:Account", "dead-worker", timedelta(seconds=-1))
    # The dead worker's runs, left "running" when it was killed; and a live push (another lease).
    dead = [
        store.start_run(
            kind=kind,
            crm="salesforce",
            object_name="Account",
            triggered_by="dead-worker",
            params={},
            cursor_from=None,
        )
        for kind in ("backfill", "push")
    ]
    result = make_engine(factory, crm, clock).pull("Account")
    assert result.status is RunStatus.SUCCEEDED
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(JobLease)) == 0  # released at the end
        backfill, push = (s.get(SyncRun, run_id) for run_id in dead)
        assert backfill is not None
        assert push is not None
        assert backfill.status == "failed"
        assert backfill.error is not None
        assert backfill.error.startswith("abandoned")
        assert backfill.finished_at == backfill.heartbeat_at
        assert push.status == "running"  # not this lease's to close


def test_pages_leave_no_reference_cycles_holding_their_records(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    """Bounded memory under the pull's relaxed GC (app/wiring/sync.py): what a page allocates
    must be freed by reference counting when the page ends, not wait in a cycle for a full
    collection. (Statements holding their bound id lists once did, and RSS grew per page.)"""
    for n in range(1, 401):
        crm.put("Account", account(n, T0 + timedelta(seconds=n)))
    for n in range(1, 401):
        crm.put("Opportunity", opportunity(n, n, T0 + timedelta(seconds=n)))
    engine = make_engine(factory, crm, clock)
    engine.pull("Account")  # warm-up: lazily built statements, plans and caches
    engine.pull("Opportunity")
    for n in range(1, 401):  # a second round of changes: updates, parents resolved again
        crm.put("Opportunity", {**opportunity(n, n, T0 + timedelta(hours=1, seconds=n))})
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        engine.pull("Opportunity")
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    record_ids = {f"006{n:015d}" for n in range(1, 401)} | {f"001{n:015d}" for n in range(1, 401)}
    holding = [
        type(obj).__name__
        for obj in garbage
        if isinstance(obj, list | dict | tuple)
        and any(isinstance(v, str) and v in record_ids for v in _values(obj))
    ]
    assert holding == []


def _values(obj: list[Any] | dict[Any, Any] | tuple[Any, ...]) -> list[Any]:
    return list(obj.values()) if isinstance(obj, dict) else list(obj)
