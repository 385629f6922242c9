"""CSMs in the database (domain.md 8): the import upserts by e-mail, the load is computed from the
accounts owned and backed up, and an assignment is written as stamped CS-side writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.csm_store import (
    assign_account_csm,
    csm_candidates,
    import_csms,
    parse_csm_rows,
)
from app.db.engine import make_session_factory
from app.db.models import Account, Csm, OnboardingPlan

TODAY = datetime.now(UTC).date()
HEADER = ["name", "email", "tiers", "capacity_units", "active"]


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def rows(*cells: list[str]) -> list[tuple[int, list[str]]]:
    return [(i + 2, list(c)) for i, c in enumerate(cells)]


def test_parse_names_line_and_column() -> None:
    parsed, errors = parse_csm_rows(
        HEADER,
        rows(
            ["Cara", "cara@example.com", "key;high", "100", "yes"],
            ["", "dan@example.com", "low", "50", "no"],
            ["Eve", "not-an-email", "gold", "-1", "maybe"],
            ["Cara 2", "CARA@example.com", "", "", ""],
        ),
    )
    texts = [e.text("csms.csv") for e in errors]
    assert any(t.startswith("csms.csv:4: email: not an e-mail address") for t in texts)
    assert any(t.startswith(("csms.csv:4: tiers.", "csms.csv:4: tiers:")) for t in texts)
    assert any(t.startswith("csms.csv:4: capacity_units:") for t in texts)
    assert any(t.startswith("csms.csv:4: active:") for t in texts)
    assert "csms.csv:5: email: 'cara@example.com' is also on line 2" in texts
    assert [line for line, _r, _p in parsed] == [2, 3]  # line 3's name: checked on import


def test_unknown_or_missing_columns() -> None:
    _p, errors = parse_csm_rows(["name", "mail"], [])
    assert [e.text("f") for e in errors] == [
        "f:1: mail: unknown column (known: name, email, tiers, capacity_units, region, "
        "language, is_pool, active, out_of_office_until, sf_user_id, hs_owner_id)",
        "f:1: email: missing column",
    ]
    _p, errors = parse_csm_rows(["email", "tiers"], [(2, ["a@b.test", "key"])])
    assert not errors  # an update needs only the e-mail


def test_a_new_csm_needs_a_name(factory: sessionmaker[Session]) -> None:
    parsed, errors = parse_csm_rows(["email", "tiers"], [(2, ["new@example.com", "key"])])
    assert not errors
    with factory() as s, s.begin():
        result = import_csms(s, parsed)
    assert [e.text("f") for e in result.errors] == ["f:2: name: required for a new CSM"]


def test_import_is_idempotent_by_email(factory: sessionmaker[Session]) -> None:
    parsed, errors = parse_csm_rows(
        HEADER,
        rows(
            ["Cara", "Cara@Example.com", "key;high", "100", "yes"],
            ["Dan", "dan@example.com", "low", "", ""],
        ),
    )
    assert not errors
    with factory() as s, s.begin():
        first = import_csms(s, parsed)
    with factory() as s, s.begin():
        second = import_csms(s, parsed)
    assert (first.created, first.updated, first.unchanged) == (2, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2)
    changed, _e = parse_csm_rows(["email", "capacity_units"], rows(["dan@example.com", "50"]))
    with factory() as s, s.begin():
        third = import_csms(s, changed)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 0)
    with factory() as s:
        csms = {c.email: c for c in s.scalars(select(Csm))}
    assert set(csms) == {"cara@example.com", "dan@example.com"}
    assert csms["cara@example.com"].tiers == ["key", "high"]
    assert csms["dan@example.com"].capacity_units == 50  # updated
    assert csms["dan@example.com"].tiers == ["low"]  # a column the file left out is kept


def test_import_conflicting_crm_ids_writes_nothing(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        s.add(Csm(name="Old", email="old@example.com", sf_user_id="005000000000001AAA"))
    parsed, errors = parse_csm_rows(
        ["name", "email", "sf_user_id"],
        rows(["New", "new@example.com", "005000000000001AAA"], ["Ok", "ok@example.com", ""]),
    )
    assert not errors
    with factory() as s, s.begin():
        result = import_csms(s, parsed)
    assert [e.text("f") for e in result.errors] == [
        "f:2: sf_user_id: '005000000000001AAA' belongs to CSM old@example.com"
    ]
    with factory() as s:
        assert s.scalar(select(Csm.id).where(Csm.email == "ok@example.com")) is None


def _setup(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as s, s.begin():
        cara = Csm(name="Cara", email="cara@example.com", tiers=["key", "high", "low"])
        dan = Csm(name="Dan", email="dan@example.com", tiers=["key", "high", "low"])
        pool = Csm(name="Pool", email="pool@example.com", tiers=["tech"], is_pool=True)
        s.add_all([cara, dan, pool])
        s.flush()
        # Cara: one key account onboarding (15), one high (3), backup of one (2) = 20
        s.add(
            Account(
                name="K",
                tier="key",
                lifecycle_stage="onboarding",
                csm_id=cara.id,
                arr=Decimal(150_000),
            )
        )
        s.add(
            Account(
                name="H", tier="high", lifecycle_stage="steady", csm_id=cara.id, arr=Decimal(30_000)
            )
        )
        s.add(Account(name="K2", tier="key", csm_id=dan.id, backup_csm_id=cara.id))
        # deleted accounts do not count
        s.add(Account(name="gone", tier="key", csm_id=cara.id, deleted_at=datetime.now(UTC)))
        new = Account(name="New", tier="high")
        s.add(new)
        s.flush()
        s.add(
            OnboardingPlan(
                account_id=new.id,
                tier_at_close="high",
                started_on=TODAY - timedelta(days=3),
                csm_id=dan.id,
            )
        )
        return {"cara": cara.id, "dan": dan.id, "pool": pool.id, "new": new.id}


def test_load_is_computed_from_accounts(factory: sessionmaker[Session]) -> None:
    """8.2: units per tier, x1.5 while onboarding, 2 per backup; deleted accounts left out."""
    ids = _setup(factory)
    with factory() as s:
        loads = {c.id: c for c in csm_candidates(s, today=TODAY)}
    assert loads[ids["cara"]].load_units == 15 + 3 + 2
    assert loads[ids["cara"]].arr == Decimal(180_000)
    assert loads[ids["dan"]].load_units == 10
    assert loads[ids["dan"]].recent_onboardings == 1
    assert loads[ids["pool"]].is_pool


def test_assignment_is_written_and_stamped(factory: sessionmaker[Session]) -> None:
    """8.3: the lowest utilisation after (Dan 10 + 4.5 vs Cara 20 + 4.5); the columns stamped."""
    ids = _setup(factory)
    with factory() as s, s.begin():
        result = assign_account_csm(s, account_id=ids["new"], tier="high", today=TODAY)
    assert result.csm.csm_id == ids["dan"]
    assert result.csm.reason == "capacity"
    with factory() as s:
        account = s.get(Account, ids["new"])
        assert account is not None
        assert account.csm_id == ids["dan"]
        assert "csm_id" in account.field_stamps
        assert account.cs_changed_at is not None
    with factory() as s, s.begin():
        again = assign_account_csm(s, account_id=ids["new"], tier="high", today=TODAY)
    assert again.csm.reason == "continuity"


def test_key_assignment_gets_a_backup(factory: sessionmaker[Session]) -> None:
    ids = _setup(factory)
    with factory() as s, s.begin():
        result = assign_account_csm(s, account_id=ids["new"], tier="key", today=TODAY)
    assert result.backup is not None
    assert {result.csm.csm_id, result.backup.csm_id} == {ids["cara"], ids["dan"]}
    with factory() as s:
        account = s.get(Account, ids["new"])
        assert account is not None
        assert account.backup_csm_id == result.backup.csm_id


def test_deactivating_a_csm_reassigns_their_accounts(factory: sessionmaker[Session]) -> None:
    """8.3 step 7 through the import: Cara's accounts go through steps 4-6 (key first, loads
    updated as it goes), each stamped for the push, with an ``announce_csm_change`` task in a
    ``csm_reassigned`` event; her open onboarding tasks move to the new CSM; all in the import's
    transaction, and once only."""
    from app.db.csm_store import reassign_csm_accounts
    from app.db.models import AccountEvent, OnboardingTask

    ids = _setup(factory)
    with factory() as s, s.begin():
        eve = Csm(name="Eve", email="eve@example.com", tiers=["key", "high", "low"])
        s.add(eve)
        s.flush()
        ids["eve"] = eve.id
        by_name = {a.name: a for a in s.scalars(select(Account))}
        plan = OnboardingPlan(
            account_id=by_name["K"].id,
            tier_at_close="key",
            started_on=TODAY - timedelta(days=40),
            csm_id=ids["cara"],
        )
        s.add(plan)
        s.flush()
        for code, status in (("go_live", "open"), ("welcome", "done")):
            s.add(
                OnboardingTask(
                    plan_id=plan.id,
                    code=code,
                    phase="p",
                    title=code,
                    owner_role="csm",
                    assignee="cara@example.com",
                    due_on=TODAY,
                    status=status,
                )
            )
        ids.update({n: a.id for n, a in by_name.items()})
    parsed, errors = parse_csm_rows(["email", "active"], rows(["cara@example.com", "no"]))
    assert errors == []
    with factory() as s, s.begin():
        result = import_csms(s, parsed)
    assert result.updated == 1
    assert result.reassigned_account_ids == tuple(sorted([ids["K"], ids["H"], ids["K2"]]))
    with factory() as s:
        accounts = {a.name: a for a in s.scalars(select(Account))}
        # K (key, onboarding, 15 units) chooses first: Dan and Eve both empty once Cara's
        # accounts are left out; Dan has a recent onboarding, so Eve; Dan backs it up (2)
        assert (accounts["K"].csm_id, accounts["K"].backup_csm_id) == (ids["eve"], ids["dan"])
        assert accounts["K"].csm_email == "eve@example.com"
        assert {"csm_id", "csm_email", "backup_csm_id"} <= set(accounts["K"].field_stamps)
        # K2: Dan keeps it (continuity); Cara was its backup: Eve now (Dan is the primary)
        assert (accounts["K2"].csm_id, accounts["K2"].backup_csm_id) == (ids["dan"], ids["eve"])
        # H (high, 3): Dan 12 + 3 < Eve 17 + 3
        assert accounts["H"].csm_id == ids["dan"]
        assert accounts["gone"].csm_id == ids["cara"]  # deleted accounts are left alone
        events = list(s.scalars(select(AccountEvent).where(AccountEvent.kind == "csm_reassigned")))
        assert sorted(e.account_id for e in events) == sorted(result.reassigned_account_ids)
        for event in events:
            assert event.payload["leaving_csm"] == "cara@example.com"
            assert event.payload["task"]["code"] == "announce_csm_change"
            assert event.payload["task"]["due_on"] == TODAY.isoformat()
        on_k = next(e for e in events if e.account_id == ids["K"])
        assert on_k.payload["csm_before"] == "cara@example.com"
        assert on_k.payload["csm"] == "eve@example.com"
        assert on_k.payload["task"]["assignee"] == "eve@example.com"
        tasks = {t.code: t for t in s.scalars(select(OnboardingTask))}
        assert tasks["go_live"].assignee == "eve@example.com"  # open: moved
        assert tasks["welcome"].assignee == "cara@example.com"  # done: history kept
        assert (
            s.scalar(select(OnboardingPlan.csm_id).where(OnboardingPlan.account_id == ids["K"]))
            == ids["eve"]
        )
    with factory() as s, s.begin():
        assert import_csms(s, parsed).reassigned_account_ids == ()  # already inactive
        assert reassign_csm_accounts(s, ids["cara"], today=TODAY) == []  # holds nothing now
    with factory() as s:
        count = s.scalar(
            select(func.count())
            .select_from(AccountEvent)
            .where(AccountEvent.kind == "csm_reassigned")
        )
        assert count == 3


def test_a_failed_import_reassigns_nothing(factory: sessionmaker[Session]) -> None:
    """All or nothing: the caller rolls back a failed import, and the reassignment with it."""
    ids = _setup(factory)
    parsed, _ = parse_csm_rows(["email", "active"], rows(["cara@example.com", "no"]))
    with factory() as s:
        result = import_csms(s, parsed)
        assert result.reassigned_account_ids
        s.rollback()
    with factory() as s:
        assert s.get(Csm, ids["cara"]).active  # type: ignore[union-attr]
        owned = s.scalars(select(Account.name).where(Account.csm_id == ids["cara"])).all()
        assert sorted(owned) == ["H", "K", "gone"]
