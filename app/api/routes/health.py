"""Liveness and readiness probes.

``/healthz`` answers as long as the process serves requests (no I/O: a slow database must not
get a healthy process restarted). ``/readyz`` says whether this instance can do its job: the
database answers and its schema is at the migration head; otherwise 503 with a reason that names
the fix (never a 500 with a traceback: a probe's body is what an operator reads first).
"""

from __future__ import annotations

from typing import Any

from alembic.util.exc import CommandError
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import EngineDep, SettingsDep
from app.db import migrate
from app.jobs.queue import broker_probe

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(status_code=503, content={"status": "unavailable", "reason": reason})


@router.get(
    "/readyz", summary="Database reachable and migrated, job broker reachable", response_model=None
)
def readyz(engine: EngineDep, settings: SettingsDep) -> dict[str, Any] | JSONResponse:
    scripts = migrate.MIGRATIONS_DIR
    try:
        head = migrate.head_revision(settings.database_url) if scripts.is_dir() else None
    except CommandError as exc:
        return _unavailable(f"migration scripts at {scripts} cannot be read: {exc}")
    if head is None:
        return _unavailable(
            f"migration scripts not found at {scripts}: this crmsync installation is incomplete; "
            "reinstall it"
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        return _unavailable(f"database unreachable: {type(exc).__name__}")
    if current is None:
        return _unavailable(
            f"database not migrated (expected revision {head}): run `crmsync db upgrade`"
        )
    if current != head:
        return _unavailable(
            f"database schema at revision {current}, this crmsync expects {head}: "
            "run `crmsync db upgrade` (or upgrade crmsync if the database is newer)"
        )
    broker = broker_probe(settings)
    if not broker["ok"]:
        return JSONResponse(
            status_code=503,
            content={
                "status": "unavailable",
                "reason": f"job broker unreachable ({broker['kind']}): {broker.get('error')}",
                "broker": broker,
            },
        )
    return {"status": "ready", "revision": current, "broker": broker}
