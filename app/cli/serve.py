"""``crmsync serve``: the HTTP API (admin operations, webhooks, probes)."""

from __future__ import annotations

import typer

from app.cli.common import load_settings


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
) -> None:
    """Serve the crmsync API (OpenAPI at /docs)."""
    import uvicorn

    from app.main import create_app

    settings = load_settings()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
