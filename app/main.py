"""The FastAPI application factory. Nothing is created at import time: ``create_app(settings)``
builds the engine and routes, so tests can run several apps against different databases.

The docs pages (``/docs`` Swagger UI, ``/redoc``) load their JS and CSS from this app, not from a
CDN, so they work without internet: ``fastapi_offline`` ships those assets and serves them under
``/static-offline-docs`` (FastAPI's own ``docs_url=None`` + ``get_swagger_ui_html`` pattern).
The web console (``/console``, :mod:`app.console`) is mounted here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.api.auth import install_access_errors, protected_router
from app.api.routes import (
    accounts,
    admin_audit,
    admin_errors,
    admin_inbox,
    admin_keys,
    admin_runs,
    admin_status,
    csms,
    health,
    metrics,
    notes,
    onboarding,
    push,
    runs_control,
    signals,
    webhooks,
)
from app.console.router import install_console
from app.db.engine import make_engine, make_session_factory
from app.logging import configure_logging
from app.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app.wiring.budget import install_usage_store

        # CRM calls made here outside runs (the embedded webhook worker's reads) are stored
        # for the budget guard as they pile up (docs/budget.md).
        stop_counting = install_usage_store(app.state.session_factory)
        worker = None
        if settings.webhooks.embedded_worker:
            # Until the job engine runs it: webhook events are processed in this process.
            from app.wiring.webhook_processing import start_embedded_worker

            worker = start_embedded_worker(settings, app.state.session_factory)
            app.state.webhook_runner = worker
        try:
            yield
        finally:
            if worker is not None:
                app.state.webhook_runner = None
                worker.stop()
            jobs = getattr(app.state, "jobs", None)
            if jobs is not None:
                jobs.close()
            stop_counting()
            engine.dispose()

    app = FastAPIOffline(
        title="crmsync",
        version=__version__,
        description="Keeps a CRM (Salesforce or HubSpot) and the CS database in step.",
        lifespan=lifespan,
        # Swagger UI would otherwise send the spec's URL to validator.swagger.io for a badge.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    install_access_errors(app)
    # Outside /api/v1, without a key: probes (and webhooks, which carry the CRM's signature).
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(metrics.router)
    # Every /api/v1 router goes into `api`: its dependency checks the key and the route's role
    # (app/api/auth.py); tests/integration/test_api_access.py fails for a route outside it.
    api = protected_router()
    api.include_router(accounts.router)
    api.include_router(notes.router)
    api.include_router(push.router)
    api.include_router(signals.router)
    api.include_router(runs_control.router)
    api.include_router(csms.router)
    api.include_router(onboarding.router)
    api.include_router(admin_keys.router)
    api.include_router(admin_audit.router)
    api.include_router(admin_runs.router)
    api.include_router(admin_errors.router)
    api.include_router(admin_inbox.router)
    api.include_router(admin_status.router)
    app.include_router(api)
    # The web console (/console): its own sign-in session, over the same functions as /api/v1.
    install_console(app)
    return app
