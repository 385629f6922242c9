"""FastAPI dependencies as named types (``SessionDep``, ``SettingsDep``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.settings import Settings

if TYPE_CHECKING:
    from app.jobs.tasks import JobQueue


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


_JOBS_LOCK = threading.Lock()


def app_jobs(app: FastAPI) -> JobQueue:
    """The app's job queue, built on first use (an API that enqueues nothing opens no broker,
    and creates no queue file)."""
    with _JOBS_LOCK:
        jobs: JobQueue | None = getattr(app.state, "jobs", None)
        if jobs is None:
            from app.jobs.tasks import JobQueue

            jobs = JobQueue(app.state.settings, session_factory=app.state.session_factory)
            app.state.jobs = jobs
        return jobs


def get_jobs(request: Request) -> JobQueue:
    return app_jobs(request.app)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
JobsDep = Annotated["JobQueue", Depends(get_jobs)]
