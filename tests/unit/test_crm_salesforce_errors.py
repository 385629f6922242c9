"""classify_salesforce, row by row, with simple-salesforce's and requests' own exceptions."""

from __future__ import annotations

import json

import pytest
import requests
import urllib3.exceptions
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceBulkV2ExtractError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from app.crm.salesforce.errors import classify_salesforce, error_code
from app.errors import ErrorCategory as C

URL = "https://127.0.0.1/services/data/v59.0/query/"


def body(code: str, message: str = "m") -> list[dict[str, str]]:
    return [{"message": message, "errorCode": code}]


@pytest.mark.parametrize(
    ("exc", "category", "retriable", "code"),
    [
        (
            SalesforceExpiredSession(URL, 401, "query", body("INVALID_SESSION_ID")),
            C.AUTH,
            False,
            "INVALID_SESSION_ID",
        ),
        (
            SalesforceRefusedRequest(URL, 403, "query", body("REQUEST_LIMIT_EXCEEDED")),
            C.RATE_LIMITED,
            True,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (
            SalesforceRefusedRequest(URL, 403, "query", body("INSUFFICIENT_ACCESS")),
            C.AUTH,
            False,
            "INSUFFICIENT_ACCESS",
        ),
        (
            SalesforceMalformedRequest(URL, 400, "query", body("MALFORMED_QUERY")),
            C.VALIDATION,
            False,
            "MALFORMED_QUERY",
        ),
        (
            SalesforceMalformedRequest(URL, 400, "query", body("INVALID_FIELD")),
            C.CONFIG,
            False,
            "INVALID_FIELD",
        ),
        (
            SalesforceMalformedRequest(URL, 400, "query", body("INVALID_TYPE")),
            C.CONFIG,
            False,
            "INVALID_TYPE",
        ),
        (
            SalesforceMalformedRequest(URL, 400, "query", body("UNABLE_TO_LOCK_ROW")),
            C.TRANSIENT,
            True,
            "UNABLE_TO_LOCK_ROW",
        ),
        (
            SalesforceMalformedRequest(URL, 400, "query", body("INVALID_QUERY_LOCATOR")),
            C.NOT_FOUND,
            False,
            "INVALID_QUERY_LOCATOR",
        ),
        (
            SalesforceResourceNotFound(URL, 404, "Account", body("NOT_FOUND")),
            C.NOT_FOUND,
            False,
            "NOT_FOUND",
        ),
        (SalesforceMoreThanOneRecord(URL, 300, "Account", []), C.CONFLICT, False, None),
        (
            SalesforceGeneralError(URL, 500, "query", body("UNKNOWN_EXCEPTION")),
            C.TRANSIENT,
            True,
            "UNKNOWN_EXCEPTION",
        ),
        (SalesforceGeneralError(URL, 503, "query", "Service Unavailable"), C.TRANSIENT, True, None),
        (SalesforceGeneralError(URL, 502, "query", ""), C.TRANSIENT, True, None),
        (SalesforceGeneralError(URL, 599, "query", ""), C.TRANSIENT, True, None),
        (SalesforceGeneralError(URL, 420, "query", ""), C.TRANSIENT, True, None),
        (SalesforceGeneralError(URL, 429, "query", ""), C.RATE_LIMITED, True, None),
        (
            SalesforceGeneralError(URL, 409, "query", body("API_VERSION")),
            C.CONFLICT,
            False,
            "API_VERSION",
        ),
        (SalesforceGeneralError(URL, 410, "query", ""), C.CONFIG, False, None),
        (SalesforceGeneralError(URL, 414, "query", ""), C.VALIDATION, False, None),
        (SalesforceGeneralError(URL, 418, "query", ""), C.FATAL, False, None),
        (
            SalesforceAuthenticationFailed("invalid_client", "invalid client credentials"),
            C.AUTH,
            False,
            "invalid_client",
        ),
        (SalesforceBulkV2ExtractError("job failed"), C.FATAL, False, None),
        (requests.exceptions.ConnectionError("reset"), C.TRANSIENT, True, None),
        (requests.exceptions.ReadTimeout("slow"), C.TRANSIENT, True, None),
        (requests.exceptions.ConnectTimeout("slow"), C.TRANSIENT, True, None),
        (requests.exceptions.ChunkedEncodingError("cut"), C.TRANSIENT, True, None),
        (requests.exceptions.JSONDecodeError("bad", "{", 1), C.TRANSIENT, True, None),
        (urllib3.exceptions.ProtocolError("reset"), C.TRANSIENT, True, None),
        (requests.exceptions.SSLError("verify failed"), C.CONFIG, False, None),
        (KeyError("bug"), C.FATAL, False, None),
    ],
)
def test_classification_table(
    exc: BaseException, category: C, retriable: bool, code: str | None
) -> None:
    result = classify_salesforce(exc)
    assert (result.category, result.retriable, result.code) == (category, retriable, code)
    assert result.retry_after is None  # Salesforce sends no Retry-After


def test_status_is_reported() -> None:
    result = classify_salesforce(SalesforceGeneralError(URL, 503, "query", ""))
    assert result.status == 503


def test_classifies_a_response_too() -> None:
    response = requests.Response()
    response.status_code = 403
    response._content = json.dumps(body("REQUEST_LIMIT_EXCEEDED")).encode()
    result = classify_salesforce(response)
    assert result.category is C.RATE_LIMITED
    assert result.status == 403


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (body("X"), "X"),
        (json.dumps(body("Y")), "Y"),
        (json.dumps(body("Z")).encode(), "Z"),
        ("not json", None),
        ([], None),
        ({"error": "invalid_grant"}, "invalid_grant"),
    ],
)
def test_error_code(content: object, code: str | None) -> None:
    assert error_code(content) == code
