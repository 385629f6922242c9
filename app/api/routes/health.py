"""Liveness and readiness probes.

``/healthz`` answers as long as the process serves requests (no I/O: a slow database must not
get a healthy process restarted). ``/readyz`` says whether this instance can do its job: the
database answers and its schema is at the migration head; otherwise 503 with the reason.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import EngineDep, SettingsDep
from app.db.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Database reachable and migrated", response_model=None)
def readyz(engine: EngineDep, settings: SettingsDep) -> dict[str, Any] | JSONResponse:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        reason = f"database unreachable: {type(exc).__name__}"
        return JSONResponse(status_code=503, content={"status": "unavailable", "reason": reason})
    head = head_revision(settings.database_url)
    if current != head:
        reason = (
            f"database schema at revision {current or 'none'}, expected {head}: "
            "run `crmsync db upgrade`"
        )
        return JSONResponse(status_code=503, content={"status": "unavailable", "reason": reason})
    return {"status": "ready", "revision": current}
