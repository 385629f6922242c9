"""Load and save stream cursors (``sync_cursors``).

``save_cursor`` only stages the change in the caller's transaction: the engine commits it together
with the page of rows it covers, so a crash can never leave the cursor ahead of the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
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
