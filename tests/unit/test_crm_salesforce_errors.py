"""classify_salesforce, row by row, with simple-salesforce's and requests' own exceptions."""

from __future__ import annotations

import json
import ssl

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
from app.errors import Endpoint, upstream_error
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
        (requests.exceptions.SSLError("verify failed"), C.CONFIG, False, "TLS_FAILED"),
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


def _refused() -> requests.exceptions.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/services/data", reason)  # type: ignore[arg-type]
    )


def _tls() -> requests.exceptions.SSLError:
    cert_error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert_error.verify_message = "unable to get local issuer certificate"
    reason = urllib3.exceptions.SSLError(cert_error)
    return requests.exceptions.SSLError(
        urllib3.exceptions.MaxRetryError(None, "/services/data", reason)  # type: ignore[arg-type]
    )


ENDPOINT = Endpoint(
    url="https://acme.my.salesforce.com",
    url_setting="CRMSYNC_SALESFORCE_INSTANCE_URL",
    credential_setting="CRMSYNC_SALESFORCE_ACCESS_TOKEN",
    ca_bundle="/etc/crm-ca.pem",
)


def test_refused_connection_is_unreachable_and_retried() -> None:
    result = classify_salesforce(_refused())
    assert (result.category, result.retriable, result.code) == (C.TRANSIENT, True, "UNREACHABLE")
    message = str(upstream_error(result, crm="salesforce", operation="query", endpoint=ENDPOINT))
    assert "salesforce is unreachable at https://acme.my.salesforce.com" in message
    assert "CRMSYNC_SALESFORCE_INSTANCE_URL" in message


def test_tls_failure_says_tls_and_names_the_ca_file_not_the_api_version() -> None:
    result = classify_salesforce(_tls())
    assert (result.category, result.retriable, result.code) == (C.CONFIG, False, "TLS_FAILED")
    assert "unable to get local issuer certificate" in result.detail
    message = str(upstream_error(result, crm="salesforce", operation="query", endpoint=ENDPOINT))
    assert "TLS" in message
    assert "CRMSYNC_CA_BUNDLE" in message
    assert "/etc/crm-ca.pem" in message
    assert "API version" not in message


def test_token_endpoint_refusal_quotes_error_and_description() -> None:
    failure = SalesforceAuthenticationFailed("invalid_client", "invalid client credentials")
    result = classify_salesforce(failure)
    assert result.code == "invalid_client"
    assert "invalid client credentials" in result.detail


def test_rejected_access_token_names_the_setting() -> None:
    failure = SalesforceExpiredSession(URL, 401, "query", body("INVALID_SESSION_ID"))
    result = classify_salesforce(failure)
    message = str(upstream_error(result, crm="salesforce", operation="query", endpoint=ENDPOINT))
    assert "rejected CRMSYNC_SALESFORCE_ACCESS_TOKEN" in message
