"""The error taxonomy: hierarchy, structured attributes, next-step messages."""

from __future__ import annotations

import pytest

from app.errors import (
    ERROR_CLASSES,
    AuthError,
    Classification,
    ConfigError,
    CrmConfigError,
    CrmsyncError,
    ErrorCategory,
    RateLimitedError,
    SetupError,
    TransientError,
    UpstreamError,
    upstream_error,
)


def test_every_category_has_a_class_and_all_are_upstream_errors() -> None:
    assert set(ERROR_CLASSES) == set(ErrorCategory)
    for category, cls in ERROR_CLASSES.items():
        assert issubclass(cls, UpstreamError)
        assert issubclass(cls, CrmsyncError)
        assert cls.category is category


def test_a_local_configuration_error_is_a_setup_error_not_an_upstream_one() -> None:
    """Found before any CRM call: not retried, no status, exit 2 like the other setup errors;
    a CRM refusing a setting is a CrmConfigError (category config too)."""
    from app.cli.common import ExitCode, exit_code_for
    from app.sync.backfill import BackfillConflictError

    err = ConfigError("no CRM configured: set CRMSYNC_HUBSPOT_ACCESS_TOKEN")
    assert isinstance(err, SetupError)
    assert not isinstance(err, UpstreamError)
    assert issubclass(BackfillConflictError, SetupError)
    assert (err.category, err.retriable) == (ErrorCategory.CONFIG, False)
    assert exit_code_for(err.category) is ExitCode.USAGE
    assert ERROR_CLASSES[ErrorCategory.CONFIG] is CrmConfigError
    assert exit_code_for(CrmConfigError("x").category) is ExitCode.USAGE


@pytest.mark.parametrize(
    ("category", "retriable"),
    [(ErrorCategory.TRANSIENT, True), (ErrorCategory.RATE_LIMITED, True)]
    + [(c, False) for c in ErrorCategory if c not in ("transient", "rate_limited")],
)
def test_default_retriable_follows_category(category: ErrorCategory, retriable: bool) -> None:
    assert ERROR_CLASSES[category]("x").retriable is retriable


def test_upstream_error_builds_subclass_with_attrs_and_next_step() -> None:
    c = Classification(ErrorCategory.RATE_LIMITED, False, 10.0, "DAILY", 429, "daily limit")
    err = upstream_error(c, crm="hubspot", operation="search", object_name="deals")
    assert isinstance(err, RateLimitedError)
    assert err.retriable is False
    assert err.retry_after == 10.0
    assert "HTTP 429" in str(err)
    assert "DAILY" in str(err)
    assert "retry after" in str(err)
    assert err.attrs() == {
        "error": "RateLimitedError",
        "category": "rate_limited",
        "retriable": False,
        "crm": "hubspot",
        "object": "deals",
        "status": 429,
        "code": "DAILY",
        "retry_after": 10.0,
    }


def test_root_attrs_drop_none_and_keep_run_context() -> None:
    err = AuthError("token refused", crm="salesforce", run_id=7, record_id="001")
    attrs = err.attrs()
    assert attrs["run_id"] == 7
    assert attrs["record_id"] == "001"
    assert "object" not in attrs
    assert attrs["category"] == "auth"


def test_explicit_category_overrides_class_default() -> None:
    err = TransientError("x", category=ErrorCategory.FATAL, retriable=False)
    assert err.category is ErrorCategory.FATAL
    assert not err.retriable
