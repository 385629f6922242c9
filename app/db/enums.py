"""The enumerated values stored in plain string columns (see :mod:`app.db.models`).

The run's kind and status are the engine's and live in :mod:`app.core.runs`.
"""

from __future__ import annotations

from enum import StrEnum


class LifecycleStage(StrEnum):
    TRIAL = "trial"
    ONBOARDING = "onboarding"
    ADOPTION = "adoption"
    STEADY = "steady"
    RENEWAL = "renewal"
    EXPANSION = "expansion"
    CHURNED = "churned"


class Tier(StrEnum):
    KEY = "key"
    HIGH = "high"
    LOW = "low"
    TECH = "tech"


class HealthBand(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"
    UNKNOWN = "unknown"


class OpportunityType(StrEnum):
    NEW_BUSINESS = "new_business"
    RENEWAL = "renewal"
    EXPANSION = "expansion"


class RecordOrigin(StrEnum):
    CRM = "crm"
    CS = "cs"


class InboxStatus(StrEnum):
    """Webhook inbox states: received -> processing -> done | failed (retry) -> dead."""

    RECEIVED = "received"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    IGNORED = "ignored"


# The inbox's status filters (app.db.inbox_admin): ``pending`` means not finished yet. Here, with
# the enum, so that `crmsync inbox list --help` names them without loading the database layer.
PENDING = "pending"
STATUS_FILTERS = (PENDING, *(s.value for s in InboxStatus))
