"""``app.db.health_store``: ``load_chunk`` reads the driver's rows into the values the ORM
gives; ``write_chunk`` against a CS-side edit committed while a chunk is computed: the edit's
stamp survives (the stamps are merged by the database, not from the chunk's read), and
``cs_changed_at`` only moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.cs_writes import stamp_cs_change
from app.db.engine import make_session_factory
from app.db.health_store import ACCOUNT_COLUMNS, load_chunk, load_feeds, write_chunk
from app.db.models import Account, HealthSnapshot
from app.domain.config import DEFAULT_CONFIG
from app.domain.recompute import compute_account

TODAY = datetime.now(UTC).date()


def _account(engine: Engine) -> int:
    with make_session_factory(engine)() as s:
        account = Account(
            name="Acme",
            arr=Decimal("30000"),
            licensed_seats=50,
            customer_since_on=TODAY - timedelta(days=400),
            contract_end_on=TODAY + timedelta(days=150),
        )
        s.add(account)
        s.flush()
        stamp_cs_change(account, ["name"], datetime(2026, 1, 2, tzinfo=UTC))
        s.commit()
        return account.id


def _edit(engine: Engine, account_id: int, at: datetime) -> None:
    """A CS-side edit of ``domain`` in its own transaction, as the API makes one."""
    with make_session_factory(engine)() as s:
        account = s.get(Account, account_id)
        assert account is not None
        account.domain = "acme.example"
        stamp_cs_change(account, ["domain"], at)
        s.commit()


@pytest.mark.parametrize("edit_later", [False, True], ids=["edit-before", "edit-after-stamp"])
def test_an_edit_committed_between_read_and_write_keeps_its_stamp(
    engine: Engine, edit_later: bool
) -> None:
    account_id = _account(engine)
    computed_at = datetime.now(UTC)
    stamped_at = computed_at + timedelta(seconds=1)
    # an edit stamped after the recompute's stamp must keep cs_changed_at at its own stamp
    edit_at = stamped_at + timedelta(hours=1) if edit_later else computed_at
    with engine.connect() as conn:
        facts = load_chunk(conn, [account_id], TODAY, DEFAULT_CONFIG)
        feeds = load_feeds(conn)
        outcomes = [compute_account(f, TODAY, computed_at, feeds) for f in facts]
        assert outcomes[0].changed  # a first computation changes the output columns

        _edit(engine, account_id, edit_at)  # committed while the chunk is computed

        write_chunk(
            conn,
            outcomes,
            computed_at=computed_at,
            stamped_at=stamped_at,
        )
        conn.commit()

    with Session(engine) as s:
        account = s.get(Account, account_id)
        assert account is not None
        stamp = stamped_at.isoformat(timespec="microseconds")
        assert account.domain == "acme.example"
        assert account.field_stamps["domain"] == edit_at.isoformat(timespec="microseconds")
        assert account.field_stamps["name"] == "2026-01-02T00:00:00.000000+00:00"
        assert {account.field_stamps[c] for c in outcomes[0].changed} == {stamp}
        assert account.cs_changed_at == max(edit_at, stamped_at)
        assert account.health_computed_at == computed_at


def test_load_chunk_reads_accounts_as_the_orm_does(engine: Engine) -> None:
    """Every column the recompute reads, set, unset and converted (dates, 2-place decimals,
    booleans, aware datetimes, JSON), equals the ORM's value."""
    entered = datetime(2026, 3, 2, 8, 15, 30, 123456, tzinfo=UTC)
    with make_session_factory(engine)() as s:
        full = Account(
            name="Full",
            tier_override="key",
            tier_override_reason="board decision",
            tier_override_until=TODAY + timedelta(days=30),
            arr=Decimal("12345.6"),
            mrr=Decimal("1028.80"),
            potential_arr=Decimal("99999.99"),
            strategic_account=True,
            licensed_seats=25,
            customer_since_on=TODAY - timedelta(days=700),
            contract_start_on=TODAY - timedelta(days=300),
            contract_end_on=TODAY + timedelta(days=65),
            auto_renew=False,
            churned_at=entered,
            churn_reason="budget",
            health_score=61,
            health_band="yellow",
            health_trend="down",
            health_reasons="Active users down 50 %",
            health_coverage=80,
            loyalty_type="engaged",
            false_loyalty=False,
            tier="key",
            growth_focus="expand",
            renewal_on=TODAY + timedelta(days=65),
            renewal_status="upcoming",
            renewal_risk="high",
            lifecycle_stage="renewal",
            lifecycle_entered_at=entered,
            flags=["usage_drop", "payment_overdue"],
        )
        bare = Account(name="Bare")
        s.add_all([full, bare])
        s.commit()
        ids = sorted([full.id, bare.id])
        expected = {
            a.id: {c: getattr(a, c) for c in ACCOUNT_COLUMNS}
            for a in (s.get(Account, i) for i in ids)
            if a
        }
    with engine.connect() as conn:
        facts = load_chunk(conn, ids, TODAY, DEFAULT_CONFIG)
    assert [f.id for f in facts] == ids
    for f in facts:
        assert dict(f.stored) == expected[f.id]
        for column, value in f.stored.items():
            assert type(value) is type(expected[f.id][column]), column
        if f.stored["lifecycle_entered_at"] is not None:
            assert f.stored["lifecycle_entered_at"].utcoffset() == timedelta(0)


def test_a_snapshot_written_meanwhile_makes_the_copy_an_upsert(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL COPYs a day's first snapshots straight into the table; if one exists after
    all (the probe raced a run that lost its lease), the chunk is upserted instead of failing."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the COPY path is PostgreSQL's")
    from app.db import health_store

    account_id = _account(engine)
    monkeypatch.setattr(health_store, "_any_key_exists", lambda *_args: False)
    written = []
    for _ in range(2):
        computed_at = datetime.now(UTC)
        with engine.connect() as conn:
            facts = load_chunk(conn, [account_id], TODAY, DEFAULT_CONFIG)
            feeds = load_feeds(conn)
            outcomes = [compute_account(f, TODAY, computed_at, feeds) for f in facts]
            write_chunk(
                conn,
                outcomes,
                computed_at=computed_at,
                stamped_at=computed_at,
            )
            conn.commit()
        written.append(computed_at)
    with Session(engine) as s:
        snapshots = list(s.scalars(select(HealthSnapshot)))
    assert [(x.account_id, x.computed_on) for x in snapshots] == [(account_id, TODAY)]
    assert snapshots[0].computed_at == written[-1]  # the second write replaced the first
