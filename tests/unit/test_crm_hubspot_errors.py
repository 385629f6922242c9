"""classify_hubspot, row by row, with the generated ApiException classes of several modules."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3.exceptions
from hubspot.crm.companies import ApiException as CompaniesApiException
from hubspot.crm.companies.exceptions import ForbiddenException, ServiceException
from hubspot.crm.deals import ApiException as DealsApiException

from app.crm.hubspot.errors import classify_hubspot, classify_status, retry_after_seconds
from app.errors import Endpoint, upstream_error
from app.errors import ErrorCategory as C


def api_exc(
    status: int,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    cls: type[Exception] = CompaniesApiException,
) -> Exception:
    exc = cls(status=status, reason="x")
    exc.body = json.dumps(body).encode() if body is not None else None  # type: ignore[attr-defined]
    exc.headers = headers  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("status", "category", "retriable"),
    [
        (400, C.VALIDATION, False),
        (401, C.AUTH, False),
        (403, C.AUTH, False),
        (404, C.NOT_FOUND, False),
        (409, C.CONFLICT, False),
        (414, C.VALIDATION, False),
        (423, C.TRANSIENT, True),
        (429, C.RATE_LIMITED, True),
        (477, C.TRANSIENT, True),
        (500, C.TRANSIENT, True),
        (502, C.TRANSIENT, True),
        (503, C.TRANSIENT, True),
        (504, C.TRANSIENT, True),
        (521, C.TRANSIENT, True),
        (522, C.TRANSIENT, True),
        (524, C.TRANSIENT, True),
        (526, C.TRANSIENT, True),
        (599, C.TRANSIENT, True),
        (418, C.FATAL, False),
    ],
)
def test_status_table(status: int, category: C, retriable: bool) -> None:
    result = classify_hubspot(api_exc(status))
    assert (result.category, result.retriable, result.status) == (category, retriable, status)


def test_any_module_exception_is_recognised() -> None:
    assert classify_hubspot(api_exc(503, cls=DealsApiException)).category is C.TRANSIENT
    assert classify_hubspot(ForbiddenException(status=403)).category is C.AUTH
    assert classify_hubspot(ServiceException(status=500)).retriable


def test_429_daily_is_not_retried() -> None:
    body = {
        "status": "error",
        "errorType": "RATE_LIMIT",
        "policyName": "DAILY",
        "message": "You have reached your daily limit.",
    }
    result = classify_hubspot(api_exc(429, body, {"Retry-After": "5"}))
    assert result.category is C.RATE_LIMITED
    assert result.retriable is False
    assert result.code == "DAILY"
    assert "daily" in result.detail


def test_429_burst_honours_retry_after() -> None:
    body = {"policyName": "TEN_SECONDLY_ROLLING", "errorType": "RATE_LIMIT"}
    result = classify_hubspot(api_exc(429, body, {"Retry-After": "3"}))
    assert result.retriable
    assert result.retry_after == 3.0
    assert result.code == "TEN_SECONDLY_ROLLING"


def test_429_without_retry_after_uses_interval_header() -> None:
    headers = {
        "x-hubspot-ratelimit-interval-milliseconds": "10000",
        "X-HubSpot-RateLimit-Remaining": "0",
    }
    assert classify_hubspot(api_exc(429, {}, headers)).retry_after == 10.0


def test_429_search_without_headers_has_no_retry_after() -> None:
    body = {"message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT"}
    result = classify_hubspot(api_exc(429, body, None))
    assert result.retriable
    assert result.retry_after is None


def test_423_waits_at_least_two_seconds() -> None:
    assert classify_hubspot(api_exc(423)).retry_after == 2.0
    assert classify_hubspot(api_exc(423, None, {"Retry-After": "7"})).retry_after == 7.0


def test_477_carries_retry_after() -> None:
    assert classify_hubspot(api_exc(477, None, {"Retry-After": "86400"})).retry_after == 86400.0


def test_non_retriable_has_no_retry_after() -> None:
    assert classify_hubspot(api_exc(400, None, {"Retry-After": "1"})).retry_after is None


def test_category_code_from_body() -> None:
    body = {"status": "error", "category": "VALIDATION_ERROR", "message": "bad filter"}
    result = classify_hubspot(api_exc(400, body))
    assert result.code == "VALIDATION_ERROR"
    assert result.detail == "bad filter"


def test_status_zero_is_fatal() -> None:
    assert classify_hubspot(CompaniesApiException(status=0, reason="x")).category is C.FATAL


@pytest.mark.parametrize(
    ("exc", "category", "retriable", "code"),
    [
        (
            urllib3.exceptions.MaxRetryError(
                None, "/x", urllib3.exceptions.NewConnectionError(None, "refused")
            ),
            C.TRANSIENT,
            True,
            "UNREACHABLE",
        ),
        (
            urllib3.exceptions.MaxRetryError(None, "/x", urllib3.exceptions.SSLError("verify")),
            C.CONFIG,
            False,
            "TLS_FAILED",
        ),
        (urllib3.exceptions.MaxRetryError(None, "/x", None), C.TRANSIENT, True, None),
        (urllib3.exceptions.ProtocolError("Connection aborted."), C.TRANSIENT, True, None),
        (
            urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"),
            C.TRANSIENT,
            True,
            None,
        ),
        (urllib3.exceptions.SSLError("verify"), C.CONFIG, False, "TLS_FAILED"),
        (ConnectionRefusedError(), C.TRANSIENT, True, "UNREACHABLE"),
        (ConnectionResetError(), C.TRANSIENT, True, None),
        (TimeoutError(), C.TRANSIENT, True, None),
        (ValueError("bug"), C.FATAL, False, None),
    ],
)
def test_exception_table(
    exc: BaseException, category: C, retriable: bool, code: str | None
) -> None:
    result = classify_hubspot(exc)
    assert (result.category, result.retriable, result.code) == (category, retriable, code)


def test_rejected_token_and_tls_messages_name_the_settings() -> None:
    endpoint = Endpoint(
        url="https://api.hubapi.com",
        url_setting="CRMSYNC_HUBSPOT_BASE_URL",
        credential_setting="CRMSYNC_HUBSPOT_ACCESS_TOKEN",
    )
    unauthorized = classify_status(401, None, {"category": "INVALID_AUTHENTICATION"})
    message = str(
        upstream_error(unauthorized, crm="hubspot", operation="search", endpoint=endpoint)
    )
    assert "rejected CRMSYNC_HUBSPOT_ACCESS_TOKEN" in message
    tls = classify_hubspot(urllib3.exceptions.SSLError("verify"))
    message = str(upstream_error(tls, crm="hubspot", operation="search", endpoint=endpoint))
    assert "TLS" in message
    assert "CRMSYNC_CA_BUNDLE" in message
    assert "unset: system CAs used" in message


def test_retry_after_ignores_interval_when_window_not_empty() -> None:
    headers = {
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        "X-HubSpot-RateLimit-Remaining": "5",
    }
    assert retry_after_seconds(headers) is None
