"""Salesforce failures classified once: :func:`classify_salesforce` and its tables.

simple-salesforce maps statuses to exception classes (``util.exception_handler``: 300
``SalesforceMoreThanOneRecord``, 400 ``SalesforceMalformedRequest``, 401
``SalesforceExpiredSession``, 403 ``SalesforceRefusedRequest``, 404
``SalesforceResourceNotFound``, else ``SalesforceGeneralError``), all with ``.status`` and
``.content`` (the decoded JSON error array, or text). The adapter's own Bulk/OAuth calls raise the
same classes. Connection-level failures come from ``requests``.

The tables below are the only place that looks at Salesforce statuses and error codes
(crm-api.md A§9). Lookup order: (status, errorCode) -> (any status, errorCode) -> (status, any)
-> status class (5xx) -> fatal. Exceptions without a status go through :data:`EXCEPTION_RULES`
(first ``isinstance`` match wins, so subclasses come before their bases).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceOperationError,
)

from app.crm.netfail import is_connect_failure, is_connection_drop, is_tls_failure, tls_reason
from app.errors import TLS_FAILED, UNREACHABLE, Classification, ErrorCategory

C = ErrorCategory


@dataclass(frozen=True)
class Rule:
    category: ErrorCategory
    retriable: bool


# (HTTP status or None for "any status", errorCode or None for "any code") -> rule.
STATUS_RULES: dict[tuple[int | None, str | None], Rule] = {
    # 401 INVALID_SESSION_ID: the token expired. The client refreshes once (client
    # credentials) and repeats the call *before* classifying; reaching here means the refresh
    # was impossible (static token) or failed, so a human must fix the credentials.
    (401, "INVALID_SESSION_ID"): Rule(C.AUTH, False),
    # Any other 401: credentials rejected outright.
    (401, None): Rule(C.AUTH, False),
    # 403 REQUEST_LIMIT_EXCEEDED: the org's rolling 24 h API budget is spent, or more than 25
    # long requests run at once (A§8). Salesforce signals limits with 403, not 429. The
    # concurrency case clears in seconds, so a few backed-off retries are worth it; if the
    # daily budget is spent the retries run out and the run fails as rate_limited.
    (403, "REQUEST_LIMIT_EXCEEDED"): Rule(C.RATE_LIMITED, True),
    # Other 403: the integration user lacks a permission (API Enabled, object access).
    (403, None): Rule(C.AUTH, False),
    # UNABLE_TO_LOCK_ROW at any status: another transaction holds the row; it clears in
    # seconds (A§6, A§9 "retry per record").
    (None, "UNABLE_TO_LOCK_ROW"): Rule(C.TRANSIENT, True),
    # A query locator (nextRecordsUrl) expired (~15 min) or is unknown: not retriable as is;
    # the client restarts the query from its (SystemModstamp, Id) position instead.
    (None, "INVALID_QUERY_LOCATOR"): Rule(C.NOT_FOUND, False),
    # Field or object names in SOQL don't exist in this org: the mapping/settings are wrong.
    (400, "INVALID_FIELD"): Rule(C.CONFIG, False),
    (400, "INVALID_TYPE"): Rule(C.CONFIG, False),
    # The SOQL itself is malformed: a bug in the query builder, retrying won't help.
    (400, "MALFORMED_QUERY"): Rule(C.VALIDATION, False),
    # Any other 400: the request body or query was rejected.
    (400, None): Rule(C.VALIDATION, False),
    # 300: an external id matched several records: report the duplicate keys.
    (300, None): Rule(C.CONFLICT, False),
    # 404 NOT_FOUND: record deleted, or the object/endpoint doesn't exist (API version).
    (404, None): Rule(C.NOT_FOUND, False),
    # 405/410/415: wrong method, retired resource (old API version), body format: our config.
    (405, None): Rule(C.CONFIG, False),
    (410, None): Rule(C.CONFIG, False),
    (415, None): Rule(C.CONFIG, False),
    # 409: job state or API-version conflict (Bulk results asked with another version).
    (409, None): Rule(C.CONFLICT, False),
    # 412/428: a conditional request failed: re-read and decide.
    (412, None): Rule(C.CONFLICT, False),
    (428, None): Rule(C.CONFLICT, False),
    # 414/431: URI or headers longer than 16,384 bytes: split the request, don't repeat it.
    (414, None): Rule(C.VALIDATION, False),
    (431, None): Rule(C.VALIDATION, False),
    # 420: Salesforce Edge has no route to the host right now: a few retries, then alert.
    (420, None): Rule(C.TRANSIENT, True),
    # 429: not documented for Salesforce, but proxies and the sandbox may send it.
    (429, None): Rule(C.RATE_LIMITED, True),
    # 500/502/503/504: internal error, Edge cannot reach the instance, overloaded: back off.
    (500, None): Rule(C.TRANSIENT, True),
    (502, None): Rule(C.TRANSIENT, True),
    (503, None): Rule(C.TRANSIENT, True),
    (504, None): Rule(C.TRANSIENT, True),
}

# Any other 5xx: server side, worth a backed-off retry.
SERVER_ERROR_RULE = Rule(C.TRANSIENT, True)
# Anything nobody classified: stop and look.
DEFAULT_RULE = Rule(C.FATAL, False)

# TLS verification failed anywhere in the cause chain: configuration (the CA file), not retried.
TLS_RULE = Rule(C.CONFIG, False)
# The connection was never made (refused, DNS, connect timeout): the CRM may come back; retry.
UNREACHABLE_RULE = Rule(C.TRANSIENT, True)

# Exceptions without an HTTP status; first isinstance match wins (subclasses first).
EXCEPTION_RULES: tuple[tuple[type[BaseException], Rule], ...] = (
    # OAuth token endpoint said no (invalid_client, invalid_grant, ...): credentials are wrong.
    (SalesforceAuthenticationFailed, Rule(C.AUTH, False)),
    # A Bulk 2.0 job ended Failed/Aborted: the job's errorMessage says why; not retriable as is.
    (SalesforceOperationError, Rule(C.FATAL, False)),
    # TLS verification failed: the CA bundle setting is wrong (crm-api.md §0), retrying won't help.
    (requests.exceptions.SSLError, Rule(C.CONFIG, False)),
    # A configured proxy refused or is dead: configuration, not the CRM.
    (requests.exceptions.ProxyError, Rule(C.CONFIG, False)),
    # Connect/read timeouts: the CRM or the network is slow; the call is idempotent, retry.
    (requests.exceptions.Timeout, Rule(C.TRANSIENT, True)),
    # Connection reset or refused, DNS hiccup: retry.
    (requests.exceptions.ConnectionError, Rule(C.TRANSIENT, True)),
    # The body was cut mid-stream (chunked encoding broken by a reset): retry the page.
    (requests.exceptions.ChunkedEncodingError, Rule(C.TRANSIENT, True)),
    # A truncated JSON body (reset after the headers): retry the page.
    (requests.exceptions.JSONDecodeError, Rule(C.TRANSIENT, True)),
    # urllib3 errors that escape requests while streaming a body: retry.
    (urllib3.exceptions.ProtocolError, Rule(C.TRANSIENT, True)),
    (urllib3.exceptions.TimeoutError, Rule(C.TRANSIENT, True)),
)


def error_code(content: Any) -> str | None:
    """The first ``errorCode`` of a Salesforce error body (a JSON array, or text), if any."""
    if isinstance(content, bytes | str):
        try:
            content = json.loads(content)
        except ValueError:
            return None
    if isinstance(content, list) and content and isinstance(content[0], dict):
        code = content[0].get("errorCode") or content[0].get("statusCode")
        return str(code) if code else None
    if isinstance(content, dict):
        code = content.get("errorCode") or content.get("error")
        return str(code) if code else None
    return None


def _message(content: Any) -> str:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("message", ""))[:300]
    if isinstance(content, dict):
        return str(content.get("message") or content.get("error_description") or "")[:300]
    return ""


def rule_for_status(status: int, code: str | None) -> Rule:
    """Table lookup for an HTTP failure; see the module docstring for the order."""
    for key in ((status, code), (None, code), (status, None)):
        if key[1] is None and key[0] is None:
            continue
        rule = STATUS_RULES.get(key)
        if rule is not None:
            return rule
    if 500 <= status <= 599:
        return SERVER_ERROR_RULE
    return DEFAULT_RULE


def classify_salesforce(failure: BaseException | requests.Response) -> Classification:
    """Classify a simple-salesforce/requests exception or a failed response. Pure, no I/O."""
    if isinstance(failure, requests.Response):
        try:
            content: Any = failure.json()
        except ValueError:
            content = failure.text
        status: int | None = failure.status_code
        code = error_code(content)
        assert status is not None
        rule = rule_for_status(status, code)
        detail = _message(content)
        return Classification(rule.category, rule.retriable, None, code, status, detail)

    if isinstance(failure, SalesforceAuthenticationFailed):
        # The OAuth token endpoint's own words: ``error`` (invalid_client, invalid_grant, ...)
        # as the code and ``error_description`` in the detail.
        rule = EXCEPTION_RULES[0][1]
        code = str(failure.code) if failure.code is not None else None
        description = failure.auth_message[:200] or "no description"
        detail = f"OAuth token request refused ({description})"
        return Classification(rule.category, rule.retriable, None, code, None, detail)

    if isinstance(failure, SalesforceError):
        status = int(failure.status)
        code = error_code(failure.content)
        rule = rule_for_status(status, code)
        detail = _message(failure.content)
        return Classification(rule.category, rule.retriable, None, code, status, detail)

    if is_connection_drop(failure):
        # The connection was dropped mid-request (TLS EOF): a reset, retried like one.
        return Classification(C.TRANSIENT, True, None, None, None, "connection dropped")
    if isinstance(failure, requests.exceptions.SSLError) or is_tls_failure(failure):
        # TLS: the CA bundle is wrong (crm-api.md §0), not the CRM: say so, never retry.
        rule = TLS_RULE
        return Classification(rule.category, False, None, TLS_FAILED, None, tls_reason(failure))
    if isinstance(failure, requests.exceptions.ConnectionError) and is_connect_failure(failure):
        # No connection at all (refused, unknown host): retried, then "unreachable at URL".
        rule = UNREACHABLE_RULE
        detail = f"no connection ({type(failure).__name__})"
        return Classification(rule.category, rule.retriable, None, UNREACHABLE, None, detail)

    for exc_type, rule in EXCEPTION_RULES:
        if isinstance(failure, exc_type):
            detail = type(failure).__name__
            if isinstance(failure, SalesforceOperationError):
                detail = f"bulk job failed: {str(failure)[:300]}"
            return Classification(rule.category, rule.retriable, None, None, None, detail)

    return Classification(
        DEFAULT_RULE.category, DEFAULT_RULE.retriable, None, None, None, type(failure).__name__
    )
