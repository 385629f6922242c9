"""HubSpot failures classified once: :func:`classify_hubspot` and its tables.

hubspot-api-client generates one exception family per API module (``hubspot.crm.deals.ApiException``
does not catch a companies error, crm-api.md B§1), so classification reads the common attributes
``.status``, ``.headers`` and ``.body`` instead of matching classes. Connection-level failures
surface from urllib3 (``MaxRetryError`` wrapping the cause, ``ProtocolError``, timeouts).

The tables below follow crm-api.md B§9 and B§8; HubSpot's error bodies carry ``category`` (or
``errorType`` + ``policyName`` on 429), which we record as the code but branch on the status,
except for the 429 policy (``DAILY`` cannot be waited out within a run).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions

from app.crm.budget import header_value
from app.crm.netfail import is_connect_failure, is_connection_drop, is_tls_failure, tls_reason
from app.errors import TLS_FAILED, UNREACHABLE, Classification, ErrorCategory

C = ErrorCategory


@dataclass(frozen=True)
class Rule:
    category: ErrorCategory
    retriable: bool
    min_wait: float | None = None  # seconds to wait at least, when the server doesn't say


STATUS_RULES: dict[int, Rule] = {
    # 400: invalid filter/property/body, or paging past the 10,000 search cap (our window
    # logic restarts before it): retrying the same request gives the same answer.
    400: Rule(C.VALIDATION, False),
    # 401: token missing/invalid/revoked (category INVALID_AUTHENTICATION): stop, alert.
    401: Rule(C.AUTH, False),
    # 403: the private app lacks a scope (e.g. crm.objects.deals.read): stop, alert.
    403: Rule(C.AUTH, False),
    # 404: object/record doesn't exist (or was merged away): treat as deleted.
    404: Rule(C.NOT_FOUND, False),
    # 409: already exists / conflict: re-read and decide.
    409: Rule(C.CONFLICT, False),
    # 414: URI too long, or more than 250 merges on a record: split, don't repeat.
    414: Rule(C.VALIDATION, False),
    # 423: record locked; HubSpot asks for at least 2 s before trying again.
    423: Rule(C.TRANSIENT, True, min_wait=2.0),
    # 429: burst or search-per-second limit: wait Retry-After or the rate-limit interval
    # (the DAILY policy is overridden below: not retriable within a run).
    429: Rule(C.RATE_LIMITED, True),
    # 477: the account is migrating between data centres; Retry-After says how long (can be
    # hours: the retry policy raises at once when it exceeds the maximum wait).
    477: Rule(C.TRANSIENT, True),
    # 500: internal error; our calls are reads (idempotent), retry.
    500: Rule(C.TRANSIENT, True),
    # 502/503/504 and Cloudflare 521/523/524: origin unreachable or slow: pause, retry.
    502: Rule(C.TRANSIENT, True),
    503: Rule(C.TRANSIENT, True),
    504: Rule(C.TRANSIENT, True),
    521: Rule(C.TRANSIENT, True),
    523: Rule(C.TRANSIENT, True),
    524: Rule(C.TRANSIENT, True),
    # 522/525/526: Cloudflare connection/TLS trouble: a few retries, then the run fails.
    522: Rule(C.TRANSIENT, True),
    525: Rule(C.TRANSIENT, True),
    526: Rule(C.TRANSIENT, True),
}

# 429 with policyName DAILY: the account's daily budget is gone until its midnight. Waiting
# in-process for hours is wrong; fail the run as rate_limited and let the scheduler retry later.
DAILY_LIMIT_RULE = Rule(C.RATE_LIMITED, False)
# Any other 5xx: server side, retry.
SERVER_ERROR_RULE = Rule(C.TRANSIENT, True)
# Anything nobody classified (including ApiException status 0, a client-side failure).
DEFAULT_RULE = Rule(C.FATAL, False)

# TLS verification failed anywhere in the cause chain: configuration (the CA file), not retried.
TLS_RULE = Rule(C.CONFIG, False)
# The connection was never made (refused, DNS, connect timeout): the CRM may come back; retry.
UNREACHABLE_RULE = Rule(C.TRANSIENT, True)

# Failures without an HTTP status; first isinstance match wins (subclasses first).
EXCEPTION_RULES: tuple[tuple[type[BaseException], Rule], ...] = (
    # TLS verification failed: the CA bundle setting (ssl_ca_cert) is wrong; retrying won't help.
    (urllib3.exceptions.SSLError, Rule(C.CONFIG, False)),
    # Connect/read timeouts (_request_timeout): retry the idempotent read.
    (urllib3.exceptions.TimeoutError, Rule(C.TRANSIENT, True)),
    # Connection reset mid-response, truncated body: retry the page.
    (urllib3.exceptions.ProtocolError, Rule(C.TRANSIENT, True)),
    # urllib3 gave up connecting (the cause is in .reason, classified separately): retry.
    (urllib3.exceptions.MaxRetryError, Rule(C.TRANSIENT, True)),
    # Any other urllib3 HTTP error (NewConnectionError, ...): network trouble, retry.
    (urllib3.exceptions.HTTPError, Rule(C.TRANSIENT, True)),
    # The OS reset/refused the connection outside urllib3's wrappers: retry.
    (ConnectionError, Rule(C.TRANSIENT, True)),
    (TimeoutError, Rule(C.TRANSIENT, True)),
)


def _body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {}
    return body if isinstance(body, dict) else {}


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` (seconds), else HubSpot's burst window ``X-HubSpot-RateLimit-Interval-
    Milliseconds`` when the window is exhausted or no remaining count is given."""
    retry_after = _float(header_value(headers, "Retry-After"))
    if retry_after is not None:
        return max(0.0, retry_after)
    interval_ms = _float(header_value(headers, "X-HubSpot-RateLimit-Interval-Milliseconds"))
    remaining = _float(header_value(headers, "X-HubSpot-RateLimit-Remaining"))
    if interval_ms is not None and (remaining is None or remaining <= 0):
        return interval_ms / 1000.0
    return None


