"""``app.db.health_store.write_chunk`` against a CS-side edit committed while a chunk is
computed: the edit's stamp survives (the stamps are merged by the database, not from the
chunk's read), and ``cs_changed_at`` only moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.cs_writes import stamp_cs_change
from app.db.engine import make_session_factory
from app.db.health_store import load_chunk, load_feeds, write_chunk
from app.db.models import Account
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
            {f.id: f for f in facts},
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
