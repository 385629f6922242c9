"""Clock, stats and tokens on their own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from crmsync_sandbox.clock import Clock
from crmsync_sandbox.context import SandboxConfig
from crmsync_sandbox.stats import Stats
from crmsync_sandbox.tokens import Tokens


def test_clock_is_aware_monotonic_and_freezable() -> None:
    clock = Clock()
    stamps = [clock.now() for _ in range(1000)]
    assert all(s.tzinfo is not None and s.utcoffset() == timedelta(0) for s in stamps[:3])
    assert stamps == sorted(stamps)
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    clock.freeze(at)
    assert clock.now() == clock.now() == at
    clock.advance(2.5)
    assert clock.now() == at + timedelta(seconds=2.5)
    clock.unfreeze()
    assert clock.now() > at + timedelta(days=300)
    before = clock.now()
    clock.advance(3600)
    assert clock.now() >= before + timedelta(seconds=3600)
    with pytest.raises(ValueError, match="aware"):
        clock.freeze(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="non-negative"):
        clock.advance(-1)


def test_stats_are_thread_safe_and_resettable() -> None:
    stats = Stats()

    def work() -> None:
        for _ in range(1000):
            stats.record_call("hubspot", "GET /crm/v3/objects/{object_type}", 200)
            stats.record_written("hubspot", "companies", 2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats.record_rate_limited("hubspot", "POST /crm/v3/objects/{object_type}/search")
    snap = stats.snapshot()
    assert snap["calls"] == {"hubspot": {"GET /crm/v3/objects/{object_type}": {"200": 4000}}}
    assert snap["written"] == {"hubspot": {"companies": 8000}}
    assert snap["rate_limited_total"] == {"hubspot": 1}
    assert stats.calls("hubspot") == 4000
    stats.reset()
    assert stats.snapshot()["calls"] == {}
    assert stats.calls() == 0


def test_tokens_expire_and_reissue() -> None:
    config = SandboxConfig()
    tokens = Tokens(config)
    assert tokens.is_valid("salesforce", config.sf_access_token)
    assert not tokens.is_valid("salesforce", config.hs_access_token)
    assert not tokens.is_valid("hubspot", None)
    issued = tokens.issue("salesforce")
    assert issued.startswith(config.sf_organization_id[:15] + "!")
    tokens.expire_all("salesforce")
    assert not tokens.is_valid("salesforce", issued)
    assert not tokens.is_valid("salesforce", config.sf_access_token)
    fresh = tokens.issue("salesforce")
    assert tokens.is_valid("salesforce", fresh)
    assert tokens.is_valid("hubspot", config.hs_access_token)
    tokens.expire_all("hubspot")
    assert not tokens.is_valid("hubspot", config.hs_access_token)
    tokens.restore("hubspot")
    assert tokens.is_valid("hubspot", config.hs_access_token)
