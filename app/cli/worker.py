"""``crmsync worker``: run background jobs (sync, recompute, push, webhooks, notices) and the
schedule. Embedded (SQLite under the data dir) by default; Redis with ``CRMSYNC_REDIS_URL``, then
start as many workers, on as many machines, as needed (docs/jobs.md)."""

from __future__ import annotations

import typer

from app.cli.common import load_settings, open_database


def worker(
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Worker threads in this process."
    ),
    metrics_port: int = typer.Option(
        0, "--metrics-port", min=0, max=65535, help="Serve this worker's /metrics on the port."
    ),
) -> None:
    """Run jobs and the schedule until SIGINT/SIGTERM (runs stop after their current page)."""
    from app.jobs.tasks import JobQueue
    from app.jobs.worker import Worker

    settings = load_settings()
    open_database(settings, migrated=True).dispose()
    queue = JobQueue(settings)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    try:
        Worker(queue, workers).run_forever()
    finally:
        queue.close()
