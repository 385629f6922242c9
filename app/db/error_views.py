"""Per-record sync errors as the admin API and CLI show and handle them: filtered lists with the
payload (newest first, id cursor), and resolving one by hand with a comment.

Retrying re-reads the record from the CRM, so it lives in :mod:`app.wiring.error_retry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.db.audit import record_audit
from app.db.base import utcnow
from app.db.models import SyncErrorRecord

#: ``sync_errors.resolution`` of an error an admin resolved by hand.
MANUAL = "manual"


class ErrorNotFound(LookupError):
    pass


class AlreadyResolved(ValueError):
    pass


@dataclass(frozen=True)
class ErrorFilters:
    crm: str | None = None
    object: str | None = None
    category: str | None = None
    retriable: bool | None = None
    resolved: bool | None = None
    direction: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "crm": self.crm,
            "object": self.object,
            "category": self.category,
            "retriable": self.retriable,
            "resolved": self.resolved,
            "direction": self.direction,
        }


def filtered(filters: ErrorFilters) -> Select[SyncErrorRecord]:
    stmt = select(SyncErrorRecord)
    if filters.crm is not None:
        stmt = stmt.where(SyncErrorRecord.crm == filters.crm)
    if filters.object is not None:
        stmt = stmt.where(SyncErrorRecord.object == filters.object)
    if filters.category is not None:
        stmt = stmt.where(SyncErrorRecord.category == filters.category)
    if filters.retriable is not None:
        stmt = stmt.where(SyncErrorRecord.retriable.is_(filters.retriable))
    if filters.resolved is True:
        stmt = stmt.where(SyncErrorRecord.resolved_at.is_not(None))
    elif filters.resolved is False:
        stmt = stmt.where(SyncErrorRecord.resolved_at.is_(None))
    if filters.direction is not None:
        stmt = stmt.where(SyncErrorRecord.direction == filters.direction)
    return stmt


def list_errors(
    session: Session, filters: ErrorFilters, *, before_id: int | None = None, limit: int = 50
) -> Sequence[SyncErrorRecord]:
    """Errors matching ``filters``, newest first, ids below ``before_id`` (the cursor)."""
    stmt = filtered(filters)
    if before_id is not None:
        stmt = stmt.where(SyncErrorRecord.id < before_id)
    return session.scalars(stmt.order_by(SyncErrorRecord.id.desc()).limit(limit)).all()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def error_dict(row: SyncErrorRecord, *, payload: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "run_id": row.run_id,
        "crm": row.crm,
        "object": row.object,
        "record_id": row.record_id,
        "direction": row.direction,
        "category": row.category,
        "message": row.message,
        "retriable": row.retriable,
        "attempts": row.attempts,
        "first_seen_at": _iso(row.first_seen_at),
        "last_seen_at": _iso(row.last_seen_at),
        "resolved_at": _iso(row.resolved_at),
        "resolution": row.resolution,
        "resolved_by": row.resolved_by,
        "resolution_note": row.resolution_note,
    }
    if payload:
        out["payload"] = row.payload
    return out


def get_error(session: Session, error_id: int) -> SyncErrorRecord:
    row = session.get(SyncErrorRecord, error_id)
    if row is None:
        raise ErrorNotFound(f"sync error {error_id} not found")
    return row


def resolve_error(
    session: Session, error_id: int, *, actor: str, comment: str, now: datetime | None = None
) -> SyncErrorRecord:
    """Mark an open error resolved by ``actor`` with ``comment``, audited; commits both."""
    row = get_error(session, error_id)
    if row.resolved_at is not None:
        raise AlreadyResolved(
            f"sync error {error_id} was already resolved at {row.resolved_at.isoformat()} "
            f"({row.resolution})"
        )
    row.resolved_at = now or utcnow()
    row.resolution = MANUAL
    row.resolved_by = actor[:160]
    row.resolution_note = comment
    record_audit(
        session,
        actor,
        "sync_error.resolve",
        f"sync_error:{row.id}",
        {"comment": comment, "crm": row.crm, "object": row.object, "record_id": row.record_id},
    )
    session.commit()
    return row
