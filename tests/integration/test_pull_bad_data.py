"""Bad CRM data never stops the sync (issue #14), on the test database (SQLite or PostgreSQL).

Engine-level cases run against the in-memory CRM; the values the issue reproduced (a deal amount
of 1e17, 3e9 or 2.7 seats, an unparseable Website, a 300-character name, a nameless company) go
through the sandbox and the real clients. On PostgreSQL the out-of-range numbers used to fail
their page on every pass; on SQLite they were stored. Both must now store the record with that
field empty and a field-level ``sync_errors`` row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.db import bulk
from app.db.engine import make_session_factory
from app.db.models import Account, Opportunity, SyncCursor, SyncErrorRecord, SyncRun
from app.sync.pull import PullEngine
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.integration.test_pull_engine import T0, account, make_engine
from tests.integration.test_pull_pitfalls import engine_for, sf_rest
from tests.support.fake_crm import FakeSalesforce


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def crm() -> FakeSalesforce:
    return FakeSalesforce()


@pytest.fixture
def clock() -> list[datetime]:
    return [T0 + timedelta(days=1)]


def open_errors(factory: sessionmaker[Session]) -> list[SyncErrorRecord]:
    with factory() as s:
        return list(
            s.scalars(
                select(SyncErrorRecord)
                .where(SyncErrorRecord.resolved_at.is_(None))
                .order_by(SyncErrorRecord.record_id, SyncErrorRecord.id)
            )
        )


def sf_id(n: int) -> str:
    return f"001{n:015d}"


# --------------------------------------------------------------------------------------------
# field-level errors: stored, keyed by field, resolved when the value is fixed
# --------------------------------------------------------------------------------------------


def test_a_bad_field_is_stored_empty_with_one_open_row_per_field(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    crm.put("Account", account(1, T0, Website="not a website", Licensed_Seats__c=Decimal("2.7")))
    crm.put("Account", account(2, T0))
    engine = make_engine(factory, crm, clock)
    first = engine.pull("Account")
    assert first.status is RunStatus.PARTIAL
    assert (first.counts.created, first.counts.failed) == (2, 1)
    with factory() as s:
        stored = s.scalars(select(Account).where(Account.sf_id == sf_id(1))).one()
    assert (stored.name, stored.domain, stored.licensed_seats) == ("Account 1", None, None)
    errors = open_errors(factory)
    assert [(e.record_id, e.category, e.payload and e.payload["field"]) for e in errors] == [
        (sf_id(1), "invalid_field", "Website"),
        (sf_id(1), "invalid_field", "Licensed_Seats__c"),
    ]
    assert errors[0].payload is not None
    assert errors[0].payload["value"] == "not a website"
    assert "Website" in errors[0].message

    # Read again unchanged (a backfill): the same rows, one more attempt each, no new rows.
    crm.put("Account", account(1, T0 + timedelta(minutes=1), Website="not a website"))
    engine.pull("Account")
    errors = open_errors(factory)
    assert [(e.payload and e.payload["field"], e.attempts) for e in errors] == [("Website", 2)]
    with factory() as s:
        total = s.scalar(select(func.count()).select_from(SyncErrorRecord))
    assert total == 2  # the seats row was resolved (the value is valid now), not duplicated

    # Fixed in the CRM: the field's row is resolved, the value stored.
    crm.put("Account", account(1, T0 + timedelta(minutes=2)))
    last = engine.pull("Account")
    assert last.status is RunStatus.SUCCEEDED
    assert open_errors(factory) == []
    with factory() as s:
        stored = s.scalars(select(Account).where(Account.sf_id == sf_id(1))).one()
    assert stored.domain == "acct1.test"


def test_a_record_kept_out_then_stored_with_a_bad_field_closes_its_record_row(
    factory: sessionmaker[Session], crm: FakeSalesforce, clock: list[datetime]
) -> None:
    nameless = account(1, T0)
    del nameless["Name"]  # not even fetched: nothing to put a placeholder on, kept out
    crm.put("Account", nameless)
    engine = make_engine(factory, crm, clock)
    engine.pull("Account")
    assert [e.category for e in open_errors(factory)] == ["validation"]
    crm.put("Account", account(1, T0 + timedelta(minutes=1), ARR__c="lots"))
    engine.pull("Account")
    assert [e.category for e in open_errors(factory)] == ["invalid_field"]


# --------------------------------------------------------------------------------------------
# a row that fails only at the database is isolated
# --------------------------------------------------------------------------------------------


def _refuse_at_the_database(monkeypatch: pytest.MonkeyPatch, victims: set[str]) -> None:
    """Give the victims' rows a NULL name after the mapping checked them: both databases refuse
    it (NOT NULL), as they would any value the mapping missed."""
    original = PullEngine._row

    def row(*args: Any) -> dict[str, Any]:
        out = original(*args)
        if out.get("sf_id") in victims:
            out["name"] = None
        return out

    monkeypatch.setattr(PullEngine, "_row", staticmethod(row))


@pytest.mark.parametrize(
    "victims", [{3}, {1, 2, 7}, set(range(1, 10))], ids=["one", "three", "all"]
)
def test_a_row_failing_at_the_database_is_isolated_and_the_page_commits(
    factory: sessionmaker[Session],
    crm: FakeSalesforce,
    clock: list[datetime],
    monkeypatch: pytest.MonkeyPatch,
    victims: set[int],
) -> None:
    for n in range(1, 10):
        crm.put("Account", account(n, T0 + timedelta(seconds=n)))
    _refuse_at_the_database(monkeypatch, {sf_id(n) for n in victims})
    engine = make_engine(factory, crm, clock)
    result = engine.pull("Account")
    assert result.status is RunStatus.PARTIAL, result.error
    assert (result.counts.created, result.counts.failed) == (9 - len(victims), len(victims))
    with factory() as s:
        stored = set(s.scalars(select(Account.sf_id)))
        cursor = s.scalars(select(SyncCursor)).one()
        run = s.get(SyncRun, result.run_id)
    assert stored == {sf_id(n) for n in range(1, 10) if n not in victims}
    assert cursor.watermark_at is not None  # the page's cursor committed with the good rows
    assert run is not None
    assert (run.created_count, run.failed_count) == (9 - len(victims), len(victims))
    errors = open_errors(factory)
    assert sorted(e.record_id or "" for e in errors) == sorted(sf_id(n) for n in victims)
    for error in errors:
        assert error.category == "database"
        assert "null" in error.message.lower()  # the database's own words
        assert error.payload is not None
        assert error.payload["row"]["sf_id"] == error.record_id

    # Without the fault the next pass stores them and resolves their rows.
    monkeypatch.undo()
    for n in victims:
        crm.put("Account", account(n, T0 + timedelta(minutes=n)))
    again = make_engine(factory, crm, clock).pull("Account")
    assert again.status is RunStatus.SUCCEEDED, again.error
    assert open_errors(factory) == []
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 9


def test_an_update_refused_at_the_database_keeps_the_stored_row(
    factory: sessionmaker[Session],
    crm: FakeSalesforce,
    clock: list[datetime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in (1, 2):
        crm.put("Account", account(n, T0))
    engine = make_engine(factory, crm, clock)
    engine.pull("Account")
    for n in (1, 2):
        crm.put("Account", account(n, T0 + timedelta(minutes=1), Industry="Retail"))
    _refuse_at_the_database(monkeypatch, {sf_id(1)})
    result = engine.pull("Account")
    assert (result.counts.updated, result.counts.failed) == (1, 1)
    with factory() as s:
        rows = dict(s.execute(select(Account.sf_id, Account.industry)).all())
    assert rows == {sf_id(1): None, sf_id(2): "Retail"}


@pytest.mark.parametrize(
    "error",
    [sqlite3.OperationalError("database is locked"), psycopg.OperationalError("server closed")],
    ids=["sqlite", "psycopg"],
)
def test_an_operational_error_still_fails_the_pass(
    factory: sessionmaker[Session],
    crm: FakeSalesforce,
    clock: list[datetime],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    crm.put("Account", account(1, T0))

    def lost(*_args: Any) -> None:
        raise error

    monkeypatch.setattr(bulk, "upsert_rows", lost)
    # Not isolated as a row's fault: the pass fails (recorded, not raised, so a command's other
    # passes still run) and nothing of the page is stored.
    result = make_engine(factory, crm, clock).pull("Account")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("OperationalError")
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 0
        assert s.scalar(select(func.count()).select_from(SyncErrorRecord)) == 0
        assert s.scalars(select(SyncRun.status)).one() == RunStatus.FAILED


# --------------------------------------------------------------------------------------------
# the values of the issue, through the sandbox and the real clients
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=12, hs_rate_limits=False)) as sb:
        yield sb


def hs_rest(sb: Sandbox, method: str, path: str, **kw: Any) -> requests.Response:
    hs = sb.info.hubspot
    session = sb.session()
    try:
        return session.request(
            method,
            f"{hs.base_url}/crm/v3/{path}",
            headers={"Authorization": f"Bearer {hs.access_token}"},
            timeout=30,
            **kw,
        )
    finally:
        session.close()


def hs_first(sb: Sandbox, object_type: str, skip: int = 0) -> str:
    response = hs_rest(sb, "GET", f"objects/{object_type}", params={"limit": skip + 1})
    return str(response.json()["results"][skip]["id"])


def by_field(errors: list[SyncErrorRecord]) -> dict[tuple[str | None, str], SyncErrorRecord]:
    return {(e.record_id, str((e.payload or {}).get("field"))): e for e in errors}


def test_salesforce_values_out_of_range_or_unparseable_are_stored_empty(
    sandbox: Sandbox, factory: sessionmaker[Session]
) -> None:
    ids = [
        r["Id"]
        for r in sf_rest(
            sandbox, "GET", "query/", params={"q": "SELECT Id FROM Account ORDER BY Id LIMIT 3"}
        ).json()["records"]
    ]
    patches = [
        {"Licensed_Seats__c": 3e9},  # Number(18, 2) in the org: accepted; Integer in CS
        {"Licensed_Seats__c": 2.7},
        {"Website": "not a website"},
        # A 300-character Name is refused by Salesforce (STRING_TOO_LONG), and by the sandbox:
        # the long-name rule is exercised through HubSpot, whose names have no such limit.
    ]
    for record_id, patch in zip(ids, patches, strict=True):
        response = sf_rest(sandbox, "PATCH", f"sobjects/Account/{record_id}", json=patch)
        assert response.status_code == 204, response.text
    engine, _client = engine_for(sandbox, factory, "salesforce")
    result = engine.pull("Account")
    assert result.status is RunStatus.PARTIAL, result.error
    assert result.counts.created == 12
    assert result.counts.failed == 3
    with factory() as s:
        rows = {a.sf_id: a for a in s.scalars(select(Account))}
    assert rows[ids[0]].licensed_seats is None
    assert rows[ids[1]].licensed_seats is None
    assert rows[ids[2]].domain is None
    errors = by_field(open_errors(factory))
    assert set(errors) == {
        (ids[0], "Licensed_Seats__c"),
        (ids[1], "Licensed_Seats__c"),
        (ids[2], "Website"),
    }
    assert all(e.category == "invalid_field" for e in errors.values())
    assert errors[ids[2], "Website"].payload["value"] == "not a website"  # type: ignore[index]
    # The next pass is not stuck: it reads the same records and succeeds in the same way.
    again = engine.pull("Account")
    assert again.status in (RunStatus.PARTIAL, RunStatus.SUCCEEDED), again.error


def test_hubspot_deal_amount_of_1e17_and_a_nameless_company_are_stored(
    sandbox: Sandbox, factory: sessionmaker[Session]
) -> None:
    deal_id = hs_first(sandbox, "deals")
    company_id = hs_first(sandbox, "companies")
    nameless = hs_rest(
        sandbox, "PATCH", f"objects/companies/{company_id}", json={"properties": {"name": ""}}
    )
    assert nameless.status_code == 200, nameless.text
    long_id = hs_first(sandbox, "companies", skip=1)
    long_name = hs_rest(
        sandbox, "PATCH", f"objects/companies/{long_id}", json={"properties": {"name": "N" * 300}}
    )
    assert long_name.status_code == 200, long_name.text
    huge = hs_rest(
        sandbox, "PATCH", f"objects/deals/{deal_id}", json={"properties": {"amount": "1e17"}}
    )
    assert huge.status_code == 200, huge.text
    engine, _client = engine_for(sandbox, factory, "hubspot")
    companies = engine.pull("companies")
    deals = engine.pull("deals")
    assert companies.status is RunStatus.PARTIAL, companies.error
    assert deals.status is RunStatus.PARTIAL, deals.error
    assert companies.counts.failed == 2
    assert deals.counts.failed == 1
    with factory() as s:
        company = s.scalars(select(Account).where(Account.hs_id == company_id)).one()
        deal = s.scalars(select(Opportunity).where(Opportunity.hs_id == deal_id)).one()
        long_named = s.scalars(select(Account).where(Account.hs_id == long_id)).one()
        deals_stored = s.scalar(select(func.count()).select_from(Opportunity))
    assert company.name == (company.domain or f"(no name) {company_id}")
    assert deal.amount is None
    assert deals_stored == deals.counts.created
    errors = by_field(open_errors(factory))
    assert errors[company_id, "name"].category == "missing_field"
    assert long_named.name == "N" * 254 + "\u2026"
    assert errors[long_id, "name"].category == "invalid_field"
    assert errors[long_id, "name"].payload["value"] == "N" * 300  # type: ignore[index]
    assert errors[deal_id, "amount"].category == "invalid_field"
    assert errors[deal_id, "amount"].payload["value"] == "1e17"  # type: ignore[index]
    assert "out of range" in errors[deal_id, "amount"].message


def test_stamps_and_counts_stay_consistent_after_a_refused_row(
    factory: sessionmaker[Session],
    crm: FakeSalesforce,
    clock: list[datetime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused row is not counted as created, and the run still ends (partial)."""
    crm.put("Account", account(1, datetime(2026, 1, 1, tzinfo=UTC)))
    crm.put("Account", account(2, datetime(2026, 1, 2, tzinfo=UTC)))
    _refuse_at_the_database(monkeypatch, {sf_id(2)})
    result = make_engine(factory, crm, clock).pull("Account")
    assert result.counts.as_dict() | {"api_calls": 0} == {
        "read": 2,
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "skipped": 0,
        "failed": 1,
        "api_calls": 0,
    }
