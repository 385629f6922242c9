"""Retrying CRM calls: a tenacity policy driven by the adapters' classification.

The adapter's classification function (one per CRM) is the only place that looks at status codes
and error codes; this module only reads the resulting :class:`~app.errors.Classification`:

* an attempt that raises is classified and turned into an :class:`~app.errors.UpstreamError`
  (``raise ... from`` the library exception);
* it is retried only if ``retriable`` is true, at most ``max_attempts`` attempts in all;
* the wait is exponential backoff (``initial_wait * 2**(n-1)``, capped at ``max_wait``) plus
  jitter in ``[0, jitter)``, and never less than the server's ``retry_after`` (HubSpot
  ``Retry-After`` or its rate-limit interval header; Salesforce sends none);
* a ``retry_after`` longer than ``max_wait`` is not slept through: the error is raised at once
  (HubSpot 477 may ask for hours; the scheduler retries the run later);
* every attempt is reported to ``on_attempt`` (the clients count API calls there);
* each retry is logged at WARNING *before* its wait (tenacity's ``before_sleep``), with the
  attempt number, the wait and the reason, so an unreachable CRM is visible at once instead of
  after minutes of silent backoff;
* the error raised when giving up says how many attempts were made and, given the
  :class:`~app.errors.Endpoint`, names the URL and the settings to check.

``sleep`` and ``rng`` are injectable so tests run instantly and can assert the computed waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

from app.errors import Classification, CrmsyncError, Endpoint, UpstreamError, upstream_error
from app.logging import get_logger
from app.settings import SyncSettings

T = TypeVar("T")

Classifier = Callable[[BaseException], Classification]

log = get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; build from settings with :meth:`from_settings`."""

    max_attempts: int = 7  # first try + retries
    initial_wait: float = 0.5  # seconds before the first retry (before jitter)
    max_wait: float = 60.0  # cap of a single wait (backoff and jitter together)
    jitter: float = 1.0  # uniform extra wait in [0, jitter)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    @classmethod
    def from_settings(
        cls,
        sync: SyncSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> RetryPolicy:
        return cls(
            max_attempts=sync.max_retries + 1,
            max_wait=sync.retry_max_wait_seconds,
            jitter=min(1.0, sync.retry_max_wait_seconds),
            sleep=sleep,
            rng=rng if rng is not None else random.Random(),
        )

    def backoff(self, attempt: int) -> float:
        """Exponential part of the wait after failed attempt number ``attempt`` (1-based)."""
        exponent: int = max(0, attempt - 1)
        return min(self.max_wait, self.initial_wait * float(2.0**exponent))

    def compute_wait(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt ``attempt``: backoff + jitter, >= retry_after."""
        jitter = float(self.rng.uniform(0.0, self.jitter)) if self.jitter > 0 else 0.0
        wait = min(self.max_wait, self.backoff(attempt) + jitter)
        if retry_after is not None and retry_after > 0:
            # The server knows best: at least its wait, plus jitter so workers don't stampede.
            wait = max(wait, retry_after + jitter)
        return wait

    def should_retry(self, error: UpstreamError) -> bool:
        """Retriable, and the server's requested wait (if any) fits in one allowed wait."""
        if not error.retriable:
            return False
        return error.retry_after is None or error.retry_after <= self.max_wait


def call_with_retry(
    fn: Callable[[], T],
    *,
    classify: Classifier,
    policy: RetryPolicy,
    crm: str,
    operation: str,
    object_name: str | None = None,
    on_attempt: Callable[[], None] | None = None,
    endpoint: Endpoint | None = None,
) -> T:
    """Run ``fn`` under ``policy``; raise the classified :class:`UpstreamError` when giving up.

    ``fn`` must be idempotent (reads, upserts): it is simply called again.
    Errors that already are :class:`UpstreamError` pass through unchanged (not re-classified),
    and so does any other crmsync error raised on purpose inside ``fn`` (a local
    :class:`~app.errors.ConfigError`, say: a key file that cannot sign), never retried.
    """

    def attempt() -> T:
        if on_attempt is not None:
            on_attempt()
        try:
            return fn()
        except CrmsyncError:
            raise
        except Exception as exc:
            raise upstream_error(
                classify(exc),
                crm=crm,
                operation=operation,
                endpoint=endpoint,
                object_name=object_name,
            ) from exc

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = error.retry_after if isinstance(error, UpstreamError) else None
        return policy.compute_wait(state.attempt_number, retry_after)

    def retry_predicate(exc: BaseException) -> bool:
        return isinstance(exc, UpstreamError) and policy.should_retry(exc)

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        reason = error.reason if isinstance(error, UpstreamError) else repr(error)
        wait_seconds = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "crm call failed, retrying",
            crm=crm,
            operation=operation,
            object=object_name,
            attempt=state.attempt_number,
            max_attempts=policy.max_attempts,
            wait_seconds=round(wait_seconds, 2),
            reason=reason,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(retry_predicate),
        wait=wait,
        before_sleep=log_retry,
        stop=tenacity.stop_after_attempt(max(1, policy.max_attempts)),
        sleep=policy.sleep,
        reraise=True,
    )
    attempts = 0
    try:
        for attempt_ctx in retrying:
            with attempt_ctx:
                attempts = attempt_ctx.retry_state.attempt_number
                return attempt()
    except UpstreamError as exc:
        if exc.attempts is not None:
            raise
        if attempts > 1 and exc.classification is not None:
            # Rebuild so the message says how many attempts were made.
            raise upstream_error(
                exc.classification,
                crm=crm,
                operation=operation,
                attempts=attempts,
                endpoint=endpoint,
                object_name=object_name,
            ) from exc.__cause__
        exc.attempts = attempts
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
