"""crmsync's error taxonomy: one root, one category enum, decided once at each boundary.

::

    CrmsyncError                    root; structured attrs (crm, object, record id, run id)
     ├── SetupError                 crmsync cannot start: category config, CLI exit code 2
     │    ├── ConfigError           a setting or the command is wrong (no CRM configured,
     │    │    │                    unknown CRM or object); found locally, never by a CRM
     │    │    └── BackfillConflictError (app.sync.backfill) another --since than the open one
     │    ├── DatabaseConfigError   CRMSYNC_DATABASE_URL invalid, unsupported or unreachable
     │    └── SchemaError           not migrated, behind the code, or at an unknown revision
     └── UpstreamError              a CRM call failed: category, retriable, status, code,
          │                         retry_after
          ├── TransientError        timeouts, resets, 5xx, locks: retried with backoff
          ├── RateLimitedError      429 / REQUEST_LIMIT_EXCEEDED / HubSpot DAILY
          ├── AuthError             401/403, refresh failed, no credentials to refresh with
          ├── CrmConfigError        the CRM refused crmsync's settings (object, field,
          │                         API version): category config
          ├── ValidationError       the CRM rejected the data or the query (400)
          ├── ConflictError         409, 300 (several records match an external id)
          ├── NotFoundError         404 / NOT_FOUND (deleted record, unknown object)
          └── FatalError            anything not classified above: stop and investigate

Each adapter has ONE classification function (``app.crm.salesforce.errors.classify_salesforce``,
``app.crm.hubspot.errors.classify_hubspot``) that turns a library exception into a
:class:`Classification`; :func:`app.crm.retry.call_with_retry` retries on ``retriable`` and,
once it gives up, raises the matching :class:`UpstreamError` subclass (:func:`upstream_error`).
Everything further up (engine, ``sync_errors`` rows, metrics, our own API) branches on
:class:`ErrorCategory`, never on status codes or message text.

The CLI's one handler (``app.cli.main``) prints any :class:`CrmsyncError` as ``crmsync: <message>``
and maps its category to an exit code (:func:`app.cli.common.exit_code_for`): ``config`` and
``auth`` are the user's to fix (2), anything else is a failed run (1).

Messages say what to do next and never contain secrets (tokens, client secrets): adapters pass
only the CRM's error code and a short, already-redacted detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorCategory(StrEnum):
    """What kind of failure this is; drives retry, alerting and the ``sync_errors`` row."""

    TRANSIENT = "transient"  # retry with backoff
    RATE_LIMITED = "rate_limited"  # retry after the server's wait, or stop until the quota resets
    AUTH = "auth"  # credentials wrong/expired/missing scope: stop, alert a human
    CONFIG = "config"  # crmsync is configured wrongly: stop, fix settings
    VALIDATION = "validation"  # the CRM rejected this request/record: skip or fix the data
    CONFLICT = "conflict"  # duplicate / state conflict: re-read and decide
    NOT_FOUND = "not_found"  # record or resource gone: treat as deleted, or config error
    FATAL = "fatal"  # unknown: stop and investigate


# Categories worth retrying when nothing more specific is known (a classification may still
# mark a rate-limit as not retriable, e.g. HubSpot's DAILY policy).
RETRIABLE_CATEGORIES = frozenset({ErrorCategory.TRANSIENT, ErrorCategory.RATE_LIMITED})


@dataclass(frozen=True)
class Classification:
    """The verdict of an adapter's classification table for one failure."""

    category: ErrorCategory
    retriable: bool
    retry_after: float | None = None  # seconds the server asked us to wait, if it said
    code: str | None = None  # the CRM's own error code (``INVALID_SESSION_ID``, ``RATE_LIMIT``)
    status: int | None = None  # HTTP status, None for connection-level failures
    detail: str = ""  # short, secret-free description (for the message)


# Classification codes for failures below HTTP (the CRM's own codes are upper-case words too).
TLS_FAILED = "TLS_FAILED"  # certificate verification or handshake failed
UNREACHABLE = "UNREACHABLE"  # connection refused, host unknown, no route


