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
