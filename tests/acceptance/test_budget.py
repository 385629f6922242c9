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
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from app.db import job_store
from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory
from app.db.models import ApiLimit, SyncRun
from app.jobs.runs import execute_run
from app.settings import BudgetSettings, Settings
from app.wiring.budget import budget_status
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.cli import clean_env, run_crmsync

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
    assert "more than the 6 left" in refused.stderr
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
        assert (state.limit, state.allowed, state.used, state.left) == (DAILY_LIMIT, 6, spent, 0)
        with factory() as s:
            limit = s.get(ApiLimit, "salesforce")
            assert limit is not None
            assert limit.daily_limit == DAILY_LIMIT  # as the CRM reported it
            run_id, _ = job_store.queue_run(
                s,
                kind="pull",
                crm="salesforce",
                object_name="Account",
                triggered_by="schedule",
                params={},
            )

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
            s.commit()

        resumed = execute_run(settings, factory, run_id)
        assert (resumed.action, resumed.status) == ("ran", "succeeded")
        with factory() as s:
            row = s.scalars(select(SyncRun).where(SyncRun.id == run_id)).one()
        assert row.status == "succeeded"
        assert 0 < row.api_calls <= 6
    finally:
        engine.dispose()
