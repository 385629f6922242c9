"""The driver-level page upsert (app/db/bulk.py) stores what the ORM stores, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.engine import make_session_factory
from app.db.models import Account, Opportunity
from app.db.sync_store import SqlSyncStore

T0 = datetime(2026, 3, 2, 8, 15, 30, 123456, tzinfo=UTC)


def _account_row(n: int, **extra: object) -> dict[str, object]:
    return {
        "sf_id": f"001{n:015d}",
        "name": f"Company {n}",
        "arr": Decimal("48000.50"),
        "contract_end_on": date(2027, 1, 31),
        "strategic_account": n % 2 == 0,
        "sf_modified_at": T0 + timedelta(seconds=n),
        "updated_at": T0,
        **extra,
    }


def _upsert(store: SqlSyncStore, table: str, rows: list[dict[str, object]]) -> None:
    with store.page() as writer:
        writer.upsert(table, "sf_id", [(None, row) for row in rows])


def test_inserted_rows_read_back_through_the_orm_with_their_types(engine: Engine) -> None:
    store = SqlSyncStore(make_session_factory(engine))
    _upsert(store, "accounts", [_account_row(n) for n in range(3)])
    with Session(engine) as session:
        accounts = session.scalars(select(Account).order_by(Account.sf_id)).all()
        assert [a.name for a in accounts] == ["Company 0", "Company 1", "Company 2"]
        first = accounts[1]
        assert first.arr == Decimal("48000.50")
        assert first.contract_end_on == date(2027, 1, 31)
        assert first.strategic_account is False
        assert first.sf_modified_at == T0 + timedelta(seconds=1)
        assert first.sf_modified_at.tzinfo is not None
        # Insert defaults the rows did not carry: filled, like an ORM insert would.
        assert first.flags == []
        assert first.field_stamps == {}
        assert first.created_at is not None


def test_update_sets_the_row_columns_and_keeps_insert_only_ones(engine: Engine) -> None:
    factory = make_session_factory(engine)
    store = SqlSyncStore(factory)
    _upsert(store, "accounts", [_account_row(1)])
    with factory() as session, session.begin():
        account = session.scalars(select(Account)).one()
        account.field_stamps = {"plan": "2026-03-01T00:00:00+00:00"}
        account.flags = ["arr_missing"]
        account.industry = "Retail"
        created = account.created_at
    later = T0 + timedelta(hours=1)
    _upsert(store, "accounts", [_account_row(1, name="Renamed Oy", updated_at=later)])
    with Session(engine) as session:
        account = session.scalars(select(Account)).one()
        assert account.name == "Renamed Oy"
        assert account.updated_at == later
        # Not in the page: the update leaves them alone (no reset to the insert defaults).
        assert account.field_stamps == {"plan": "2026-03-01T00:00:00+00:00"}
        assert account.flags == ["arr_missing"]
        assert account.industry == "Retail"
        assert account.created_at == created


def test_null_and_unicode_values_round_trip(engine: Engine) -> None:
    store = SqlSyncStore(make_session_factory(engine))
    rows = [
        _account_row(1, name='Tab\there, "quote" and \\ backslash', industry=None),
        _account_row(2, name="Åbo Akademi ✓\nsecond line", industry="Education"),
    ]
    _upsert(store, "accounts", rows)
    with Session(engine) as session:
        names = dict(session.execute(select(Account.sf_id, Account.name)).all())
        industries = dict(session.execute(select(Account.sf_id, Account.industry)).all())
    assert names[str(rows[0]["sf_id"])] == rows[0]["name"]
    assert names[str(rows[1]["sf_id"])] == rows[1]["name"]
    assert industries[str(rows[0]["sf_id"])] is None


def test_a_row_sent_twice_stays_one_row_with_its_defaults(engine: Engine) -> None:
    store = SqlSyncStore(make_session_factory(engine))
    _upsert(store, "accounts", [_account_row(1)])
    _upsert(store, "opportunities", [{"sf_id": "006000000000000001", "name": "Deal"}])
    # The same id again: updated in place, not a second row or a conflict error.
    _upsert(store, "opportunities", [{"sf_id": "006000000000000001", "name": "Deal"}])
    with Session(engine) as session:
        deal = session.scalars(select(Opportunity)).one()
        assert (deal.name, deal.is_closed, deal.is_won) == ("Deal", False, False)


def test_a_page_rolls_back_as_a_whole(engine: Engine) -> None:
    store = SqlSyncStore(make_session_factory(engine))
    try:
        with store.page() as writer:
            rows = [_account_row(n) for n in range(5)]
            writer.upsert("accounts", "sf_id", [(None, row) for row in rows])
            raise RuntimeError("crash after the write, before the commit")
    except RuntimeError:
        pass
    with Session(engine) as session:
        assert session.scalars(select(Account)).all() == []
    # The staging table (PostgreSQL) went with the transaction: the next page works.
    _upsert(store, "accounts", [_account_row(n) for n in range(5)])
    with Session(engine) as session:
        assert len(session.scalars(select(Account)).all()) == 5


def test_new_rows_that_exist_after_all_are_updated_but_keep_their_links(engine: Engine) -> None:
    """The race the ``new_rows`` plan covers: a row created since the page read its ids."""
    factory = make_session_factory(engine)
    store = SqlSyncStore(factory)
    _upsert(store, "accounts", [_account_row(1), _account_row(2)])
    with factory() as session:
        first, second = session.scalars(select(Account.id).order_by(Account.sf_id)).all()
    deal = {"sf_id": "006000000000000001", "name": "Deal", "account_id": first}
    _upsert(store, "opportunities", [deal])
    moved = {**deal, "name": "Deal, renamed", "account_id": second}
    with store.page() as writer:
        writer.upsert("opportunities", "sf_id", [(None, moved)], new_rows=True)
    with Session(engine) as session:
        row = session.scalars(select(Opportunity)).one()
        assert (row.name, row.account_id) == ("Deal, renamed", first)
    # As an update (the row was read as existing), the link moves too.
    with store.page() as writer:
        writer.upsert("opportunities", "sf_id", [(None, moved)])
    with Session(engine) as session:
        assert session.scalars(select(Opportunity.account_id)).one() == second
