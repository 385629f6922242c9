"""The tenacity policy: retriable only, backoff + bounded jitter, Retry-After, attempt cap."""

from __future__ import annotations

import random

import pytest
import structlog

from app.crm.retry import RetryPolicy, call_with_retry
from app.errors import (
    AuthError,
    Classification,
    ErrorCategory,
    FatalError,
    RateLimitedError,
    TransientError,
)
from app.settings import SyncSettings


class Boom(Exception):
    def __init__(self, classification: Classification) -> None:
        super().__init__("boom")
        self.classification = classification


def classify(exc: BaseException) -> Classification:
    if isinstance(exc, Boom):
        return exc.classification
    return Classification(ErrorCategory.FATAL, False)


TRANSIENT = Classification(ErrorCategory.TRANSIENT, True, None, None, 503)


def make_policy(**kw: object) -> tuple[RetryPolicy, list[float]]:
    sleeps: list[float] = []
    params: dict[str, object] = {
        "max_attempts": 5,
        "initial_wait": 0.5,
        "max_wait": 60.0,
        "jitter": 1.0,
        "sleep": sleeps.append,
        "rng": random.Random(1),
    }
    params.update(kw)
    return RetryPolicy(**params), sleeps  # type: ignore[arg-type]


def failing(times: int, classification: Classification, calls: list[int]):  # type: ignore[no-untyped-def]
    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise Boom(classification)
        return "ok"

    return fn


def test_retries_transient_until_success_and_counts_attempts() -> None:
    policy, sleeps = make_policy()
    calls: list[int] = []
    counted: list[int] = []
    result = call_with_retry(
        failing(3, TRANSIENT, calls),
        classify=classify,
        policy=policy,
        crm="x",
        operation="op",
        on_attempt=lambda: counted.append(1),
    )
    assert result == "ok"
    assert len(calls) == 4
    assert len(counted) == 4
    assert len(sleeps) == 3
    # Exponential backoff 0.5, 1, 2 plus jitter in [0, 1).
    for wait, base in zip(sleeps, [0.5, 1.0, 2.0], strict=True):
        assert base <= wait < base + 1.0


def test_gives_up_after_max_attempts_with_classified_error() -> None:
    policy, sleeps = make_policy(max_attempts=3)
    calls: list[int] = []
    with pytest.raises(TransientError) as info:
        call_with_retry(
            failing(10, TRANSIENT, calls),
            classify=classify,
            policy=policy,
            crm="salesforce",
            operation="query",
            object_name="Account",
        )
    assert len(calls) == 3
    assert len(sleeps) == 2
    err = info.value
    assert err.attempts == 3
    assert err.status == 503
    assert err.object_name == "Account"
    assert isinstance(err.__cause__, Boom)


def test_non_retriable_is_not_retried() -> None:
    policy, sleeps = make_policy()
    calls: list[int] = []
    auth = Classification(ErrorCategory.AUTH, False, None, "INVALID_SESSION_ID", 401)
    with pytest.raises(AuthError):
        call_with_retry(
            failing(1, auth, calls), classify=classify, policy=policy, crm="x", operation="op"
        )
    assert len(calls) == 1
    assert sleeps == []


def test_retry_after_is_a_floor() -> None:
    policy, sleeps = make_policy()
    calls: list[int] = []
    limited = Classification(ErrorCategory.RATE_LIMITED, True, 10.0, None, 429)
    call_with_retry(
        failing(2, limited, calls), classify=classify, policy=policy, crm="x", operation="op"
    )
    assert len(sleeps) == 2
    assert all(10.0 <= s < 11.0 for s in sleeps)


def test_retry_after_longer_than_max_wait_is_raised_at_once() -> None:
    policy, sleeps = make_policy(max_wait=30.0)
    calls: list[int] = []
    migrating = Classification(ErrorCategory.TRANSIENT, True, 3600.0, None, 477)
    with pytest.raises(TransientError) as info:
        call_with_retry(
            failing(5, migrating, calls), classify=classify, policy=policy, crm="x", operation="op"
        )
    assert len(calls) == 1
    assert sleeps == []
    assert info.value.retry_after == 3600.0


def test_daily_limit_not_retried() -> None:
    policy, _sleeps = make_policy()
    calls: list[int] = []
    daily = Classification(ErrorCategory.RATE_LIMITED, False, None, "DAILY", 429)
    with pytest.raises(RateLimitedError):
        call_with_retry(
            failing(5, daily, calls), classify=classify, policy=policy, crm="x", operation="op"
        )
    assert len(calls) == 1


def test_waits_are_capped() -> None:
    policy, _ = make_policy(max_wait=4.0)
    for attempt in range(1, 20):
        assert policy.compute_wait(attempt, None) <= 4.0
    assert policy.backoff(10) == 4.0


def test_jitter_bounded_over_many_draws() -> None:
    policy, _ = make_policy(rng=random.Random(7))
    waits = [policy.compute_wait(2, None) for _ in range(500)]
    assert min(waits) >= 1.0
    assert max(waits) < 2.0
    assert max(waits) - min(waits) > 0.5  # there is jitter


def test_unknown_exceptions_become_fatal_upstream_errors() -> None:
    policy, sleeps = make_policy()

    def fn() -> None:
        raise KeyError("x")

    with pytest.raises(FatalError) as info:
        call_with_retry(fn, classify=classify, policy=policy, crm="x", operation="op")
    assert getattr(info.value, "category", None) is ErrorCategory.FATAL
    assert sleeps == []


def test_from_settings() -> None:
    policy = RetryPolicy.from_settings(SyncSettings(max_retries=2, retry_max_wait_seconds=5.0))
    assert policy.max_attempts == 3
    assert policy.max_wait == 5.0


def test_zero_retries_means_one_attempt() -> None:
    policy, _sleeps = make_policy(max_attempts=1)
    calls: list[int] = []
    with pytest.raises(TransientError):
        call_with_retry(
            failing(5, TRANSIENT, calls), classify=classify, policy=policy, crm="x", operation="op"
        )
    assert len(calls) == 1


def test_each_retry_is_logged_at_warning_before_its_wait() -> None:
    logged_before_sleep: list[int] = []
    with structlog.testing.capture_logs() as logs:

        def sleep(seconds: float) -> None:
            logged_before_sleep.append(len(logs))

        policy = RetryPolicy(max_attempts=3, initial_wait=0.01, jitter=0, sleep=sleep)
        with pytest.raises(TransientError) as info:
            call_with_retry(
                lambda: (_ for _ in ()).throw(Boom(TRANSIENT)),
                classify=classify,
                policy=policy,
                crm="hubspot",
                operation="search",
                object_name="companies",
            )
    assert logged_before_sleep == [1, 2]  # each warning is out before its wait starts
    assert [entry["log_level"] for entry in logs] == ["warning", "warning"]
    first = logs[0]
    assert (first["crm"], first["operation"], first["object"]) == ("hubspot", "search", "companies")
    assert (first["attempt"], first["max_attempts"], first["wait_seconds"]) == (1, 3, 0.01)
    assert "HTTP 503" in first["reason"]
    assert "(after 3 attempts)" in str(info.value)
    assert info.value.attempts == 3
