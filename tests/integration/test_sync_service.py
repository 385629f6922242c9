"""``run_sync`` over several objects and CRMs (issue #14 item 2, and item 1's interrupt).

All configuration is refused before any pass; after that one pass's or one CRM's failure never
skips the others; an interrupt closes the running pass as ``cancelled`` at its last committed
page, starts no other, and the same command then resumes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.cli.common import ExitCode
from app.cli.signals import Terminated
from app.cli.sync import exit_code
from app.core.runs import RunStatus, SyncKind
from app.crm.base import CrmName, ReadFrom, RecordPage
from app.db.engine import make_session_factory
from app.db.models import Account, JobLease, SyncCursor, SyncRun
from app.errors import ConfigError
from app.settings import Settings, SyncSettings
from app.sync.pull import PageProgress
from app.wiring import sync as service
from app.wiring.sync import SyncInterrupted, run_sync
from tests.support.fake_crm import FakeSalesforce, sf_stamp

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def account(n: int) -> dict[str, Any]:
    return {
        "Id": f"001{n:015d}",
        "Name": f"Account {n}",
        "SystemModstamp": sf_stamp(T0 + timedelta(seconds=n)),
        "IsDeleted": False,
    }


class BrokenAccounts(FakeSalesforce):
    """A CRM adapter with a bug that only the Account stream hits."""

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        if object_name == "Account":
            raise ValueError("a bug in the adapter")
        return super().iter_changes(
            object_name, fields, start, page_size=page_size, use_bulk=use_bulk
        )


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def settings(database_url: str, *, hubspot: bool = True) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        salesforce_instance_url="https://sf.invalid",
        salesforce_access_token=SecretStr("token"),
        hubspot_access_token=SecretStr("token") if hubspot else None,
        sync=SyncSettings(page_size=200, lookback_seconds=0),
    )


def clients(monkeypatch: pytest.MonkeyPatch, **by_crm: FakeSalesforce | Exception) -> None:
    def build(crm: CrmName, _settings: Settings) -> FakeSalesforce:
        chosen = by_crm[crm]
        if isinstance(chosen, Exception):
            raise chosen
        return chosen

    monkeypatch.setattr(service, "build_client", build)


def runs(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(SyncRun)) or 0)


def test_all_configuration_is_refused_before_any_pass(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    clients(monkeypatch, salesforce=FakeSalesforce())
    with pytest.raises(ConfigError) as refused:
        run_sync(
            settings(database_url, hubspot=False),
            factory,
            kind=SyncKind.PULL,
            crms=["salesforce", "hubspot"],
            objects=["Account", "Tickets"],
        )
    message = str(refused.value)
    assert "unknown salesforce object(s) Tickets" in message
    assert "hubspot is not configured" in message
    assert runs(factory) == 0  # salesforce, listed first, did not run either


def test_one_failing_object_or_crm_does_not_skip_the_others(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = BrokenAccounts()
    clients(monkeypatch, salesforce=crm, hubspot=RuntimeError("no route to host"))

    results = run_sync(settings(database_url), factory, kind=SyncKind.PULL)

    by_object = {(r.crm, r.object_name): r for r in results}
    broken = by_object[("salesforce", "Account")]
    assert broken.status is RunStatus.FAILED
    assert broken.error is not None
    assert "ValueError: a bug in the adapter" in broken.error
    assert by_object[("salesforce", "Opportunity")].status is RunStatus.SUCCEEDED
    assert by_object[("salesforce", "Note")].status is RunStatus.SUCCEEDED
    hubspot = [r for r in results if r.crm == "hubspot"]
    assert hubspot
    assert all(r.status is RunStatus.FAILED for r in hubspot)
    assert all("no route to host" in (r.error or "") for r in hubspot)
    assert exit_code(results) is ExitCode.FAILED
    with factory() as s:
        failed = s.scalars(select(SyncRun).where(SyncRun.object == "Account")).one()
        assert failed.status == "failed"


def test_an_interrupt_cancels_the_pass_at_its_last_page_and_starts_no_other(
    database_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = FakeSalesforce()
    for n in range(1, 451):
        crm.put("Account", account(n))
    clients(monkeypatch, salesforce=crm)

    def sigterm_after_first_page(progress: PageProgress) -> None:
        raise Terminated("SIGTERM")  # what app.cli.signals raises in the main thread

    with pytest.raises(SyncInterrupted) as stopped:
        run_sync(
            settings(database_url, hubspot=False),
            factory,
            kind=SyncKind.BACKFILL,
            crms=["salesforce"],
            on_page=sigterm_after_first_page,
        )

    results = stopped.value.results
    assert [(r.object_name, r.status) for r in results] == [
        ("Account", RunStatus.CANCELLED),
        ("Opportunity", RunStatus.CANCELLED),
        ("Note", RunStatus.CANCELLED),
    ]
    interrupted, *not_started = results
    assert interrupted.error is not None
    assert "interrupted (SIGTERM)" in interrupted.error
    assert interrupted.cursor_to is not None
    assert all(r.run_id is None and "not started" in (r.error or "") for r in not_started)
    with factory() as s:
        run = s.scalars(select(SyncRun)).one()  # no run rows for the passes not started
        assert (run.status, run.read_count) == ("cancelled", 200)
        assert s.scalar(select(func.count()).select_from(Account)) == 200
        assert s.scalar(select(func.count()).select_from(JobLease)) == 0
        # The backfill plan stores every object as pending; Account holds its last page.
        cursor = s.scalars(
            select(SyncCursor).where(
                SyncCursor.stream == "backfill", SyncCursor.object == "Account"
            )
        ).one()
        assert cursor.state["in_progress"] is True

    resumed = run_sync(
        settings(database_url, hubspot=False), factory, kind=SyncKind.BACKFILL, crms=["salesforce"]
    )
    assert [r.status for r in resumed] == [RunStatus.SUCCEEDED] * 3
    assert resumed[0].counts.created == 250
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 450
