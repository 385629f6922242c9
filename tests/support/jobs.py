"""Helpers for job tests: settings on a test database, a fake CRM wired in, a private queue."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from app.crm.base import CrmName, ReadFrom, RecordPage
from app.settings import JobSettings, Settings, SyncSettings
from app.wiring import budget as budget_wiring
from app.wiring import partitioned as partitioned_wiring
from app.wiring import sync as sync_wiring
from tests.support.fake_crm import FakeSalesforce

REDIS_URL = "redis://127.0.0.1:6379/0"


def job_settings(
    database_url: str,
    data_dir: Path,
    *,
    redis_url: str | None = None,
    name: str | None = None,
    lease_seconds: float = 60,
) -> Settings:
    """A Salesforce-only configuration on ``database_url`` with the queue under ``data_dir``
    (or on Redis under a queue name of its own)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=data_dir,
        redis_url=redis_url,
        salesforce_instance_url="https://sf.invalid",
        salesforce_access_token=SecretStr("token"),
        sync=SyncSettings(page_size=200, lookback_seconds=0, lease_seconds=lease_seconds),
        jobs=JobSettings(name=name or f"crmsync-test-{uuid.uuid4().hex[:10]}"),
    )


def use_crm(monkeypatch: pytest.MonkeyPatch, crm: FakeSalesforce) -> None:
    """Every pass of this process reads from ``crm``."""

    def build(_name: CrmName, _settings: Settings) -> FakeSalesforce:
        return crm

    monkeypatch.setattr(sync_wiring, "build_client", build)
    monkeypatch.setattr(budget_wiring, "build_client", build)
    monkeypatch.setattr(partitioned_wiring, "build_client", build)


class HookedSalesforce(FakeSalesforce):
    """Calls ``after_page(n)`` once the engine asks for page ``n + 1`` (page ``n`` committed)."""

    def __init__(self, after_page: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.after_page = after_page

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        pages = super().iter_changes(
            object_name, fields, start, page_size=page_size, use_bulk=use_bulk
        )
        for served, page in enumerate(pages):
            if served and self.after_page is not None:
                self.after_page(served)
            yield page


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def flush_queue(settings: Settings) -> None:
    """Remove every Redis key of this test's queue."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"*{settings.jobs.name}*"):
        client.delete(key)


def accounts(crm: FakeSalesforce, n: int, *, per_second: int = 1) -> None:
    """``n`` accounts stamped ``per_second`` to a second from 2026-11-01 12:00 UTC (more than one
    a second puts records on every second a range boundary can fall on)."""
    from datetime import UTC, datetime, timedelta

    from tests.support.fake_crm import sf_stamp

    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for i in range(n):
        crm.put(
            "Account",
            {
                "Id": f"001{i:015d}",
                "Name": f"Account {i}",
                "SystemModstamp": sf_stamp(t0 + timedelta(seconds=i // per_second)),
                "IsDeleted": False,
            },
        )


def queue_run(
    factory: Any,
    kind: str = "backfill",
    *,
    crm: str = "salesforce",
    obj: str = "Account",
    triggered_by: str = "api",
    params: dict[str, Any] | None = None,
) -> int:
    """A queued run's id (committed in a session of its own), as the API or the schedule
    queues one for a job to carry out."""
    from app.db import job_store

    with factory() as s:
        run_id, _ = job_store.queue_run(
            s,
            kind=kind,
            crm=crm,
            object_name=obj,
            triggered_by=triggered_by,
            params=params or {},
        )
    return run_id


def rows(factory: Any, model: Any) -> list[Any]:
    from sqlalchemy import select

    with factory() as s:
        return list(s.scalars(select(model).order_by(model.id)))
