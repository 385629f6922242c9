"""The SQL side of pending Salesforce note creates (:class:`app.sync.note_creates.PendingStore`).

The mark lives in the row's ``field_stamps`` under :data:`app.mappers.notes.PENDING_KEY` (see
docs/notes.md), written in its own short transaction that commits before the create call.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import HandoverNote
from app.mappers.notes import pending_since, with_pending

__all__ = ["SqlPendingNotes"]

_CHUNK = 500
T = TypeVar("T")


def _chunks(values: Collection[T]) -> list[list[T]]:
    items = list(values)
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


class SqlPendingNotes:
    """Pending marks of ``handover_notes`` rows, through ``factory``'s sessions."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def pending_marks(self, keys: Collection[int]) -> Mapping[int, datetime]:
        marks: dict[int, datetime] = {}
        with self.factory() as session:
            for chunk in _chunks(keys):
                rows = session.execute(
                    select(HandoverNote.id, HandoverNote.field_stamps).where(
                        HandoverNote.id.in_(chunk), HandoverNote.sf_id.is_(None)
                    )
                )
                for row_id, stamps in rows:
                    since = pending_since(stamps)
                    if since is not None:
                        marks[int(row_id)] = since
        return marks

    def mark_pending(self, keys: Collection[int], at: datetime) -> None:
        with self.factory() as session:
            for chunk in _chunks(keys):
                for note in session.scalars(select(HandoverNote).where(HandoverNote.id.in_(chunk))):
                    stamps = with_pending(note.field_stamps, at)
                    if stamps != note.field_stamps:
                        note.field_stamps = stamps
            session.commit()

    def held_ids(self, crm_ids: Collection[str]) -> set[str]:
        held: set[str] = set()
        with self.factory() as session:
            for chunk in _chunks(crm_ids):
                held.update(
                    str(v)
                    for v in session.scalars(
                        select(HandoverNote.sf_id).where(HandoverNote.sf_id.in_(chunk))
                    )
                )
        return held
