"""The API budget guard against the sandbox with a small daily limit (#19 item 5).

The sandbox's Salesforce allows 40 calls a day (its ``/limits`` and ``Sforce-Limit-Info`` say
so); crmsync's share is 0.15, so 6 calls. A backfill estimated above that is refused (exit 2,
the message names ``--allow-over-budget``) and runs with it; then scheduled work waits, queued,
while the 24 h window is full, and runs once it frees (the runs' dates moved back a day).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory
from app.db.models import ApiLimit, ApiUsage, SyncRun
from app.jobs.runs import execute_run
from app.settings import BudgetSettings, Settings
from app.wiring.budget import budget_status
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.cli import clean_env, run_crmsync
from tests.support.jobs import queue_run

DAILY_LIMIT = 40
SHARE = "0.15"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    config = SandboxConfig(accounts=3000, hs_rate_limits=False, sf_daily_api_limit=DAILY_LIMIT)
    with Sandbox(config) as sb:
        yield sb


def salesforce_env(sb: Sandbox, database_url: str, data_dir: Path) -> dict[str, str]:
    env = clean_env(database_url=database_url, data_dir=str(data_dir))
    env.update({k: v for k, v in sb.info.env().items() if "HUBSPOT" not in k})
    env["CRMSYNC_SALESFORCE__BUDGET_SHARE"] = SHARE
    return env


def settings_from(env: dict[str, str]) -> Settings:
    sf = {
        k.removeprefix("CRMSYNC_").lower(): v
        for k, v in env.items()
        if k.startswith("CRMSYNC_SALESFORCE_") and "__" not in k
    }
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=env["CRMSYNC_DATABASE_URL"],
        data_dir=Path(env["CRMSYNC_DATA_DIR"]),
        ca_bundle=Path(env["CRMSYNC_CA_BUNDLE"]),
        salesforce=BudgetSettings(budget_share=float(SHARE)),
        **{k: SecretStr(v) if k.endswith(("secret", "token")) else v for k, v in sf.items()},
    )


def test_the_guard_refuses_a_backfill_over_the_share_and_holds_scheduled_work(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    env = salesforce_env(sandbox, database_url, tmp_path / "data")

    refused = run_crmsync("sync", "backfill", "--crm", "salesforce", env=env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "--allow-over-budget" in refused.stderr
    # 6 calls are crmsync's share; the guard's own /limits read (outside any run) took one.
    assert "more than the 5 left" in refused.stderr
    assert json.loads(refused.stdout)["runs"] == []

    insisted = run_crmsync(
        "sync", "backfill", "--crm", "salesforce", "--allow-over-budget", env=env, cwd=tmp_path
    )
    assert insisted.returncode == 0, insisted.stderr
    spent = sum(r["api_calls"] for r in json.loads(insisted.stdout)["runs"])
    assert spent > 6

    settings = settings_from(env)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    try:
        state = budget_status(settings, factory)["salesforce"]
        with factory() as s:
            # The limit read and the count calls of both commands, made outside any run.
            outside = int(s.scalar(select(func.sum(ApiUsage.calls))) or 0)
        assert outside > 0
        assert (state.limit, state.allowed, state.left) == (DAILY_LIMIT, 6, 0)
        assert state.used == spent + outside
        with factory() as s:
            limit = s.get(ApiLimit, "salesforce")
            assert limit is not None
            assert limit.daily_limit == DAILY_LIMIT  # as the CRM reported it
        run_id = queue_run(factory, "pull", triggered_by="schedule")

        waiting = execute_run(settings, factory, run_id)
        assert waiting.action == "waiting"
        assert waiting.error is not None
        assert "waiting for API budget until" in waiting.error
        with factory() as s:
            assert s.get(SyncRun, run_id).status == "queued"  # type: ignore[union-attr]
            # A day passes: the backfill's calls leave the rolling window.
            day_ago = utcnow() - timedelta(hours=25)
            s.execute(
                update(SyncRun)
                .where(SyncRun.id != run_id)
                .values(started_at=day_ago, heartbeat_at=day_ago, finished_at=day_ago)
            )
            s.execute(update(ApiUsage).values(at=day_ago))
            s.commit()

        resumed = execute_run(settings, factory, run_id)
        assert (resumed.action, resumed.status) == ("ran", "succeeded")
        with factory() as s:
            row = s.scalars(select(SyncRun).where(SyncRun.id == run_id)).one()
        assert row.status == "succeeded"
        assert 0 < row.api_calls <= 6
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def small_limit_sandbox() -> Iterator[Sandbox]:
    """Its own sandbox: the test above spends calls of the sandbox's day."""
    config = SandboxConfig(accounts=3000, hs_rate_limits=False, sf_daily_api_limit=MID_RUN_LIMIT)
    with Sandbox(config) as sb:
        yield sb


#: 0.15 of 60 is 9 calls: an incremental pull of 3000 accounts in REST pages of 200 (15 pages
#: and a token) needs about twice that, so the share runs out in the middle of it.
MID_RUN_LIMIT = 60


