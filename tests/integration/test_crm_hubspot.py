"""HubSpotClient against the sandbox, over HTTPS, through hubspot-api-client unchanged.

Most tests run with the sandbox's rate limiter off (``hs_rate_limits=False``) and inject the
429s they want through the fault API, so they stay fast. Retries sleep through a no-op.

About the 10,000-result search cap: the client's window machine never pages with an offset
(the lower bound moves to the last stamp on every page, ties are scanned by ``hs_object_id``),
so the cap cannot be reached; what has to hold is that more records than a page, and more
than the cap, sharing ONE ``hs_lastmodifieddate`` are read exactly once without looping.
Seeding 10,500 companies takes a few seconds, so that case runs once, end to end through the
engine (tests/integration/test_pull_pitfalls.py); the unit tests of
:mod:`app.crm.hubspot.windows` cover the rest exhaustively.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import hubspot
import pytest

from app.crm.base import ReadFrom, RecordPage, key_order
from app.crm.hubspot.client import HubSpotClient
from app.settings import Settings, SyncSettings
from app.sync.cursor import CursorState, read_from
from crmsync_sandbox import Sandbox, SandboxConfig

FIELDS = ["name", "domain", "dealname"]


def client_for(sb: Sandbox, **sync: Any) -> HubSpotClient:
    settings = Settings(
        hubspot_base_url=sb.info.hubspot.base_url,
        hubspot_access_token=sb.info.hubspot.access_token,
        ca_bundle=sb.info.ca_file,
        sync=SyncSettings(**sync),
    )
    return HubSpotClient(settings, sleep=lambda _s: None, index_lag_margin=timedelta(0))


def pull(
    client: HubSpotClient, obj: str = "companies", since: ReadFrom | None = None, page: int = 200
) -> list[RecordPage]:
    return list(client.iter_changes(obj, FIELDS, since or ReadFrom(), page_size=page))


def after_page(client: HubSpotClient, page: RecordPage) -> ReadFrom:
    """Where the engine reads from once ``page`` is committed: its mark minus the lookback."""
    at, rid = page.last if page.last is not None else (None, None)
    lookback = timedelta(seconds=client.settings.sync.lookback_seconds)
    return read_from(CursorState(at, rid, page.resume), lookback)


def ids_of(pages: list[RecordPage]) -> list[str]:
    return [str(r["id"]) for p in pages for r in p.records]


def keys(pages: list[RecordPage]) -> list[tuple[str, int]]:
    return [(str(r["hs_lastmodifieddate"]), int(r["id"])) for p in pages for r in p.records]


def calls(sb: Sandbox, needle: str) -> int:
    routes = sb.control("GET", "/stats")["calls"].get("hubspot", {})
    return sum(sum(v.values()) for route, v in routes.items() if needle in route)


def touch(
    sb: Sandbox, obj: str, at: datetime, *, count: int | None = None, ids: list[str] | None = None
) -> list[str]:
    body: dict[str, Any] = {"object": obj, "at": at.isoformat()}
    if ids is not None:
        body["ids"] = ids
    else:
        body["count"] = count
    return list(sb.control("POST", "/hubspot/touch", json=body)["ids"])


def an_hour_ago() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=300, hs_rate_limits=False)) as sb:
        yield sb


def test_full_pull_equals_seed_oldest_first(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        assert client.estimate_changes("companies", ReadFrom()) == 300
        pages = pull(client)
        ids = ids_of(pages)
        assert len(ids) == len(set(ids)) == 300
        assert [k[0] for k in keys(pages)] == sorted(k[0] for k in keys(pages))
        positions = [key_order(p.last) for p in pages if p.last is not None]
        assert len(positions) == len(pages)
        assert positions == sorted(positions)
        assert pages[-1].resume == {}


def test_deal_and_note_associations_are_batched(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        sandbox.control("POST", "/reset")
        deals = pull(client, "deals")
        assert all(r["associations.companies"] for p in deals for r in p.records)
        deal_ids = ids_of(deals)
        assert len(deals) > 1  # several search pages ...
        # ... and one association batch read per 1,000 records (HubSpot's largest input)
        assert calls(sandbox, "batch/read") == math.ceil(len(deal_ids) / 1000)
        assert deals[0].expected == len(deal_ids)
        sandbox.control("POST", "/reset")
        notes = pull(client, "notes")
        records = [r for p in notes for r in p.records]
        assert records
        assert all(r["associations.companies"] for r in records)
        assert all(r["associations.deals"] for r in records)
        assert calls(sandbox, "batch/read") == 2 * math.ceil(len(records) / 1000)


def test_more_than_a_page_sharing_one_stamp_across_a_page_boundary() -> None:
    with Sandbox(SandboxConfig(accounts=400, hs_rate_limits=False)) as sb:
        at = an_hour_ago()
        touched = touch(sb, "companies", at, count=150)
        with client_for(sb) as client:
            since = ReadFrom(lower=at - timedelta(seconds=1))
            pages = pull(client, since=since, page=100)
            ids = ids_of(pages)
            assert len(ids) == len(set(ids))
            assert set(touched) <= set(ids)
            assert len(pages) >= 2


def test_archived_between_passes_is_reported() -> None:
    config = SandboxConfig(accounts=20, hs_rate_limits=False)
    with Sandbox(config) as sb, client_for(sb) as client:
        first = pull(client)
        victim = ids_of(first)[2]
        api = hubspot.HubSpot(
            access_token=sb.info.hubspot.access_token,
            host=sb.info.hubspot.base_url,
            ssl_ca_cert=sb.info.ca_file,
        )
        api.crm.companies.basic_api.archive(victim, _request_timeout=(5, 30))
        deleted = [
            d
            for p in client.iter_deleted("companies", after_page(client, first[-1]))
            for d in p.deleted_ids
        ]
        assert deleted == [victim]
        assert victim not in ids_of(pull(client, since=after_page(client, first[-1])))


def test_record_modified_during_backfill_is_not_lost() -> None:
    config = SandboxConfig(accounts=600, hs_rate_limits=False)
    with Sandbox(config) as sb, client_for(sb) as client:
        stream = client.iter_changes("companies", FIELDS, ReadFrom(), page_size=100)
        first = next(stream)
        changed = str(first.records[5]["id"])
        touch(sb, "companies", datetime.now(UTC) + timedelta(seconds=5), ids=[changed])
        rest = list(stream)
        assert len(set(ids_of([first, *rest]))) == 600


@pytest.mark.parametrize(
    "fault",
    [
        {"match": "* /crm/*", "rate_limit": 0.3, "unavailable": 0.1},
        {"match": "* /crm/*", "reset": 0.3},
    ],
    ids=["429-storm", "connection-reset"],
)
def test_fault_storm_is_retried_to_completion(fault: dict[str, Any]) -> None:
    with Sandbox(SandboxConfig(accounts=300, hs_rate_limits=False)) as sb:
        sb.control("PUT", "/faults", json={"routes": [fault], "seed": 11})
        with client_for(sb, max_retries=10) as client:
            pages = pull(client, "deals")
            ids = ids_of(pages)
            assert len(ids) == len(set(ids))
            assert pages[0].expected == len(ids)
            assert client.estimate_changes("deals", ReadFrom()) == len(ids)
            # the search pages, the association reads and the estimate, plus the retries the
            # client counted (urllib3 retries some resets below it, uncounted)
            assert client.api_calls >= len(pages) + math.ceil(len(ids) / 1000) + 1
        stats = sb.control("GET", "/stats")
        assert stats["faults"] or stats["rate_limited"]