@dataclass(frozen=True)
class Endpoint:
    """Where a CRM's calls go and which settings control them, so messages can name the fix."""

    url: str  # the base URL called (instance URL, HubSpot base URL)
    url_setting: str  # the setting holding it, e.g. ``CRMSYNC_SALESFORCE_INSTANCE_URL``
    credential_setting: str  # the setting(s) whose value a 401 rejects
    ca_bundle: str | None = None  # ``CRMSYNC_CA_BUNDLE`` if set


class CrmsyncError(Exception):
    """Root of every error crmsync raises on purpose.

    Structured attributes travel with the error so logs and ``sync_errors`` rows need no message
    parsing: ``crm``, ``object_name``, ``record_id``, ``run_id``; :meth:`attrs` returns a dict.
    """

    category: ErrorCategory = ErrorCategory.FATAL
    retriable: bool = False

    def __init__(
        self,
        message: str,
        *,
        crm: str | None = None,
        object_name: str | None = None,
        record_id: str | None = None,
        run_id: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.crm = crm
        self.object_name = object_name
        self.record_id = record_id
        self.run_id = run_id

    def attrs(self) -> dict[str, Any]:
        """Structured form for logs (``log.error("...", **err.attrs())``); None values dropped."""
        values: dict[str, Any] = {
            "error": type(self).__name__,
            "category": str(self.category),
            "retriable": self.retriable,
            "crm": self.crm,
            "object": self.object_name,
            "record_id": self.record_id,
            "run_id": self.run_id,
        }
        return {k: v for k, v in values.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class SetupError(CrmsyncError):
    """crmsync's own configuration or environment is wrong; the message names the fix."""

    category = ErrorCategory.CONFIG


class DatabaseConfigError(SetupError):
    """``CRMSYNC_DATABASE_URL`` is malformed, names an unsupported database, or cannot connect."""


class SchemaError(SetupError):
    """The database's schema does not match the code: not migrated, behind, or unknown."""


class ConfigError(SetupError):
    """crmsync's configuration or the command is wrong, found before the CRM was asked (no CRM
    configured, an unknown CRM or object); the message names the setting or option to fix.

    Not an :class:`UpstreamError`: nothing failed upstream, so nothing is retried, and it has
    no status or code. When the CRM itself refuses a setting, that is a :class:`CrmConfigError`.
    """


class UpstreamError(CrmsyncError):
    """A call to a CRM failed, classified. Subclasses only fix the default category."""

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory | None = None,
        retriable: bool | None = None,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        attempts: int | None = None,
        reason: str | None = None,
        classification: Classification | None = None,
        crm: str | None = None,
        object_name: str | None = None,
        record_id: str | None = None,
        run_id: str | int | None = None,
    ) -> None:
        super().__init__(
            message, crm=crm, object_name=object_name, record_id=record_id, run_id=run_id
        )
        if category is not None:
            self.category = category
        self.retriable = (
            retriable if retriable is not None else self.category in RETRIABLE_CATEGORIES
        )
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.attempts = attempts
        # What went wrong without the advice (for retry logs); the classification it came from.
        self.reason = reason if reason is not None else message
        self.classification = classification

    def attrs(self) -> dict[str, Any]:
        values = super().attrs()
        extra = {
            "status": self.status,
            "code": self.code,
            "retry_after": self.retry_after,
            "attempts": self.attempts,
        }
        values.update({k: v for k, v in extra.items() if v is not None})
        return values


class TransientError(UpstreamError):
    """Timeouts, connection resets, 5xx, row locks: retried; raised only when retries ran out."""

    category = ErrorCategory.TRANSIENT


class RateLimitedError(UpstreamError):
    """The CRM's request budget is spent (burst or daily)."""

    category = ErrorCategory.RATE_LIMITED


class AuthError(UpstreamError):
    """Credentials missing, wrong, expired beyond refresh, or lacking a scope/permission."""

    category = ErrorCategory.AUTH


class CrmConfigError(UpstreamError):
    """The CRM says crmsync's settings do not match it (API version, object or field names)."""

    category = ErrorCategory.CONFIG


class ValidationError(UpstreamError):
    """The CRM rejected the request or a record as invalid; retrying unchanged gives the same."""

    category = ErrorCategory.VALIDATION


class ConflictError(UpstreamError):
    """A conflict (409) or an ambiguous external id (300): re-read and decide."""

    category = ErrorCategory.CONFLICT


class NotFoundError(UpstreamError):
    """The record or resource does not exist (any more)."""

    category = ErrorCategory.NOT_FOUND


class FatalError(UpstreamError):
    """An upstream failure nobody classified: stop and investigate."""

    category = ErrorCategory.FATAL


ERROR_CLASSES: dict[ErrorCategory, type[UpstreamError]] = {
    ErrorCategory.TRANSIENT: TransientError,
    ErrorCategory.RATE_LIMITED: RateLimitedError,
    ErrorCategory.AUTH: AuthError,
    ErrorCategory.CONFIG: CrmConfigError,
    ErrorCategory.VALIDATION: ValidationError,
    ErrorCategory.CONFLICT: ConflictError,
    ErrorCategory.NOT_FOUND: NotFoundError,
    ErrorCategory.FATAL: FatalError,
}

# What to do next, per category: the tail of every UpstreamError message.
NEXT_STEP: dict[ErrorCategory, str] = {
    ErrorCategory.TRANSIENT: "the CRM or the network kept failing; the run can be retried later",
    ErrorCategory.RATE_LIMITED: "the CRM's API budget is spent; retry after it resets "
    "or lower the sync frequency",
    ErrorCategory.AUTH: "check the CRM credentials (token, client id/secret) and the "
    "integration user's permissions/scopes",
    ErrorCategory.CONFIG: "check crmsync's CRM settings (instance URL, API version, object "
    "and field names)",
    ErrorCategory.VALIDATION: "the CRM rejected the request as invalid; fix the data or the "
    "query, retrying unchanged will fail again",
    ErrorCategory.CONFLICT: "re-read the record and resolve the conflict",
    ErrorCategory.NOT_FOUND: "the record or resource no longer exists; treat it as deleted "
    "or check the object name",
    ErrorCategory.FATAL: "unexpected CRM failure; inspect the error code and report it",
}


def next_step(classification: Classification, crm: str, endpoint: Endpoint | None = None) -> str:
    """The advice that ends an upstream error's message, as specific as the failure allows."""
    if endpoint is not None:
        if classification.code == TLS_FAILED:
            now = f"now {endpoint.ca_bundle}" if endpoint.ca_bundle else "unset: system CAs used"
            return (
                f"TLS verification of {endpoint.url} failed: set CRMSYNC_CA_BUNDLE to the PEM "
                f"file of the CA that signed its certificate ({now})"
            )
        if classification.code == UNREACHABLE:
            return (
                f"{crm} is unreachable at {endpoint.url}: check {endpoint.url_setting} "
                "and the network"
            )
        if classification.category is ErrorCategory.AUTH and classification.status in (None, 401):
            # 401, or the token endpoint refused (no status): the credentials themselves.
            return f"{crm} rejected {endpoint.credential_setting}: set valid credentials"
    return NEXT_STEP[classification.category]


def upstream_error(
    classification: Classification,
    *,
    crm: str,
    operation: str,
    attempts: int | None = None,
    endpoint: Endpoint | None = None,
    object_name: str | None = None,
    record_id: str | None = None,
    run_id: str | int | None = None,
) -> UpstreamError:
    """Build the :class:`UpstreamError` subclass for a classification, with a next-step message."""
    cls = ERROR_CLASSES[classification.category]
    parts = [f"{crm} {operation} failed"]
    if classification.status is not None:
        parts.append(f"HTTP {classification.status}")
    if classification.code:
        parts.append(classification.code)
    head = " / ".join(parts)
    detail = f": {classification.detail}" if classification.detail else ""
    tries = f" (after {attempts} attempts)" if attempts and attempts > 1 else ""
    message = f"{head}{detail}{tries}; {next_step(classification, crm, endpoint)}"
    return cls(
        message,
        category=classification.category,
        retriable=classification.retriable,
        status=classification.status,
        code=classification.code,
        retry_after=classification.retry_after,
        attempts=attempts,
        reason=f"{head}{detail}",
        classification=classification,
        crm=crm,
        object_name=object_name,
        record_id=record_id,
        run_id=run_id,
    )
