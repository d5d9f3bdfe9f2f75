"""``make demo``: the engine behind the OpenAI-compatible server, then RAG over the Python docs, on bundled models.

1. starts ``aisd serve`` in a subprocess, streams a chat answer through the HTTP API and prints tokens/s;
2. ingests CPython's ``pydoc_data.topics`` and answers three questions with [n] citations.
"""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from aisd.app.demo_engine import run as run_engine_demo
    from aisd.app.demo_rag import run as run_rag_demo

    run_engine_demo()
    run_rag_demo()


if __name__ == "__main__":
    main()
