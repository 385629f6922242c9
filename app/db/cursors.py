"""Load, save, list and clear stream cursors (``sync_cursors``).

A :class:`~app.sync.cursor.CursorState` is stored through its one JSON codec: ``at``/``id`` in
the ``watermark_at``/``watermark_id`` columns (so they can be queried and shown), the rest of
:func:`~app.sync.cursor.encode` in ``state``.

``save_cursor`` only stages the change in the caller's transaction: the engine commits it together
with the page of rows it covers, so a crash can never leave the cursor ahead of the data.
``list_cursors`` and ``delete_cursor`` serve ``crmsync sync cursor show|reset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.models import SyncCursor
from app.sync.cursor import CursorState, decode, encode


def state_column(cursor: CursorState) -> dict[str, Any]:
    """The ``state`` JSON of a cursor: its encoding minus the two watermark columns."""
    data = encode(cursor)
    del data["at"], data["id"]
    if not data["resume"]:
        del data["resume"]  # a finished stream's state stays {}, as it always was
    return data


def row_cursor(row: SyncCursor) -> CursorState:
    """The cursor a ``sync_cursors`` row holds (naive SQLite stamps read as UTC)."""
    return decode({**(row.state or {}), "at": row.watermark_at, "id": row.watermark_id})


def load_cursor(session: Session, crm: str, object_name: str, stream: str) -> CursorState:
    row = session.scalar(
        select(SyncCursor).where(
            SyncCursor.crm == crm, SyncCursor.object == object_name, SyncCursor.stream == stream
        )
    )
    return CursorState() if row is None else row_cursor(row)


def save_cursor(
    session: Session, crm: str, object_name: str, stream: str, cursor: CursorState
) -> None:
    row = session.scalar(
        select(SyncCursor).where(
            SyncCursor.crm == crm, SyncCursor.object == object_name, SyncCursor.stream == stream
        )
    )
    if row is None:
        row = SyncCursor(crm=crm, object=object_name, stream=stream)
        session.add(row)
    row.watermark_at = cursor.at
    row.watermark_id = cursor.id
    row.state = state_column(cursor)


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
