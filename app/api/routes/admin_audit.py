"""``GET /api/v1/audit``: who triggered, cancelled, retried, resolved, replayed or managed what.

Readable by every role (viewer and up): the log holds key names, ids and comments, never a key
or a payload, and read-only staff (support, auditors) are the ones who need it. Newest first,
cursor-paginated (``next_cursor`` back as ``cursor`` with the same filters).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.auth import needs
from app.api.deps import SessionDep
from app.api.paging import decode_cursor, encode_cursor, invalid
from app.core.access import Role
from app.db.audit import audit_dict, list_audit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", summary="The audit log, newest first", **needs(Role.VIEWER))
def get_audit(
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=160, description="e.g. key:ops-bot")] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. sync_error.retry")] = None,
    target: Annotated[str | None, Query(max_length=160, description="e.g. sync_error:12")] = None,
    since: Annotated[datetime | None, Query(description="Entries at or after (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    if since is not None and since.tzinfo is None:
        return invalid("since", "give a timezone (e.g. 2026-12-06T10:00:00Z)", str(since))
    filters = {"actor": actor, "action": action, "target": target, "since": since}
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor, filters)
        except ValueError as exc:
            return invalid("cursor", str(exc), cursor)
    rows = list_audit(
        session,
        before_id=before,
        limit=limit + 1,
        actor=actor,
        action=action,
        target=target,
        since=since,
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].id, filters) if len(rows) > limit else None
    return {"items": [audit_dict(e) for e in page], "next_cursor": next_cursor}
