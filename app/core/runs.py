"""What a sync run is: its kind and its states. The engine decides them, the database stores
them as plain strings (``sync_runs.kind``/``status``), the CLI and the API report them.

They lived in ``app.db.enums``, which made the engine import the database layer for two enums.
"""

from __future__ import annotations

from enum import StrEnum


class SyncKind(StrEnum):
    PULL = "pull"
    BACKFILL = "backfill"
    PUSH = "push"
    RECONCILE = "reconcile"
    RECOMPUTE = "recompute"  # health, tier, renewal, lifecycle (crm "cs", object "accounts")
    RETRY = "retry"  # failed records read again by id and synced (app.wiring.error_retry)


class RunStatus(StrEnum):
    """Sync run states: [queued ->] running [-> cancelling] -> succeeded | partial (some
    records failed) | failed | cancelled (interrupted, asked to stop, or refused because
    another pass holds the lease). ``queued``: created by the API or the schedule, its job not
    yet picked up; ``cancelling``: asked to stop, it will at its next committed page."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: The error of a run stopped at a page boundary for another run to carry on begins with one
#: of these: its worker stopped (shutdown), or crmsync's share of the CRM's daily API budget
#: ran out mid-run (docs/budget.md). The job engine queues such a run again at once (a new
#: ``queued`` row, ``params.resumes``); a partitioned backfill's parent counts it as pending.
WORKER_STOPPED = "its worker stopped"
BUDGET_SPENT = "waiting for API budget"


def resumed_elsewhere(error: str | None) -> bool:
    """Whether a ``cancelled`` run with this error is carried on by a run queued after it."""
    return bool(error) and str(error).startswith((WORKER_STOPPED, BUDGET_SPENT))
