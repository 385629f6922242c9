"""The shared Salesforce token of the webhook worker (reads and write-back pushes): fetched
once, reused, fetched again only after a 401 with it or when it is old."""

from __future__ import annotations

import threading
from collections.abc import Callable

from app.crm.salesforce.auth import SalesforceToken, TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fetcher() -> tuple[list[SalesforceToken], Callable[[], SalesforceToken]]:
    made: list[SalesforceToken] = []

    def fetch() -> SalesforceToken:
        token = SalesforceToken(f"token-{len(made) + 1}", "https://org.example")
        made.append(token)
        return token

    return made, fetch


def test_fetched_once_then_reused() -> None:
    made, fetch = fetcher()
    cache = TokenCache(clock=Clock())
    first, fetched = cache.get(fetch)
    again, fetched_again = cache.get(fetch)
    assert (first.access_token, fetched, again.access_token, fetched_again) == (
        "token-1",
        True,
        "token-1",
        False,
    )
    assert len(made) == cache.fetches == 1


def test_a_rejected_token_is_replaced_once() -> None:
    made, fetch = fetcher()
    cache = TokenCache(clock=Clock())
    cache.get(fetch)
    cache.reject("token-1")
    assert cache.get(fetch)[0].access_token == "token-2"
    cache.reject("token-1")  # a second client's 401 with the old token: the new one stays
    assert cache.get(fetch) == (made[1], False)
    assert len(made) == 2


def test_an_old_token_is_fetched_again() -> None:
    made, fetch = fetcher()
    clock = Clock()
    cache = TokenCache(max_age_seconds=60, clock=clock)
    cache.get(fetch)
    clock.now = 59.9
    assert cache.get(fetch)[1] is False
    clock.now = 60.0
    assert cache.get(fetch) == (made[1], True)


def test_concurrent_clients_wait_for_one_fetch() -> None:
    made, fetch = fetcher()
    cache = TokenCache(clock=Clock())
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(fetch)[0].access_token))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["token-1"] * 8
    assert len(made) == 1