def _is_api_exception(failure: BaseException) -> bool:
    """Any module's generated ``ApiException`` (they share the attributes, not a base class)."""
    return (
        any(cls.__name__ == "ApiException" for cls in type(failure).__mro__)
        and hasattr(failure, "status")
        and hasattr(failure, "body")
    )


def classify_status(status: int, headers: Mapping[str, str] | None, body: Any) -> Classification:
    """Table lookup for an HTTP failure (status, rate-limit headers, error body)."""
    payload = _body(body)
    code = payload.get("policyName") or payload.get("category") or payload.get("errorType")
    code = str(code) if code else None
    message = str(payload.get("message", ""))[:300]
    rule = STATUS_RULES.get(status)
    if rule is None:
        rule = SERVER_ERROR_RULE if 500 <= status <= 599 else DEFAULT_RULE
    if status == 429 and payload.get("policyName") == "DAILY":
        rule = DAILY_LIMIT_RULE
        message = "daily API limit reached (resets at the account's midnight)"
    retry_after = retry_after_seconds(headers) if rule.retriable else None
    if rule.min_wait is not None:
        retry_after = max(retry_after or 0.0, rule.min_wait)
    return Classification(rule.category, rule.retriable, retry_after, code, status, message)


def classify_hubspot(failure: BaseException) -> Classification:
    """Classify a hubspot-api-client or urllib3 exception. Pure, no I/O."""
    if _is_api_exception(failure):
        status = getattr(failure, "status", None)
        if isinstance(status, int) and status > 0:
            return classify_status(
                status, getattr(failure, "headers", None), getattr(failure, "body", None)
            )
        reason = str(getattr(failure, "reason", ""))[:200]
        return Classification(DEFAULT_RULE.category, False, None, None, None, reason)

    if is_connection_drop(failure):
        # The connection was dropped mid-request (TLS EOF): a reset, retried like one.
        return Classification(C.TRANSIENT, True, None, None, None, "connection dropped")
    if is_tls_failure(failure):
        # TLS: ssl_ca_cert (CRMSYNC_CA_BUNDLE) is wrong, not the CRM: say so, never retry.
        rule = TLS_RULE
        return Classification(rule.category, False, None, TLS_FAILED, None, tls_reason(failure))
    if is_connect_failure(failure):
        # No connection at all (refused, unknown host): retried, then "unreachable at URL".
        rule = UNREACHABLE_RULE
        detail = f"no connection ({type(failure).__name__})"
        return Classification(rule.category, rule.retriable, None, UNREACHABLE, None, detail)

    if isinstance(failure, urllib3.exceptions.MaxRetryError) and failure.reason is not None:
        inner = classify_hubspot(failure.reason)
        if inner.category is not C.FATAL:
            return inner

    for exc_type, rule in EXCEPTION_RULES:
        if isinstance(failure, exc_type):
            return Classification(
                rule.category, rule.retriable, None, None, None, type(failure).__name__
            )
    return Classification(
        DEFAULT_RULE.category, DEFAULT_RULE.retriable, None, None, None, type(failure).__name__
    )
