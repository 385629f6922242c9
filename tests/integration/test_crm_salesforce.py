"""SalesforceClient against the sandbox, over HTTPS, through simple-salesforce unchanged.

Each test that changes data or faults starts its own small sandbox (port 0, memory state), so
the module is xdist-safe. Retries sleep through an injected no-op, so storms run instantly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import urllib3

from app.crm.base import ReadFrom, RecordPage, key_order
from app.crm.salesforce.client import BULK_REOPENS, SalesforceClient
from app.errors import AuthError, TransientError
from app.settings import Settings, SyncSettings
from app.sync.cursor import CursorState, read_from
from crmsync_sandbox import Sandbox, SandboxConfig

FIELDS = ["Name", "Website"]


def settings_for(sb: Sandbox, *, token: bool = False, creds: bool = True, **sync: Any) -> Settings:
    sf = sb.info.salesforce
    return Settings(
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_access_token=sf.access_token if token else None,
        salesforce_client_id=sf.client_id if creds else None,
        salesforce_client_secret=sf.client_secret if creds else None,
        ca_bundle=sb.info.ca_file,
        sync=SyncSettings(**sync),
    )


def client_for(sb: Sandbox, **kw: Any) -> SalesforceClient:
    return SalesforceClient(settings_for(sb, **kw), sleep=lambda _s: None)


def pull(
    client: SalesforceClient,
    since: ReadFrom | None = None,
    *,
    page_size: int = 200,
    use_bulk: bool = False,
    obj: str = "Account",
) -> list[RecordPage]:
    return list(
        client.iter_changes(
            obj, FIELDS, since or ReadFrom(), page_size=page_size, use_bulk=use_bulk
        )
    )


def after_page(client: SalesforceClient, page: RecordPage) -> ReadFrom:
    """Where the engine reads from once ``page`` is committed: its mark minus the lookback."""
    at, rid = page.last if page.last is not None else (None, None)
    lookback = timedelta(seconds=client.settings.sync.lookback_seconds)
    return read_from(CursorState(at, rid, page.resume), lookback)


def ids_of(pages: list[RecordPage]) -> list[str]:
    return [str(r["Id"]) for p in pages for r in p.records]


def stamp_keys(pages: list[RecordPage]) -> list[tuple[str, str]]:
    return [(str(r["SystemModstamp"]), str(r["Id"])) for p in pages for r in p.records]


def route_calls(sb: Sandbox, needle: str) -> int:
    stats = sb.control("GET", "/stats")
    routes = stats["calls"].get("salesforce", {})
    return sum(sum(v.values()) for route, v in routes.items() if needle in route)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=600)) as sb:
        yield sb


def test_full_pull_equals_seed_oldest_first(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        assert client.estimate_changes("Account", ReadFrom()) == 600
        pages = pull(client)
        ids = ids_of(pages)
        assert len(ids) == len(set(ids)) == 600
        keys = stamp_keys(pages)
        assert keys == sorted(keys)  # SystemModstamp, then Id
        assert len(pages) == 3  # batchSize 200
        positions = [key_order(p.last) for p in pages if p.last is not None]
        assert len(positions) == len(pages)
        assert positions == sorted(positions)
        assert pages[-1].resume == {}
        assert all(p.resume.get("next_url") for p in pages[:-1])
        assert client.budget.used is not None
        assert client.budget.max is not None


def test_resume_from_a_page_continues_the_stream(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        first = next(iter(client.iter_changes("Account", FIELDS, ReadFrom(), page_size=200)))
        rest = pull(client, after_page(client, first))
        ids = ids_of([first, *rest])
        assert len(ids) == len(set(ids)) == 600


def test_expired_locator_restarts_from_keyset(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        pages = pull(client)
        version = sandbox.info.salesforce.api_version
        stale = ReadFrom(
            after=pages[0].last,
            resume={"mode": "rest", "next_url": f"/services/data/v{version}/query/01gEXPIRED-200"},
        )
        rest = pull(client, stale)
        assert ids_of(rest) == ids_of(pages)[200:]


def test_bulk_pull_streams_all_rows_and_resumes_the_job(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        pages = pull(client, use_bulk=True, page_size=250)
        ids = ids_of(pages)
        assert len(ids) == len(set(ids)) == 600
        assert len(pages) == 3
        assert all(isinstance(v, str | None) for r in pages[0].records for v in r.values())
        assert all(p.bulk for p in pages)
        first = pages[0]
        # One results page (no maxRecords) committed 250 rows at a time: the resume token
        # names that page (the first: no locator) and the rows of it already committed.
        assert first.resume["mode"] == "bulk"
        assert (first.resume["locator"], first.resume["skip"]) == ("", 250)
        assert first.last is None  # unordered rows: no mark before the job's last page
        resumed = pull(client, after_page(client, first), use_bulk=True, page_size=250)
        assert sorted(ids_of(pages[:1]) + ids_of(resumed)) == sorted(ids)
        assert resumed[-1].resume == {}
        assert resumed[-1].last == pages[-1].last is not None


def test_bulk_pull_stopped_anywhere_in_large_results_pages_resumes_exactly() -> None:
    """Result pages hold many commits' worth of rows: a pass stopped after any committed
    chunk (mid results page or at its end) resumes with nothing lost and nothing read twice."""
    with Sandbox(SandboxConfig(accounts=300)) as sb, client_for(sb) as client:
        sb.ctx.emulators["salesforce"].bulk.page_bytes = 6_000  # several results pages
        whole = pull(client, use_bulk=True, page_size=40)
        all_ids = ids_of(whole)
        assert len(all_ids) == len(set(all_ids)) == 300
        locators = {p.resume.get("locator") for p in whole[:-1]}
        assert len(locators) > 2  # the stream crossed several results pages
        assert any(p.resume.get("skip") for p in whole[:-1])  # and stopped inside them
        for stop in range(1, len(whole)):
            committed = whole[:stop]
            resumed = pull(client, after_page(client, committed[-1]), use_bulk=True, page_size=40)
            again = ids_of(committed) + ids_of(resumed)
            assert sorted(again) == sorted(all_ids), f"stopped after page {stop}"
            assert resumed[-1].last == whole[-1].last is not None


def breaking_downloads(monkeypatch: pytest.MonkeyPatch, cuts: list[int]) -> list[int]:
    """Make the n-th opened results download break off after ``cuts[n]`` rows of its page
    (counted from the page's first row; -1 or past the list: no break), as a server closing a
    slow reader's connection does. Returns the list the opens are appended to."""
    original = SalesforceClient._bulk_rows
    opened: list[int] = []

    def rows(response: Any) -> Iterator[Any]:
        cut = cuts[len(opened)] if len(opened) < len(cuts) else -1
        opened.append(cut)
        for i, row in enumerate(original(response)):
            if i == cut:
                raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
            yield row

    monkeypatch.setattr(SalesforceClient, "_bulk_rows", staticmethod(rows))
    return opened


def test_a_results_download_that_breaks_off_is_reopened_at_the_next_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Sandbox(SandboxConfig(accounts=300)) as sb, client_for(sb) as client:
        sb.ctx.emulators["salesforce"].bulk.page_bytes = 6_000  # several results pages
        whole = ids_of(pull(client, use_bulk=True, page_size=40))
        # page 1 breaks at row 7 once; page 2 twice at row 30 (no progress in between)
        opened = breaking_downloads(monkeypatch, [7, -1, 30, 30, -1])
        pages = pull(client, use_bulk=True, page_size=40)

    ids = ids_of(pages)
    assert len(ids) == len(set(ids)) == 300  # nothing lost, nothing twice
    assert sorted(ids) == sorted(whole)
    assert opened[:5] == [7, -1, 30, 30, -1]  # each break reopened the same page
    assert len(opened) == len({p.resume.get("locator") for p in pages[:-1]}) + 3


def test_a_results_download_breaking_at_the_same_row_fails_the_pass_as_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Sandbox(SandboxConfig(accounts=50)) as sb, client_for(sb) as client:
        opened = breaking_downloads(monkeypatch, [5] * 20)
        with pytest.raises(TransientError, match="broke off"):
            pull(client, use_bulk=True, page_size=40)
    assert len(opened) == 1 + BULK_REOPENS  # the first open and its reopens, then it gives up


def test_auto_mode_counts_with_the_first_rest_page_and_switches_to_bulk_above_threshold(
    sandbox: Sandbox,
) -> None:
    with client_for(sandbox, bulk_threshold=10_000) as client:
        sandbox.control("POST", "/reset")
        pages = list(client.iter_changes("Account", FIELDS, None, page_size=200))
        assert pages[0].expected == 600
        assert not any(p.bulk for p in pages)
        assert route_calls(sandbox, "query") == len(pages)  # no COUNT() query
    with client_for(sandbox, bulk_threshold=100) as client:
        sandbox.control("POST", "/reset")
        pages = list(client.iter_changes("Account", FIELDS, None, page_size=200))
        assert all(p.bulk for p in pages)
        assert pages[0].expected == 600
        assert len(ids_of(pages)) == len(set(ids_of(pages))) == 600
        # the first REST page (the count), then create, poll(s) and one results page
        assert route_calls(sandbox, "/results") == 1


def test_static_token_works_without_login(sandbox: Sandbox) -> None:
    with client_for(sandbox, token=True, creds=False) as client:
        assert client.estimate_changes("Account", ReadFrom()) == 600
        assert client.api_calls == 1


def test_expired_session_is_refreshed_once() -> None:
    with Sandbox(SandboxConfig(accounts=30)) as sb, client_for(sb) as client:
        assert len(ids_of(pull(client))) == 30
        logins = route_calls(sb, "oauth2/token")
        assert logins == 1
        sb.control("POST", "/tokens/expire", json={"crm": "salesforce"})
        assert len(ids_of(pull(client))) == 30
        assert route_calls(sb, "oauth2/token") == 2


def test_expired_static_token_is_an_auth_error() -> None:
    with Sandbox(SandboxConfig(accounts=5)) as sb, client_for(sb, token=True, creds=False) as c:
        sb.control("POST", "/tokens/expire", json={"crm": "salesforce"})
        with pytest.raises(AuthError) as info:
            pull(c)
        assert info.value.status == 401
        assert sb.info.salesforce.access_token not in str(info.value)


def test_delete_between_passes_is_reported() -> None:
    with Sandbox(SandboxConfig(accounts=20)) as sb, client_for(sb) as client:
        first = pull(client)
        victim = ids_of(first)[3]
        sf = sb.session()
        url = sb.info.salesforce.instance_url
        version = sb.info.salesforce.api_version
        response = sf.delete(
            f"{url}/services/data/v{version}/sobjects/Account/{victim}",
            headers={"Authorization": f"Bearer {sb.info.salesforce.access_token}"},
            timeout=30,
        )
        assert response.status_code == 204
        sf.close()
        second = pull(client, after_page(client, first[-1]))
        deleted = [d for p in second for d in p.deleted_ids]
        assert deleted == [victim]
        assert victim not in ids_of(second)


def test_five_thousand_rows_sharing_one_stamp_read_exactly_once() -> None:
    with Sandbox(SandboxConfig(accounts=5000)) as sb, client_for(sb) as client:
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        sb.control(
            "POST",
            "/salesforce/touch",
            json={"object": "Account", "count": 5000, "at": at.isoformat()},
        )
        pages = pull(client, ReadFrom(lower=at), page_size=2000)
        ids = ids_of(pages)
        assert len(ids) == len(set(ids)) == 5000
        assert len(pages) == 3
        assert pages[-1].last is not None
        assert pages[-1].last[0] == at


def test_record_modified_during_backfill_is_picked_up_next_run() -> None:
    with Sandbox(SandboxConfig(accounts=600)) as sb, client_for(sb) as client:
        stream = client.iter_changes("Account", FIELDS, ReadFrom(), page_size=200)
        first = next(stream)
        changed = str(first.records[0]["Id"])
        sb.control("POST", "/salesforce/touch", json={"object": "Account", "ids": [changed]})
        rest = list(stream)
        assert len(set(ids_of([first, *rest]))) == 600
        again = pull(client, after_page(client, rest[-1]))
        assert changed in ids_of(again)


@pytest.mark.parametrize(
    "fault",
    [
        {"match": "GET /services/*", "rate_limit": 0.3, "unavailable": 0.2},
        {"match": "GET /services/*", "reset": 0.3},
    ],
    ids=["429-503-storm", "connection-reset"],
)
def test_fault_storm_is_retried_to_completion(fault: dict[str, Any]) -> None:
    with Sandbox(SandboxConfig(accounts=600)) as sb:
        sb.control("PUT", "/faults", json={"routes": [fault], "seed": 7})
        with client_for(sb, max_retries=10) as client:
            pages = pull(client)
            assert len(set(ids_of(pages))) == 600
            assert client.api_calls > len(pages)  # retries were counted
            stats = sb.control("GET", "/stats")
            assert stats["faults"] or stats["rate_limited"]
