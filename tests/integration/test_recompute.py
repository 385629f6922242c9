"""``run_recompute`` end to end on the database: signals stored directly (as the signals API
stores them), the accounts computed, snapshots, events and CS-change stamps written; only the
accounts whose inputs changed are selected again, and a second run changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.db.engine import make_session_factory
from app.db.health_store import due_account_ids
from app.db.models import (
    Account,
    AccountEvent,
    Contact,
    HealthSnapshot,
    Invoice,
    NpsResponse,
    OnboardingPlan,
    OnboardingTask,
    Opportunity,
    SuccessCriterion,
    SupportTicket,
    SyncRun,
    Touchpoint,
    UsageSnapshot,
)
from app.domain.health import MODEL_VERSION
from app.errors import ConfigError
from app.settings import Settings
from app.wiring.recompute import run_recompute

TODAY = datetime.now(UTC).date()


def settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def at(days_ago: int, hour: int = 10) -> datetime:
    d = TODAY - timedelta(days=days_ago)
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def add_account(s: Session, name: str, **kw: Any) -> Account:
    values: dict[str, Any] = {
        "arr": Decimal("30000"),
        "licensed_seats": 50,
        "customer_since_on": TODAY - timedelta(days=400),
        "contract_end_on": TODAY + timedelta(days=150),
        **kw,
    }
    account = Account(name=name, sf_id=f"001{abs(hash(name)) % 10**15:015d}", **values)
    s.add(account)
    s.flush()
    return account


def add_usage(
    s: Session, account: Account, weeks: int, users: int, drop_to: int | None = None
) -> None:
    for w in range(weeks):
        active = drop_to if drop_to is not None and w == 0 else users
        s.add(
            UsageSnapshot(
                account_id=account.id,
                observed_on=TODAY - timedelta(days=7 * w + 1),
                active_users_30d=active,
                licensed_seats=50,
                logins_30d=active * 6,
                key_features_used_30d=5,
                key_features_defined=8,
                last_login_at=at(7 * w + 1),
            )
        )


@pytest.fixture
def accounts(factory: sessionmaker[Session]) -> dict[str, int]:
    """Three accounts: healthy, a usage drop with a detractor decision maker, and no signals."""
    with factory() as s, s.begin():
        healthy = add_account(s, "Healthy")
        add_usage(s, healthy, 13, 45)
        champion = Contact(account_id=healthy.id, name="C", roles=["champion"])
        boss = Contact(account_id=healthy.id, name="B", roles=["decision_maker"])
        s.add_all([champion, boss])
        s.flush()
        s.add_all(
            [
                Touchpoint(
                    account_id=healthy.id,
                    contact_id=c.id,
                    kind="meeting",
                    occurred_at=at(10),
                    two_way=True,
                    scheduled=True,
                    external_id=f"meet-{c.id}",
                )
                for c in (champion, boss)
            ]
        )
        s.add(
            NpsResponse(
                account_id=healthy.id,
                contact_id=boss.id,
                score=10,
                responded_on=TODAY,
                external_id="nps-1",
            )
        )
        s.add(
            Invoice(
                account_id=healthy.id,
                external_id="inv-1",
                amount=Decimal("100"),
                currency="EUR",
                due_on=TODAY - timedelta(days=20),
                paid_on=TODAY - timedelta(days=25),
            )
        )

        risky = add_account(s, "Risky", arr=Decimal("120000"))
        add_usage(s, risky, 13, 40, drop_to=20)
        s.add(
            NpsResponse(
                account_id=risky.id,
                respondent_role="decision_maker",
                score=3,
                responded_on=TODAY - timedelta(days=5),
                external_id="nps-2",
            )
        )
        s.add(
            SupportTicket(
                account_id=risky.id,
                external_id="t-1",
                opened_at=at(20),
                priority="P1",
                escalated=True,
            )
        )
        s.add(
            Invoice(
                account_id=risky.id,
                external_id="inv-2",
                amount=Decimal("100"),
                currency="EUR",
                due_on=TODAY - timedelta(days=75),
            )
        )
        empty = add_account(s, "Empty", arr=None)
        return {"healthy": healthy.id, "risky": risky.id, "empty": empty.id}


def rows(factory: sessionmaker[Session], model: Any, *where: Any) -> list[Any]:
    with factory() as s:
        return list(s.scalars(select(model).where(*where)))


def test_recompute_writes_fields_snapshots_events_and_stamps(
    database_url: str, factory: sessionmaker[Session], accounts: dict[str, int]
) -> None:
    outcome = run_recompute(settings(database_url), session_factory=factory)

    assert outcome.result is not None
    assert outcome.result.status is RunStatus.SUCCEEDED
    assert outcome.selected == 3
    assert outcome.changed == 3
    with factory() as s:
        healthy = s.get(Account, accounts["healthy"])
        risky = s.get(Account, accounts["risky"])
        empty = s.get(Account, accounts["empty"])
        assert healthy is not None
        assert risky is not None
        assert empty is not None
        assert healthy.health_band == "green"
        assert healthy.tier == "high"
        assert risky.tier == "key"
        assert risky.health_band in ("yellow", "red")
        assert risky.health_reasons is not None
        assert "Active users down 50 %" in risky.health_reasons
        assert "payment_overdue" in risky.flags
        assert "usage_drop" in risky.flags
        assert risky.renewal_on == TODAY + timedelta(days=150)
        assert risky.renewal_status == "upcoming"
        assert risky.renewal_risk in ("high", "critical")
        assert risky.lifecycle_stage == "renewal"
        assert empty.health_band == "unknown"
        assert empty.tier == "low"
        for account in (healthy, risky, empty):
            assert account.health_computed_at is not None
            assert account.cs_changed_at is not None
            assert {"health_band", "tier", "renewal_on", "lifecycle_stage"} <= set(
                account.field_stamps
            )
        snapshots = list(s.scalars(select(HealthSnapshot)))
        assert {x.account_id for x in snapshots} == set(accounts.values())
        snap = next(x for x in snapshots if x.account_id == accounts["risky"])
        assert snap.computed_on == TODAY
        assert snap.model_version == MODEL_VERSION
        usage = snap.components["components"]["usage"]
        assert usage["inputs"]["prev_active_users_30d"] == 40
        assert usage["value"] <= 50
        kinds = sorted(e.kind for e in s.scalars(select(AccountEvent)))
        # a tier and a stage for each account; no band change on a first computation
        assert kinds.count("tier_changed") == 3
        assert kinds.count("lifecycle_stage_entered") == 3  # each has a contract: a customer
        run = s.scalars(select(SyncRun).where(SyncRun.kind == "recompute")).one()
        assert (run.crm, run.object, run.status) == ("cs", "accounts", "succeeded")
        assert (run.read_count, run.updated_count) == (3, 3)


def test_second_run_selects_nothing_and_changes_nothing(
    database_url: str, factory: sessionmaker[Session], accounts: dict[str, int]
) -> None:
    run_recompute(settings(database_url), session_factory=factory)
    before = {a.id: (a.cs_changed_at, dict(a.field_stamps)) for a in rows(factory, Account)}
    events = len(rows(factory, AccountEvent))

    again = run_recompute(settings(database_url), session_factory=factory)
    assert again.selected == 0
    assert again.changed == 0
    forced = run_recompute(settings(database_url), session_factory=factory, everything=True)
    assert forced.selected == 3
    assert forced.changed == 0
    assert forced.unchanged == 3

    after = {a.id: (a.cs_changed_at, dict(a.field_stamps)) for a in rows(factory, Account)}
    assert after == before  # no stamp: the push has nothing to write
    assert len(rows(factory, AccountEvent)) == events
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(HealthSnapshot)) == 3


def test_only_changed_inputs_are_selected(
    database_url: str, factory: sessionmaker[Session], accounts: dict[str, int]
) -> None:
    run_recompute(settings(database_url), session_factory=factory)
    later = datetime.now(UTC) + timedelta(seconds=1)
    with factory() as s, s.begin():
        # a signal arrived for "healthy" (the ingestion stamps signals_changed_at) ...
        s.add(
            NpsResponse(
                account_id=accounts["healthy"], score=2, responded_on=TODAY, external_id="nps-3"
            )
        )
        s.execute(
            update(Account)
            .where(Account.id == accounts["healthy"])
            .values(signals_changed_at=later)
        )
        # ... and an opportunity of "empty" changed
        s.add(
            Opportunity(
                account_id=accounts["empty"],
                name="New deal",
                is_closed=True,
                is_won=True,
                type="new_business",
                amount=Decimal("4000"),
                close_on=TODAY - timedelta(days=3),
                updated_at=later,
            )
        )
    outcome = run_recompute(settings(database_url), session_factory=factory)
    assert outcome.selected == 2
    with factory() as s:
        empty = s.get(Account, accounts["empty"])
        assert empty is not None
        assert empty.tier == "tech"
        change = s.scalars(
            select(AccountEvent)
            .where(
                AccountEvent.account_id == accounts["empty"], AccountEvent.kind == "tier_changed"
            )
            .order_by(AccountEvent.id.desc())
        ).first()
        assert change is not None
        assert (change.payload["old"], change.payload["new"]) == (
            "low",
            "tech",
        )


def _child_of(kind: str, account_id: int, s: Session) -> Any:
    """A row of ``kind`` belonging to ``account_id`` (a task through its plan)."""
    if kind == "opportunity":
        return Opportunity(account_id=account_id, name="Deal", is_closed=False, is_won=False)
    if kind == "contact":
        return Contact(account_id=account_id, name="New contact", roles=["user"])
    if kind == "success_criterion":
        return SuccessCriterion(account_id=account_id, text="Go live", external_id=f"sc-{uuid4()}")
    plan = OnboardingPlan(account_id=account_id, tier_at_close="low", started_on=TODAY)
    s.add(plan)
    s.flush()
    if kind == "onboarding_plan":
        return plan
    return OnboardingTask(
        plan_id=plan.id,
        code="kickoff",
        phase="start",
        title="Kick-off",
        owner_role="csm",
        due_on=TODAY,
    )


@pytest.mark.parametrize(
    "kind", ["opportunity", "contact", "success_criterion", "onboarding_plan", "onboarding_task"]
)
def test_a_changed_child_row_selects_its_account_only(
    kind: str, database_url: str, factory: sessionmaker[Session], accounts: dict[str, int]
) -> None:
    """docs/recompute.md rule 4: a row of the account's opportunities, contacts, success
    criteria, onboarding plans or tasks changed after its computation selects it; the same
    change before the computation, or on a deleted account, does not."""
    with factory() as s, s.begin():
        s.add(_child_of(kind, accounts["risky"], s))
        s.add(_child_of(kind, accounts["healthy"], s))
    run_recompute(settings(database_url), session_factory=factory)
    with factory() as s:
        assert due_account_ids(s.connection(), TODAY) == []
    with factory() as s, s.begin():  # created now: after the computation
        s.add(_child_of(kind, accounts["empty"], s))
        s.add(_child_of(kind, accounts["risky"], s))
        s.execute(
            update(Account)
            .where(Account.id == accounts["risky"])
            .values(deleted_at=datetime.now(UTC))
        )
    with factory() as s:
        assert due_account_ids(s.connection(), TODAY) == [accounts["empty"]]
        only = [accounts["healthy"], accounts["empty"]]
        assert due_account_ids(s.connection(), TODAY, only=only) == [accounts["empty"]]
        assert due_account_ids(s.connection(), TODAY, only=[accounts["healthy"]]) == []


def test_an_earlier_days_computation_is_due_again(
    database_url: str, factory: sessionmaker[Session], accounts: dict[str, int]
) -> None:
    yesterday = TODAY - timedelta(days=1)
    run_recompute(settings(database_url), session_factory=factory, as_of=yesterday)
    with factory() as s, s.begin():
        s.execute(update(Account).values(health_computed_at=at(1)))
    outcome = run_recompute(settings(database_url), session_factory=factory)
    assert outcome.selected == 3
    with factory() as s:
        days = sorted(s.scalars(select(HealthSnapshot.computed_on).distinct()))
    assert days == [yesterday, TODAY]


def test_one_account_and_unknown_accounts(
    database_url: str, factory: sessionmaker[Session], accounts: dict[str, int]
) -> None:
    outcome = run_recompute(
        settings(database_url), session_factory=factory, account_ids=[accounts["risky"]]
    )
    assert outcome.selected == 1
    with pytest.raises(ConfigError, match="--account 999999"):
        run_recompute(settings(database_url), session_factory=factory, account_ids=[999999])


def test_snapshot_per_day_is_upserted(
    database_url: str, factory: sessionmaker[Session], accounts: dict[str, int]
) -> None:
    run_recompute(settings(database_url), session_factory=factory)
    with factory() as s, s.begin():
        s.execute(
            update(UsageSnapshot)
            .where(UsageSnapshot.account_id == accounts["healthy"])
            .values(active_users_30d=0, logins_30d=0, last_login_at=at(40))  # dormant
        )
    run_recompute(settings(database_url), session_factory=factory, everything=True, chunk_size=1)
    snaps = rows(factory, HealthSnapshot, HealthSnapshot.account_id == accounts["healthy"])
    assert len(snaps) == 1
    with factory() as s:
        healthy = s.get(Account, accounts["healthy"])
        assert healthy is not None
        assert healthy.health_score == snaps[0].score
        band_events = list(
            s.scalars(select(AccountEvent).where(AccountEvent.kind == "health_band_changed"))
        )
    assert [e.payload["old"] for e in band_events] == ["green"]


def test_open_renewal_date_used_when_no_contract(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    with factory() as s, s.begin():
        a = add_account(s, "Deal only", contract_end_on=None)
        s.add(
            Opportunity(
                account_id=a.id,
                name="Won",
                is_closed=True,
                is_won=True,
                type="new_business",
                amount=Decimal("12000"),
                close_on=TODAY - timedelta(days=300),
                contract_term_months=12,
            )
        )
        account_id = a.id
    run_recompute(settings(database_url), session_factory=factory)
    with factory() as s:
        a2 = s.get(Account, account_id)
        assert a2 is not None
        expected = date(*(TODAY - timedelta(days=300)).timetuple()[:3])
        assert a2.renewal_on is not None
        assert a2.renewal_on > expected
        assert a2.renewal_status == "in_window"
