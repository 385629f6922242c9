"""Model round-trips on the test database (SQLite or PostgreSQL, see tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import (
    Account,
    HandoverNote,
    HealthSnapshot,
    OnboardingPlan,
    OnboardingTask,
    Opportunity,
    SyncCursor,
    SyncRun,
    WebhookEvent,
)


def test_account_round_trip_keeps_types(session: Session) -> None:
    stamp = datetime(2026, 3, 2, 8, 15, 30, tzinfo=UTC)
    session.add(
        Account(
            name="Acme Oy",
            domain="acme.test",
            sf_id="001000000000001AAA",
            arr=Decimal("48000.50"),
            licensed_seats=40,
            contract_end_on=date(2027, 1, 31),
            sf_modified_at=stamp,
            flags=["arr_missing"],
            field_stamps={"plan": "2026-03-01T00:00:00+00:00"},
        )
    )
    session.commit()
    session.expunge_all()
    account = session.scalars(select(Account)).one()
    assert account.arr == Decimal("48000.50")
    assert account.contract_end_on == date(2027, 1, 31)
    assert account.sf_modified_at == stamp
    assert account.sf_modified_at.tzinfo is not None
    assert account.flags == ["arr_missing"]
    assert account.field_stamps == {"plan": "2026-03-01T00:00:00+00:00"}
    assert account.created_at.tzinfo is not None


def test_datetimes_are_normalised_to_utc(session: Session) -> None:
    helsinki = timezone(timedelta(hours=2))
    session.add(Account(name="Tz", hs_modified_at=datetime(2026, 1, 1, 12, 0, tzinfo=helsinki)))
    session.commit()
    session.expunge_all()
    account = session.scalars(select(Account)).one()
    assert account.hs_modified_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def test_naive_datetime_is_refused(session: Session) -> None:
    session.add(Account(name="Naive", deleted_at=datetime(2026, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        session.commit()


@pytest.mark.parametrize("column", ["sf_id", "hs_id"])
def test_crm_ids_are_unique_when_present(session: Session, column: str) -> None:
    session.add_all([Account(name="A", **{column: "X1"}), Account(name="B", **{column: "X1"})])
    with pytest.raises(IntegrityError):
        session.commit()


def test_many_accounts_without_crm_ids_are_allowed(session: Session) -> None:
    session.add_all([Account(name="CS-only 1"), Account(name="CS-only 2")])
    session.commit()
    assert len(session.scalars(select(Account)).all()) == 2


def test_soft_delete_keeps_the_row_and_its_children(session: Session) -> None:
    account = Account(name="Gone Ltd", sf_id="001000000000002AAA")
    account.opportunities.append(Opportunity(name="Deal", sf_id="006000000000001AAA"))
    session.add(account)
    session.commit()
    account.deleted_at = datetime(2026, 5, 1, tzinfo=UTC)
    session.commit()
    session.expunge_all()
    live = session.scalars(select(Account).where(Account.deleted_at.is_(None))).all()
    assert live == []
    kept = session.scalars(select(Account)).one()
    assert kept.deleted_at == datetime(2026, 5, 1, tzinfo=UTC)
    assert [o.name for o in kept.opportunities] == ["Deal"]


def test_opportunity_without_parent_is_kept_with_its_crm_parent_ref(session: Session) -> None:
    session.add(Opportunity(name="Orphan", sf_id="006000000000009AAA", sf_account_id="001X"))
    session.commit()
    opp = session.scalars(select(Opportunity)).one()
    assert opp.account_id is None
    assert opp.sf_account_id == "001X"


def test_handover_note_json_columns(session: Session) -> None:
    note = HandoverNote(
        title="Handover: Acme",
        body="What was sold: Premium",
        sold={"plan": "Premium", "seats": 40, "arr": "48000"},
        contacts=[{"role": "champion", "name": "Jane", "email": "jane@acme.test"}],
        goals=["Go live by March"],
        risks=[],
        origin="crm",
    )
    session.add(note)
    session.commit()
    session.expunge_all()
    stored = session.scalars(select(HandoverNote)).one()
    assert stored.sold["seats"] == 40
    assert stored.contacts[0]["role"] == "champion"
    assert stored.goals == ["Go live by March"]


def test_one_onboarding_plan_per_opportunity(session: Session) -> None:
    account = Account(name="Plan Oy")
    opp = Opportunity(name="Won", account=account)
    session.add_all([account, opp])
    session.flush()
    plan = OnboardingPlan(
        account_id=account.id, opportunity_id=opp.id, tier_at_close="high", started_on=date.today()
    )
    plan.tasks.append(
        OnboardingTask(
            code="welcome", phase="handover", title="Welcome", owner_role="csm", due_on=date.today()
        )
    )
    session.add(plan)
    session.commit()
    session.add(
        OnboardingPlan(
            account_id=account.id,
            opportunity_id=opp.id,
            tier_at_close="high",
            started_on=date.today(),
        )
    )
    with pytest.raises(IntegrityError):
        session.commit()


def test_webhook_inbox_deduplicates_per_source(session: Session) -> None:
    session.add(WebhookEvent(source="hubspot", external_id="1001", raw_body="[]"))
    session.add(WebhookEvent(source="salesforce", external_id="1001", raw_body="<x/>"))
    session.commit()
    session.add(WebhookEvent(source="hubspot", external_id="1001", raw_body="[]"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_cursor_is_unique_per_crm_object_stream(session: Session) -> None:
    session.add(SyncCursor(crm="salesforce", object="Account", stream="changes", state={"a": 1}))
    session.add(SyncCursor(crm="salesforce", object="Account", stream="backfill"))
    session.commit()
    session.add(SyncCursor(crm="salesforce", object="Account", stream="changes"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_sync_run_counts_default_to_zero(session: Session) -> None:
    run = SyncRun(kind="pull", crm="hubspot", object="companies")
    session.add(run)
    session.commit()
    assert (run.read_count, run.failed_count, run.api_calls, run.status) == (0, 0, 0, "running")


def test_health_snapshot_one_per_account_per_day(session: Session) -> None:
    account = Account(name="Health Oy")
    session.add(account)
    session.flush()
    now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    for _ in range(2):
        session.add(
            HealthSnapshot(
                account_id=account.id,
                computed_on=now.date(),
                computed_at=now,
                score=72,
                band="green",
                coverage=80,
                components={"usage": 81},
                model_version="2026.1",
            )
        )
    with pytest.raises(IntegrityError):
        session.commit()
