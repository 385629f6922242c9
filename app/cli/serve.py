"""``crmsync serve``: the HTTP API (admin operations, webhooks, probes); with ``--with-worker``
also a job worker and the schedule in the same process (the embedded, one-machine setup)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from app.cli.common import load_settings, open_database

if TYPE_CHECKING:
    import uvicorn


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    with_worker: bool = typer.Option(
        False, "--with-worker", help="Also run jobs and the schedule in this process."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Worker threads with --with-worker."
    ),
) -> None:
    """Serve the crmsync API (OpenAPI at /docs)."""
    import uvicorn

    from app.main import create_app

    settings = load_settings()
    # Fail at startup, as one line, if the database URL is wrong; an unmigrated schema is not
    # fatal here (/readyz reports it) so the API can start before `crmsync db upgrade`.
    open_database(settings).dispose()
    app = create_app(settings)
    if not with_worker:
        uvicorn.run(app, host=host, port=port, log_level="info")
        return
    from app.api.deps import app_jobs
    from app.jobs.worker import Worker

    # uvicorn owns SIGINT/SIGTERM; once it has shut down, the worker stops its runs after their
    # page (closed cancelled, queued again), then the process exits 0.
    worker = Worker(app_jobs(app), workers)
    worker.start()
    try:
        server = _keep_signals_server()(uvicorn.Config(app, host=host, port=port, log_level="info"))
        server.run()
    finally:
        worker.stop()


def _keep_signals_server() -> type[uvicorn.Server]:
    import uvicorn

    class KeepSignals(uvicorn.Server):
        """uvicorn re-raises the SIGINT/SIGTERM it handled once it has shut down, which would
        kill the process before the worker beside it stops its runs; this one does not (it
        forgets the signals it captured, a private list of uvicorn.Server)."""

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    return KeepSignals
