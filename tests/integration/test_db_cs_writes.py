"""stamp_cs_change: the per-field stamps and cs_changed_at that the push streams over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.cs_writes import stamp_cs_change
from app.db.models import Account


def test_stamps_columns_and_moves_cs_changed_at_forward_only(session: Session) -> None:
    account = Account(name="Acme")
    session.add(account)
    session.flush()
    t1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    stamp_cs_change(account, ["health_score", "tier"], t1)
    session.commit()

    stored = session.scalars(select(Account)).one()
    assert stored.cs_changed_at == t1
    assert set(stored.field_stamps) == {"health_score", "tier"}
    assert datetime.fromisoformat(stored.field_stamps["tier"]) == t1

    earlier = t1 - timedelta(hours=1)
    stamp_cs_change(stored, ["health_band"], earlier)
    session.commit()
    again = session.scalars(select(Account)).one()
    assert again.cs_changed_at == t1, "an older stamp never moves cs_changed_at back"
    assert datetime.fromisoformat(again.field_stamps["health_band"]) == earlier
    assert datetime.fromisoformat(again.field_stamps["tier"]) == t1


def test_no_columns_changes_nothing(session: Session) -> None:
    account = Account(name="Acme")
    session.add(account)
    session.flush()
    stamp_cs_change(account, [])
    assert account.cs_changed_at is None
    assert account.field_stamps in ({}, None)
