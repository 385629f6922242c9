"""The audit log: who triggered, cancelled, retried, resolved, replayed or managed what.

:func:`record_audit` adds the row to the caller's session and does not commit: the entry commits
in the same transaction as the change it records, so a crash never leaves one without the other.
:func:`list_audit` pages newest first with an id cursor (``before``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AuditEntry
from app.db.runs import storable_payload


def record_audit(
    session: Session,
    actor: str,
    action: str,
    target: str | None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one audit row (``actor`` e.g. ``key:ops-bot``, ``action`` e.g. ``sync_error.retry``,
    ``target`` e.g. ``sync_error:12``) to ``session``; the caller commits."""
    entry = AuditEntry(
        at=utcnow(),
        actor=actor[:160],
        action=action[:64],
        target=target[:160] if target is not None else None,
        detail=storable_payload(detail or {}),
    )
    session.add(entry)
    return entry


def list_audit(
    session: Session,
    *,
    before_id: int | None = None,
    limit: int = 50,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
) -> Sequence[AuditEntry]:
    """Up to ``limit`` entries, newest first, with an id below ``before_id`` when given."""
    stmt = select(AuditEntry)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    if actor is not None:
        stmt = stmt.where(AuditEntry.actor == actor)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if target is not None:
        stmt = stmt.where(AuditEntry.target == target)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    return session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)).all()


def audit_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
    }
