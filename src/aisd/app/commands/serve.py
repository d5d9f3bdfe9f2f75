"""CLI: ``aisd serve`` starts the OpenAI-compatible server with every system's routes."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option(None, help="Interface to bind (default 127.0.0.1)."),
        port: int = typer.Option(None, help="Port (default 8000)."),
        model: str = typer.Option(None, help="Bundled model name, GGUF file or safetensors directory."),
    ) -> None:
        """Serve the OpenAI-compatible API (and /v1/rag, /v1/collections, ...) over HTTP."""
        import uvicorn

        from aisd.app.server import create_app
        from aisd.app.settings import Settings

        settings = Settings()
        if host:
            settings.server.host = host
        if port:
            settings.server.port = port
        if model:
            settings.engine.model = model
        uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                    log_level=settings.server.log_level)