def test_a_scheduled_pull_stops_at_a_page_when_the_share_is_spent_and_resumes_later(
    small_limit_sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    from huey import MemoryHuey

    from app.db.models import Account
    from app.jobs.tasks import JobQueue
    from app.settings import SyncSettings

    env = salesforce_env(small_limit_sandbox, database_url, tmp_path / "data")
    base = settings_from(env)
    # No lookback: every record is read exactly once across the stops, so the counts add up.
    settings = base.model_copy(update={"sync": SyncSettings(page_size=200, lookback_seconds=0)})
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    jobs = JobQueue(settings, session_factory=factory, huey=MemoryHuey(), periodic=False)
    try:
        run_id = queue_run(factory, "pull", triggered_by="schedule")
        stops = 0
        chain = [run_id]
        while True:
            jobs._run(chain[-1])
            with factory() as s:
                row = s.get(SyncRun, chain[-1])
                assert row is not None
                assert row.api_calls <= 9, "a run went over crmsync's share"
                if row.status == "succeeded":
                    break
                assert row.status == "cancelled", row.error
                assert (row.error or "").startswith("waiting for API budget"), row.error
                stops += 1
                assert stops < 6, "the pull makes no progress"
                state = budget_status(settings, factory)["salesforce"]
                assert state.allowed == 9
                assert state.used <= 9
                # Queued again at once, from the page where it stopped; it waits for budget.
                resumption = s.scalars(
                    select(SyncRun).where(SyncRun.status == "queued").order_by(SyncRun.id)
                ).one()
                assert resumption.params["resumes"] == chain[-1]
            waiting = execute_run(settings, factory, resumption.id)
            assert waiting.action == "waiting"
            with factory() as s:
                queued_row = s.get(SyncRun, resumption.id)
                assert queued_row is not None
                assert queued_row.status == "queued"
                assert "waiting for API budget until" in (queued_row.error or "")
                # A day passes: the calls leave the rolling window.
                day_ago = utcnow() - timedelta(hours=25)
                s.execute(
                    update(SyncRun)
                    .where(SyncRun.status != "queued")
                    .values(started_at=day_ago, heartbeat_at=day_ago, finished_at=day_ago)
                )
                s.execute(update(ApiUsage).values(at=day_ago))
                s.commit()
            chain.append(resumption.id)

        assert stops >= 1, "the share never ran out mid-run: the test proves nothing"
        with factory() as s:
            rows = [s.get(SyncRun, i) for i in chain]
            ids = s.scalars(select(Account.sf_id)).all()
        done = [r for r in rows if r is not None]
        assert len(done) == len(chain)
        # Each resumption went on from where the stopped run's cursor was, page for page.
        for stopped, resumed in pairwise(done):
            assert stopped.read_count > 0
            assert stopped.cursor_to is not None
            assert resumed.cursor_from == stopped.cursor_to
        total = small_limit_sandbox.config.accounts
        assert sum(r.read_count for r in done) == total  # nothing read twice
        assert sum(r.created_count for r in done) == total
        assert len(ids) == len(set(ids)) == total  # nothing lost, nothing stored twice
    finally:
        jobs.close()
        engine.dispose()


@pytest.fixture(scope="module")
def plain_sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=50, hs_rate_limits=False)) as sb:
        yield sb


def test_calls_outside_runs_are_counted_once_and_a_runs_calls_are_not_counted_twice(
    plain_sandbox: Sandbox, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huey import MemoryHuey

    from app.crm import usage
    from app.crm.factory import build_client
    from app.jobs import tasks
    from app.jobs.tasks import JobQueue

    env = salesforce_env(plain_sandbox, database_url, tmp_path / "data")
    # A configured limit: the guard reads none from the CRM (no call of its own here).
    settings = settings_from(env).model_copy(
        update={"salesforce": BudgetSettings(budget_share=0.5, daily_limit=10_000)}
    )
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    jobs = JobQueue(settings, session_factory=factory, huey=MemoryHuey(), periodic=False)

    def outside() -> int:
        with factory() as s:
            return int(s.scalar(select(func.sum(ApiUsage.calls))) or 0)

    try:
        run_id = queue_run(factory, "pull", triggered_by="schedule")
        assert jobs._run(run_id) == "ran"
        with factory() as s:
            run = s.get(SyncRun, run_id)
            assert run is not None
            run_calls = run.api_calls
        assert run_calls > 0
        assert outside() == 0  # the run's calls are on its row, and only there

        # A job reading the CRM outside any run, as webhook processing's closed-won handler
        # does (a client of its own, reads by id).
        made: list[int] = []

        def reads(_event_id: int) -> None:
            client = build_client("salesforce", settings)
            try:
                for _ in range(3):
                    client.estimate_changes("Account", None)
            finally:
                client.close()
            made.append(client.api_calls)

        monkeypatch.setattr(tasks, "handler", lambda _kind: reads)
        assert jobs._webhook(1) == "ran"
        assert made[0] >= 3  # its reads (and its token)
        assert outside() == made[0]  # stored when the job ended
        state = budget_status(settings, factory)["salesforce"]
        assert state.used == run_calls + made[0]

        # A long job stores them as they pile up, not only at its end.
        client = build_client("salesforce", settings)
        try:
            for _ in range(usage.FLUSH_EVERY):
                client.estimate_changes("Account", None)
            assert outside() >= made[0] + usage.FLUSH_EVERY - 1
        finally:
            client.close()
    finally:
        jobs.close()
        engine.dispose()
    assert sum(usage.pending().values()) == 0  # closing the queue stored the rest
    assert usage.install(None) is None  # and took its hook away
