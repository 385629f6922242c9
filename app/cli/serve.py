"""``crmsync serve``: the HTTP API (admin operations, webhooks, probes)."""

from __future__ import annotations

import typer

from app.cli.common import load_settings, open_database


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
) -> None:
    """Serve the crmsync API (OpenAPI at /docs)."""
    import uvicorn

    from app.main import create_app

    settings = load_settings()
    # Fail at startup, as one line, if the database URL is wrong; an unmigrated schema is not
    # fatal here (/readyz reports it) so the API can start before `crmsync db upgrade`.
    open_database(settings).dispose()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
