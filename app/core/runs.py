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


class RunStatus(StrEnum):
    """Sync run states: running -> succeeded | partial (some records failed) | failed |
    cancelled (interrupted, or refused because another pass holds the lease)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
