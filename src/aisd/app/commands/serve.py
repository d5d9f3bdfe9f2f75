"""CLI: ``aisd serve`` starts the OpenAI-compatible server with every system's routes."""

from __future__ import annotations

from pathlib import Path

import typer

from aisd.core.errors import ModelNotFoundError
from aisd.engine.config import DTYPES


def check_model(model: str) -> str:
    """Fail fast, before binding a port, on a model that is neither bundled nor on disk (clear message + hint)."""
    from aisd.assets import BUNDLED, is_bundled, resolve

    if is_bundled(model):
        return str(resolve(model))  # raises ModelNotFoundError with the pip command that installs it
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"model {model!r} is neither a bundled model ({', '.join(sorted(BUNDLED))}) nor an existing GGUF file "
            f"or safetensors directory", param="model")
    return str(path)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option(None, help="Interface to bind (default 127.0.0.1)."),
        port: int = typer.Option(None, help="Port (default 8000)."),
        model: str = typer.Option(None, help="Bundled model name, GGUF file or safetensors directory."),
        served_model_name: str = typer.Option(None, help="Name clients use in the 'model' field."),
        max_num_seqs: int = typer.Option(None, help="Most sequences in one batch (default 32)."),
        max_num_batched_tokens: int = typer.Option(None, help="Token budget of one engine step (default 512)."),
        max_model_len: int = typer.Option(None, help="Context length (default: the model's)."),
        kv_cache_memory_gb: float = typer.Option(None, help="Memory for the paged KV cache, GiB (default 1.0)."),
        max_waiting_requests: int = typer.Option(None, help="Waiting-queue bound; beyond it requests get 429."),
        prefix_caching: bool = typer.Option(None, "--prefix-caching/--no-prefix-caching",
                                            help="Automatic prefix caching (default on)."),
        chunked_prefill: bool = typer.Option(None, "--chunked-prefill/--no-chunked-prefill",
                                             help="Split long prompts across steps (default on)."),
        num_threads: int = typer.Option(None, help="torch CPU threads (default: all cores)."),
        dtype: str = typer.Option(None, help="Matmul weights and KV cache: float32 (default; tokens match "
                                             "transformers) or bfloat16 (mixed precision, ~1.5x faster on CPUs with "
                                             "AVX512-BF16; activations stay float32)."),
        log_level: str = typer.Option(None, help="uvicorn log level (default info)."),
    ) -> None:
        """Serve the OpenAI-compatible API (and /v1/rag, /v1/collections, ...) over HTTP.

        Example: ``aisd serve --port 8000`` then
        ``curl localhost:8000/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'``.
        """
        import uvicorn

        from aisd.app.server import create_app
        from aisd.app.settings import Settings

        settings = Settings()
        eng = settings.engine
        overrides = {"model": model, "served_model_name": served_model_name, "max_num_seqs": max_num_seqs,
                     "max_num_batched_tokens": max_num_batched_tokens, "max_model_len": max_model_len,
                     "kv_cache_memory_gb": kv_cache_memory_gb, "max_waiting_requests": max_waiting_requests,
                     "enable_prefix_caching": prefix_caching, "enable_chunked_prefill": chunked_prefill,
                     "num_threads": num_threads, "dtype": dtype}
        if dtype is not None and dtype not in DTYPES:
            raise typer.BadParameter(f"{dtype!r} is not one of {', '.join(DTYPES)}", param_hint="--dtype")
        for name, value in overrides.items():
            if value is not None:
                setattr(eng, name, value)
        if host:
            settings.server.host = host
        if port:
            settings.server.port = port
        if log_level:
            settings.server.log_level = log_level
        check_model(eng.model)
        eng.load_on_startup = True  # load before accepting traffic, not on the first request
        typer.echo(f"aisd serve: model {eng.model} on http://{settings.server.host}:{settings.server.port}/v1 "
                   f"(dtype {eng.dtype}, max_num_seqs={eng.max_num_seqs}, prefix caching {'on' if eng.enable_prefix_caching else 'off'}"
                   f", chunked prefill {'on' if eng.enable_chunked_prefill else 'off'})", err=True)
        uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                    log_level=settings.server.log_level)
