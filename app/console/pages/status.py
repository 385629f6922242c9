"""Status: per CRM and object the last run, lag, records and open errors; the API budget as a
bar; the job queue and the webhook inbox. The panel reloads itself every few seconds (htmx);
without JS the page refreshes itself (``<noscript>`` meta refresh).

The data is ``GET /api/v1/status``'s (:func:`app.api.routes.admin_status.get_status`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, SettingsDep, app_jobs
from app.api.routes.admin_status import get_status
from app.console.auth import Viewer
from app.console.web import call_api, render

router = APIRouter(prefix="/console", include_in_schema=False)
#: How often the panel reloads itself (seconds).
REFRESH_SECONDS = 5


def _status(request: Request, session: Session, settings: SettingsDep) -> dict[str, object]:
    answer = call_api(get_status, session=session, settings=settings, jobs=app_jobs(request.app))
    return {"status": answer.body, "refresh": REFRESH_SECONDS}


@router.get("/status", response_class=HTMLResponse)
def status_page(
    request: Request, user: Viewer, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    return render(
        request, "status/page.html", _status(request, session, settings), user=user, nav="status"
    )


@router.get("/status/panel", response_class=HTMLResponse)
def status_panel(
    request: Request, user: Viewer, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The live part alone, for htmx polling."""
    return render(request, "status/panel.html", _status(request, session, settings), user=user)
