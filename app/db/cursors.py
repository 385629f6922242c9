"""Load, save, list and clear stream cursors (``sync_cursors``).

``save_cursor`` only stages the change in the caller's transaction: the engine commits it together
with the page of rows it covers, so a crash can never leave the cursor ahead of the data.
``list_cursors`` and ``delete_cursor`` serve ``crmsync sync cursor show|reset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.models import SyncCursor


@dataclass(frozen=True)
class StoredCursor:
    watermark_at: datetime | None = None
    watermark_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


def load_cursor(session: Session, crm: str, object_name: str, stream: str) -> StoredCursor:
    row = session.scalar(
        select(SyncCursor).where(
            SyncCursor.crm == crm, SyncCursor.object == object_name, SyncCursor.stream == stream
        )
    )
    if row is None:
        return StoredCursor()
    return StoredCursor(row.watermark_at, row.watermark_id, dict(row.state or {}))


def save_cursor(
    session: Session, crm: str, object_name: str, stream: str, cursor: StoredCursor
) -> None:
    row = session.scalar(
        select(SyncCursor).where(
            SyncCursor.crm == crm, SyncCursor.object == object_name, SyncCursor.stream == stream
        )
    )
    if row is None:
        row = SyncCursor(crm=crm, object=object_name, stream=stream)
        session.add(row)
    row.watermark_at = cursor.watermark_at
    row.watermark_id = cursor.watermark_id
    row.state = dict(cursor.state)


def list_cursors(
    session: Session, crm: str | None = None, objects: Sequence[str] | None = None
) -> list[SyncCursor]:
    """Stored cursors (optionally of one CRM and some objects), by CRM, object and stream."""
    query = select(SyncCursor).order_by(SyncCursor.crm, SyncCursor.object, SyncCursor.stream)
    if crm is not None:
        query = query.where(SyncCursor.crm == crm)
    if objects:
        query = query.where(SyncCursor.object.in_(list(objects)))
    return list(session.scalars(query))


def delete_cursor(session: Session, crm: str, object_name: str, stream: str) -> bool:
    """Forget a stream's cursor (the next pass reads everything); False if there was none."""
    result = session.execute(
        delete(SyncCursor).where(
            SyncCursor.crm == crm, SyncCursor.object == object_name, SyncCursor.stream == stream
        )
    )
    return bool(getattr(result, "rowcount", 0))
