"""A partitioned backfill against the sandbox (#19 item 9): the real adapters read their ranges
(Salesforce Bulk 2.0 jobs with ``SystemModstamp < upper``, HubSpot search windows ending before
it), and the object ends with every record once.

A third of the records are stamped with one second (the newest), so a count-balanced boundary
falls at or just before that crowded second, which no range may split, lose or double. (The
fake-CRM tests in ``test_partitioned_backfill.py`` put every boundary on a second that holds
records and assert it.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huey import MemoryHuey
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import job_store
from app.db.engine import make_session_factory
from app.db.models import Account, SyncRun
from app.jobs.tasks import JobQueue
from app.settings import JobSettings, Settings, SyncSettings
from app.sync.partitions import Partition
from crmsync_sandbox import Sandbox, SandboxConfig

ACCOUNTS = 1_500
CROWDED = 500


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=ACCOUNTS, hs_rate_limits=False)) as sb:
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        for crm, obj in (("salesforce", "Account"), ("hubspot", "companies")):
            sb.control(
                "POST",
                f"/{crm}/touch",
                json={"object": obj, "count": CROWDED, "at": at.isoformat()},
            )
        yield sb


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def settings_for(sb: Sandbox, database_url: str, data_dir: Path) -> Settings:
    sf, hs = sb.info.salesforce, sb.info.hubspot
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=data_dir,
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_client_id=sf.client_id,
        salesforce_client_secret=sf.client_secret,
        hubspot_base_url=hs.base_url,
        hubspot_access_token=hs.access_token,
        ca_bundle=sb.info.ca_file,
        # Bulk from 100 rows: each partition is a Bulk 2.0 query job of its own.
        sync=SyncSettings(lookback_seconds=0, max_retries=12, bulk_threshold=100, page_size=300),
        jobs=JobSettings(name=f"crmsync-test-{uuid.uuid4().hex[:10]}"),
    )


@pytest.mark.parametrize(("crm", "obj"), [("salesforce", "Account"), ("hubspot", "companies")])
def test_a_partitioned_backfill_from_the_sandbox_stores_every_record_once(
    sandbox: Sandbox,
    database_url: str,
    factory: sessionmaker[Session],
    tmp_path: Path,
    crm: str,
    obj: str,
) -> None:
    settings = settings_for(sandbox, database_url, tmp_path)
    jobs = JobQueue(settings, session_factory=factory, huey=MemoryHuey(), periodic=False)
    children: list[int] = []
    jobs.enqueue_run = children.append  # type: ignore[method-assign]
    with factory() as s:
        parent, _ = job_store.queue_run(
            s,
            kind="backfill",
            crm=crm,
            object_name=obj,
            triggered_by="api",
            params={"partitions": 3},
        )

    results_before = results_pages(sandbox)
    assert jobs._run(parent) == "planned"
    for child in children:
        assert jobs._run(child) == "ran"

    with factory() as s:
        done = s.get(SyncRun, parent)
        assert done is not None
        assert done.status == "succeeded", done.error
        parts = [Partition.from_dict(p) for p in done.params["plan"]["partitions"]]
        rows = [s.get(SyncRun, c) for c in children]
        stored = s.scalar(select(func.count()).select_from(Account))
        distinct = s.scalar(
            select(
                func.count(func.distinct(Account.sf_id if crm == "salesforce" else Account.hs_id))
            )
        )
    assert len(parts) == 3
    assert all(r is not None and r.status == "succeeded" for r in rows)
    reads = [r.read_count for r in rows if r is not None]
    assert sum(reads) == ACCOUNTS  # each record read by one partition only
    assert all(r > 0 for r in reads), reads
    assert stored == distinct == ACCOUNTS
    assert done.created_count == ACCOUNTS
    if crm == "salesforce":  # one Bulk 2.0 job per partition, each read from its results
        assert results_pages(sandbox) - results_before >= 3


def results_pages(sb: Sandbox) -> int:
    """Bulk 2.0 results pages the sandbox served (its call accounting)."""
    routes = sb.control("GET", "/stats")["calls"].get("salesforce", {})
    return sum(sum(v.values()) for route, v in routes.items() if "/results" in route)
