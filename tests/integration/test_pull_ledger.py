"""The pull engine and the push ledger (ADR 0006), against an in-memory CRM, on the test database.

Plan__c is mapped both ways here (the defaults push only write-backs): the pull reads the
page's ledger entries in one statement, merges three ways, writes the ledger in the page's
transaction, and never writes ``field_stamps``, ``cs_changed_at`` or (for an echo)
``updated_at``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.cs_writes import stamp_cs_change
from app.db.engine import make_session_factory
from app.db.models import Account, PushLedgerEntry, SyncErrorRecord
from app.db.sync_store import SqlSyncStore
from app.mappers.defaults import salesforce_mappings
from app.mappers.ledger import value_hash
from app.mappers.spec import ConflictPolicy, Direction, ObjectMapping
from app.settings import SyncSettings
from app.sync.pull import PullEngine
from tests.support.fake_crm import FakeSalesforce, sf_stamp

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def plan_both(policy: ConflictPolicy) -> dict[str, ObjectMapping]:
    mappings = {m.crm_object: m for m in salesforce_mappings()}
    account = mappings["Account"]
    fields = tuple(
        replace(f, direction=Direction.BOTH, conflict_policy=policy)
        if f.crm_field == "Plan__c"
        else f
        for f in account.fields
    )
    mappings["Account"] = replace(account, fields=fields)
    return mappings


def account(n: int, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "Id": f"001{n:015d}",
        "Name": f"Account {n}",
        "Plan__c": "Pro",
        "SystemModstamp": sf_stamp(at),
        "IsDeleted": False,
        **extra,
    }


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def pull_engine(
    factory: sessionmaker[Session], crm: FakeSalesforce, policy: ConflictPolicy
) -> PullEngine:
    settings = SyncSettings(page_size=200, lookback_seconds=0)
    return PullEngine(
        SqlSyncStore(factory), crm, plan_both(policy), settings, clock=lambda: T0 + timedelta(1)
    )


def ledger(factory: sessionmaker[Session]) -> dict[str, tuple[str, str | None, Any]]:
    with factory() as s:
        return {
            e.record_id: (e.value_hash, e.crm_hash, e.value)
            for e in s.scalars(select(PushLedgerEntry).where(PushLedgerEntry.field == "Plan__c"))
        }


def row(factory: sessionmaker[Session], n: int) -> Account:
    with factory() as s:
        return s.scalars(select(Account).where(Account.sf_id == f"001{n:015d}")).one()


def cs_edit(factory: sessionmaker[Session], n: int, at: datetime, **values: Any) -> None:
    with factory() as s, s.begin():
        acc = s.scalars(select(Account).where(Account.sf_id == f"001{n:015d}")).one()
        for column, value in values.items():
            setattr(acc, column, value)
        stamp_cs_change(acc, values, at)


def test_the_first_pull_records_what_both_sides_agree_on(
    factory: sessionmaker[Session],
) -> None:
    crm = FakeSalesforce()
    for n in range(1, 4):
        crm.put("Account", account(n, T0))
    result = pull_engine(factory, crm, ConflictPolicy.NEWEST_WINS).pull("Account")
    assert result.counts.created == 3
    pro = value_hash("Pro")
    assert ledger(factory) == {f"001{n:015d}": (pro, pro, "Pro") for n in range(1, 4)}
    # crm_to_cs fields have no ledger rows; the pull never stamps a CS change
    with factory() as s:
        assert {e.field for e in s.scalars(select(PushLedgerEntry))} == {"Plan__c"}
    assert row(factory, 1).field_stamps == {}
    assert row(factory, 1).cs_changed_at is None


def test_an_unpushed_cs_edit_survives_an_unrelated_crm_edit(
    factory: sessionmaker[Session],
) -> None:
    crm = FakeSalesforce()
    crm.put("Account", account(1, T0))
    engine = pull_engine(factory, crm, ConflictPolicy.NEWEST_WINS)
    engine.pull("Account")
    cs_edit(factory, 1, T0 + timedelta(minutes=5), plan="Gold")
    crm.put("Account", account(1, T0 + timedelta(minutes=10), Name="Renamed"))  # after the edit
    result = engine.pull("Account")
    assert result.counts.updated == 1
    acc = row(factory, 1)
    assert (acc.name, acc.plan) == ("Renamed", "Gold")
    assert set(acc.field_stamps) == {"plan"}  # the pull did not touch the CS stamps
    assert ledger(factory)[f"001{1:015d}"][0] == value_hash("Pro")  # still the agreed value


def test_an_echo_is_unchanged_and_keeps_updated_at(factory: sessionmaker[Session]) -> None:
    crm = FakeSalesforce()
    crm.put("Account", account(1, T0))
    engine = pull_engine(factory, crm, ConflictPolicy.NEWEST_WINS)
    engine.pull("Account")
    edited_at = T0 + timedelta(minutes=5)
    cs_edit(factory, 1, edited_at, plan="Gold")
    before = row(factory, 1)
    # What a confirmed push of "Gold" leaves: the CRM value, a new stamp, the ledger row.
    crm.put("Account", account(1, T0 + timedelta(minutes=6), Plan__c="Gold"))
    with factory() as s, s.begin():
        entry = s.scalars(select(PushLedgerEntry)).one()
        entry.value_hash = entry.crm_hash = value_hash("Gold")
        entry.value = "Gold"
    result = engine.pull("Account")
    assert (result.counts.unchanged, result.counts.updated) == (1, 0)
    after = row(factory, 1)
    assert after.updated_at == before.updated_at
    assert after.field_stamps == before.field_stamps
    assert after.cs_changed_at == before.cs_changed_at == edited_at
    assert after.sf_modified_at == T0 + timedelta(minutes=6)  # sync bookkeeping only
    # Then a CRM edit of the field is taken.
    crm.put("Account", account(1, T0 + timedelta(minutes=20), Plan__c="Enterprise"))
    result = engine.pull("Account")
    assert result.counts.updated == 1
    assert row(factory, 1).plan == "Enterprise"
    enterprise = value_hash("Enterprise")
    assert ledger(factory)[f"001{1:015d}"] == (enterprise, enterprise, "Enterprise")


def test_an_undecidable_conflict_is_one_open_error_and_writes_neither_side(
    factory: sessionmaker[Session],
) -> None:
    crm = FakeSalesforce()
    crm.put("Account", account(1, T0))
    engine = pull_engine(factory, crm, ConflictPolicy.NEWEST_WINS)
    engine.pull("Account")
    with factory() as s, s.begin():
        acc = s.scalars(select(Account)).one()
        acc.plan = "Gold"
        acc.field_stamps = {"plan": "not a time"}
    for minutes in (10, 20):  # found twice: one open row, attempts bumped
        crm.put("Account", account(1, T0 + timedelta(minutes=minutes), Plan__c="Enterprise"))
        engine.pull("Account")
    assert row(factory, 1).plan == "Gold"
    assert ledger(factory)[f"001{1:015d}"][0] == value_hash("Pro")
    with factory() as s:
        (error,) = s.scalars(select(SyncErrorRecord)).all()
    assert (error.category, error.resolved_at, error.attempts) == ("conflict", None, 2)
    assert error.payload is not None
    assert error.payload["field"] == "Plan__c"
    assert error.payload["cs_stamp"] == "not a time"


def test_one_ledger_select_per_page(factory: sessionmaker[Session], engine: Engine) -> None:
    crm = FakeSalesforce()
    for n in range(1, 451):
        crm.put("Account", account(n, T0 + timedelta(seconds=n)))
    pull = pull_engine(factory, crm, ConflictPolicy.PREFER_CRM)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "push_ledger" in statement:
            statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        pull.pull("Account")  # creates only: nothing to read, one upsert per page
        assert statements.count("SELECT") == 0
        assert statements.count("INSERT") == 3
        statements.clear()
        for n in range(1, 451):
            crm.put("Account", account(n, T0 + timedelta(hours=1, seconds=n), Name=f"New {n}"))
        result = pull.pull("Account")  # three pages of updates, ledger unchanged
        assert result.counts.updated == 450
        assert statements == ["SELECT", "SELECT", "SELECT"]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
