"""The one way a CS-side write marks mapped columns as changed (ADR 0006).

Every write made on the CS side (the API, a health recompute, webhook handling) that changes a
column a mapping may push calls :func:`stamp_cs_change`: it records when each column changed in
``field_stamps`` (the per-field stamp ``newest_wins`` compares) and moves ``cs_changed_at``, the
indexed column the push streams over. A pull never calls it: a pulled value is not a CS change, so
it neither pushes back (no echo) nor wins a later conflict it did not make.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from app.db.models import CrmMirrorMixin

__all__ = ["stamp_cs_change"]


def stamp_cs_change(
    row: CrmMirrorMixin, columns: Iterable[str], at: datetime | None = None
) -> None:
    """Mark ``columns`` of ``row`` changed on the CS side at ``at`` (default: now, UTC).

    ``field_stamps`` is replaced, not mutated in place, so SQLAlchemy sees the change to the JSON
    column. Stamps are ISO 8601 UTC strings (microseconds), as the merge reads them.
    """
    names = list(columns)
    if not names:
        return
    when = (at or datetime.now(UTC)).astimezone(UTC)
    stamps = dict(row.field_stamps or {})
    for column in names:
        stamps[column] = when.isoformat(timespec="microseconds")
    row.field_stamps = stamps
    if row.cs_changed_at is None or when > row.cs_changed_at:
        row.cs_changed_at = when
