"""``GET /api/v1/status`` (viewer): per CRM and object, the last successful run, the lag behind
the CRM, records, open errors; the webhook inbox by status, the API budget per CRM and the job
queue (:mod:`app.wiring.admin_status`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.auth import needs
from app.api.deps import JobsDep, SessionDep, SettingsDep
from app.core.access import Role
from app.jobs.queue import broker_status
from app.wiring.admin_status import status

router = APIRouter(prefix="/api/v1/status", tags=["status"])


@router.get("", summary="Where each CRM object stands", **needs(Role.VIEWER))
def get_status(session: SessionDep, settings: SettingsDep, jobs: JobsDep) -> dict[str, Any]:
    return status(settings, session, queue=broker_status(jobs.huey, settings))
