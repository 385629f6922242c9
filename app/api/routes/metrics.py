"""``GET /metrics``: Prometheus exposition (app/metrics.py says what each metric is)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import app_jobs
from app.metrics import render

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    app = request.app
    jobs = app_jobs(app)
    body = render(app.state.settings, app.state.session_factory, jobs.depth)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
