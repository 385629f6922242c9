"""The push engine against an in-memory writer, on the test database (SQLite or PostgreSQL).

Pins the engine's guarantees independently of the adapters: only changed fields of changed rows
are written, nothing changed costs no call (not even building the client), the ledger holds only
what the CRM confirmed and only under the lease, failures become push errors without blocking
the others, creates are idempotent through the committed crmsync id, and the preview's call
count is the push's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.crm.writes import WriteKind
from app.db.cs_writes import stamp_cs_change
from app.db.engine import make_session_factory
from app.db.models import Account, JobLease, PushLedgerEntry, SyncCursor, SyncErrorRecord, SyncRun
from app.db.push_store import SqlPushStore
from app.mappers.defaults import salesforce_mappings
from app.mappers.ledger import value_hash
from app.sync.push import PushEngine
from app.sync.push_ports import DefaultPushTuning
from tests.support.fake_writer import FakeWriter

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def add_accounts(
    factory: sessionmaker[Session], n: int, *, start: int = 1, sf: bool = True, **values: Any
) -> list[int]:
    """``n`` accounts changed on the CS side (health fields), with Salesforce ids or without."""
    ids = []
    with factory() as s, s.begin():
        for i in range(start, start + n):
            account = Account(
                name=f"Account {i}",
                sf_id=f"001{i:015d}" if sf else None,
                health_score=50 + i % 50,
                health_band="green",
                renewal_on=date(2027, 3, 1),
                **values,
            )
            stamp_cs_change(
                account, ["health_score", "health_band", "renewal_on"], NOW - timedelta(hours=1)
            )
            s.add(account)
            s.flush()
            ids.append(account.id)
    return ids


def make(
    factory: sessionmaker[Session],
    writer: FakeWriter,
    *,
    page_rows: int = 50,
    batch_records: int = 50_000,
    creates: bool = False,
    built: list[int] | None = None,
) -> PushEngine:
    mappings = {m.crm_object: m for m in salesforce_mappings()}

    def build() -> FakeWriter:
        if built is not None:
            built.append(1)
        return writer

    def account_create(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        return {"Name": row["name"]}, []

    return PushEngine(
        SqlPushStore(factory),
        "salesforce",
        build,
        mappings,
        DefaultPushTuning(page_rows=page_rows, batch_records=batch_records, lookback_seconds=0),
        creates={"Account": account_create} if creates else None,
        clock=lambda: NOW,
    )


def seed_crm(writer: FakeWriter, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        writer.records[f"001{i:015d}"] = {}


def ledger_count(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(PushLedgerEntry)) or 0)


def test_nothing_changed_makes_no_call_and_builds_no_client(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s, s.begin():
        s.add(Account(name="pulled only", sf_id="001000000000000001", health_score=80))
    built: list[int] = []
    result = make(factory, FakeWriter(), built=built).push("Account")
    assert result.status is RunStatus.SUCCEEDED
    assert result.counts.api_calls == 0
    assert built == []
    assert result.extra["planned"] == 0


def test_changed_rows_are_written_once_and_the_second_push_is_free(
    factory: sessionmaker[Session],
) -> None:
    add_accounts(factory, 450)
    writer = FakeWriter()
    seed_crm(writer, 450)
    engine = make(factory, writer)
    preview = engine.preview("Account")
    assert len(preview.records) == 450
    assert preview.planned_calls == 3  # ceil(450 / 200)
    result = engine.push("Account")
    assert result.status is RunStatus.SUCCEEDED
    assert (result.counts.updated, result.counts.failed, result.counts.read) == (450, 0, 450)
    assert result.counts.api_calls == preview.planned_calls == 3
    assert result.extra == {"planned": 450, "written": 450, "planned_calls": 3}
    # One batch, one write call to the adapter: records with different fields share chunks.
    assert len(writer.writes) == 1
    sent = writer.records["001000000000000007"]
    assert sent["Health_Score__c"] == 57
    assert sent["Renewal_Date__c"] == "2027-03-01"
    assert sent["Days_To_Renewal__c"] == (date(2027, 3, 1) - NOW.date()).days
    # Every outbound field with a value is in the ledger, as confirmed (crm_hash = value_hash);
    # the empty ones were never agreed, so they are not written (no null over a CRM value).
    assert "Tier__c" not in sent
    with_value = [k for k, v in sent.items() if v is not None]
    assert ledger_count(factory) == 450 * len(with_value)
    with factory() as s:
        entry = s.scalars(
            select(PushLedgerEntry).where(
                PushLedgerEntry.record_id == "001000000000000007",
                PushLedgerEntry.field == "Health_Score__c",
            )
        ).one()
        assert entry.value_hash == entry.crm_hash == value_hash(57)
        assert entry.value == 57
        assert entry.run_id == result.run_id
        cursor = s.scalars(select(SyncCursor).where(SyncCursor.stream == "push")).one()
        assert cursor.watermark_at is not None
        run = s.get(SyncRun, result.run_id)
        assert run is not None
        assert (run.kind, run.read_count, run.updated_count, run.api_calls) == (
            "push",
            450,
            450,
            3,
        )
    # Nothing changed since: no call, no client built.
    built: list[int] = []
    again = make(factory, FakeWriter(), built=built).push("Account")
    assert (again.counts.api_calls, built, again.extra["planned"]) == (0, [], 0)
    # A new change to one field of one record: one call, only that field.
    with factory() as s, s.begin():
        account = s.scalars(select(Account).where(Account.sf_id == "001000000000000007")).one()
        account.health_score = 12
        stamp_cs_change(account, ["health_score"], NOW - timedelta(minutes=5))
    engine = make(factory, writer)
    preview = engine.preview("Account")
    assert [
        (r.crm_id, [(c.crm_field, c.old, c.new) for c in r.changes]) for r in preview.records
    ] == [("001000000000000007", [("Health_Score__c", 57, 12)])]
    calls_before = writer.calls
    third = engine.push("Account")
    assert writer.calls - calls_before == third.counts.api_calls == preview.planned_calls == 1
    assert [op.fields for op in writer.writes[-1]] == [{"Health_Score__c": 12}]


def test_pages_are_batched_so_calls_stay_at_the_floor(factory: sessionmaker[Session]) -> None:
    """Pages of 50 rows still share write calls: 450 records are 3 calls, not 9."""
    add_accounts(factory, 450)
    writer = FakeWriter()
    seed_crm(writer, 450)
    result = make(factory, writer, page_rows=50).push("Account")
    assert result.counts.api_calls == 3


def test_a_refused_record_is_a_push_error_and_blocks_nothing(
    factory: sessionmaker[Session],
) -> None:
    ids = add_accounts(factory, 5)
    writer = FakeWriter(refuse={ids[2]: "FIELD_CUSTOM_VALIDATION_EXCEPTION"})
    seed_crm(writer, 5)
    result = make(factory, writer).push("Account")
    assert result.status is RunStatus.PARTIAL
    assert (result.counts.updated, result.counts.failed) == (4, 1)
    with factory() as s:
        (error,) = s.scalars(select(SyncErrorRecord)).all()
        assert (error.direction, error.category, error.record_id) == (
            "push",
            "validation",
            "001000000000000003",
        )
        assert error.payload is not None
        assert error.payload["fields"]["Health_Score__c"] == 53
        refused = s.scalar(
            select(func.count())
            .select_from(PushLedgerEntry)
            .where(PushLedgerEntry.record_id == "001000000000000003")
        )
        assert refused == 0  # only what the CRM confirmed


def test_records_refused_with_a_retriable_error_are_retried_by_the_next_push(
    factory: sessionmaker[Session],
) -> None:
    ids = add_accounts(factory, 250)
    locked, invalid = ids[7], ids[9]
    writer = FakeWriter(
        refuse={locked: "UNABLE_TO_LOCK_ROW", invalid: "FIELD_CUSTOM_VALIDATION_EXCEPTION"},
        retriable={locked},
    )
    seed_crm(writer, 250)
    first = make(factory, writer).push("Account")
    assert (first.counts.updated, first.counts.failed) == (248, 2)
    with factory() as s:
        transient = s.scalars(
            select(SyncErrorRecord).where(SyncErrorRecord.category == "transient")
        ).one()
        assert transient.retriable
        assert transient.record_id == "001000000000000008"
    # The lock is gone; nothing changed on the CS side since the first push.
    del writer.refuse[locked]
    preview = make(factory, writer).preview("Account")
    assert [r.row_id for r in preview.records] == [locked]  # not the validation failure
    assert preview.planned_calls == 1
    second = make(factory, writer).push("Account")
    assert (second.counts.updated, second.counts.failed, second.counts.api_calls) == (1, 0, 1)
    assert writer.records["001000000000000008"]["Health_Score__c"] == 58
    with factory() as s:
        assert s.get(SyncErrorRecord, transient.id).resolved_at is not None  # type: ignore[union-attr]
        still = s.scalars(
            select(SyncErrorRecord).where(SyncErrorRecord.resolved_at.is_(None))
        ).one()
        assert still.category == "validation"  # waits for its record to change
    third = make(factory, writer).push("Account")
    assert third.counts.api_calls == 0


def test_a_retriable_refusal_is_tried_by_a_bounded_number_of_pushes(
    factory: sessionmaker[Session],
) -> None:
    (row_id,) = add_accounts(factory, 1)
    writer = FakeWriter(refuse={row_id: "UNABLE_TO_LOCK_ROW"}, retriable={row_id})
    seed_crm(writer, 1)
    calls = [make(factory, writer).push("Account").counts.api_calls for _ in range(12)]
    # The first push, then 9 retries (10 attempts in all); then it waits for a change.
    assert calls == [1] * 10 + [0, 0]
    with factory() as s:
        error = s.scalars(select(SyncErrorRecord)).one()
        assert (error.attempts, error.resolved_at) == (10, None)


def test_creates_are_upserts_on_a_committed_crmsync_id_and_never_made_twice(
    factory: sessionmaker[Session],
) -> None:
    ids = add_accounts(factory, 30, sf=False)
    writer = FakeWriter(lose_answer_of_call=1)  # the CRM creates them, the answer is lost
    first = make(factory, writer, creates=True).push("Account")
    assert first.status is RunStatus.FAILED
    assert writer.creates == 30
    with factory() as s:
        rows = s.scalars(select(Account).where(Account.id.in_(ids))).all()
        assert all(r.crmsync_id for r in rows)  # committed before the call
        assert all(r.sf_id is None for r in rows)  # the answer never came
    writer.lose_answer_of_call = None
    second = make(factory, writer, creates=True).push("Account")
    assert second.status is RunStatus.SUCCEEDED
    assert second.counts.created == 30
    assert writer.creates == 30  # matched on the external id: no second record
    with factory() as s:
        rows = s.scalars(select(Account).where(Account.id.in_(ids))).all()
        assert {r.sf_id for r in rows} == set(writer.records)
        assert writer.records[rows[0].sf_id or ""]["Name"] == rows[0].name
    third = make(factory, writer, creates=True).push("Account")
    assert (third.counts.api_calls, third.extra["planned"]) == (0, 0)


def test_a_push_that_lost_its_lease_records_nothing(factory: sessionmaker[Session]) -> None:
    add_accounts(factory, 10)
    writer = FakeWriter()
    seed_crm(writer, 10)

    def stolen() -> None:  # a stalled push: another pass took the lease over meanwhile
        with factory() as s, s.begin():
            s.execute(update(JobLease).values(holder="other-host:1:x"))

    writer.before_answer = stolen
    result = make(factory, writer).push("Account")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "LeaseLostError" in result.error
    assert ledger_count(factory) == 0


def test_only_chosen_rows_are_pushed_and_the_cursor_stays(
    factory: sessionmaker[Session],
) -> None:
    ids = add_accounts(factory, 5)
    writer = FakeWriter()
    seed_crm(writer, 5)
    result = make(factory, writer).push("Account", only_row_ids=[ids[1]])
    assert result.counts.updated == 1
    assert [op.key for op in writer.writes[0]] == [ids[1]]
    with factory() as s:
        assert s.scalars(select(SyncCursor).where(SyncCursor.stream == "push")).first() is None
    rest = make(factory, writer).push("Account")
    assert rest.counts.updated == 4  # the chosen row is unchanged now


def test_a_value_the_crm_already_holds_is_agreed_without_a_call(
    factory: sessionmaker[Session],
) -> None:
    add_accounts(factory, 1)
    mapping = salesforce_mappings().object("Account")
    writer = FakeWriter()
    seed_crm(writer, 1)
    first = make(factory, writer).push("Account")
    assert first.counts.updated == 1
    # The pull saw the CRM move to 77 (crm_hash), and the CS side then moved to 77 as well.
    with factory() as s, s.begin():
        s.execute(
            update(PushLedgerEntry)
            .where(PushLedgerEntry.field == "Health_Score__c")
            .values(crm_hash=value_hash(77))
        )
        account = s.scalars(select(Account)).one()
        account.health_score = 77
        stamp_cs_change(account, ["health_score"], NOW - timedelta(minutes=1))
    calls = writer.calls
    engine = make(factory, writer)
    preview = engine.preview("Account")
    assert (preview.records, preview.agreed) == ([], 1)
    second = engine.push("Account")
    assert writer.calls == calls
    assert second.counts.unchanged == 1
    with factory() as s:
        entry = s.scalars(
            select(PushLedgerEntry).where(PushLedgerEntry.field == "Health_Score__c")
        ).one()
        assert entry.value_hash == value_hash(77)
    assert mapping.crm_object == "Account"


def test_preview_lists_creates_and_updates(factory: sessionmaker[Session]) -> None:
    add_accounts(factory, 3)
    add_accounts(factory, 2, start=10, sf=False)
    preview = make(factory, FakeWriter(), creates=True).preview("Account")
    kinds = sorted(str(r.kind) for r in preview.records)
    assert kinds == ["update"] * 3 + ["upsert"] * 2
    assert preview.planned_calls == 2  # one update call, one upsert call
    shown = preview.as_dict(limit=1)
    assert shown["planned_records"] == 5
    assert shown["truncated"] is True
    assert shown["records"][0]["changes"][0]["old"] is None
    assert WriteKind.UPSERT in {r.kind for r in preview.records}
