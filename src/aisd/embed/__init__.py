"""Embeddings: the Embedder protocol and its implementations (sentence-transformers, remote, cached, hashing).

``build_embedder(settings, cache_dir)`` is what the app wires: the bundled MiniLM (or a local folder / a remote
OpenAI-compatible server), wrapped in the SQLite cache unless ``cache`` is off. Heavy modules load lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aisd.embed.base import Embedder, TokenSpan, embed_query, l2_normalize
from aisd.embed.cache import CachedEmbedder, CacheStats
from aisd.embed.fake import HashingEmbedder

__all__ = ["CacheStats", "CachedEmbedder", "Embedder", "HashingEmbedder", "TokenSpan", "build_embedder",
           "embed_query", "l2_normalize"]


def build_embedder(settings: Any, cache_dir: Path | None = None) -> Embedder:
    """An Embedder from ``EmbedSettings`` (model, remote_url, remote_model, cache, batch_size).

    ``model="hashing"`` (or ``hashing-<dim>``) gives the dependency-free HashingEmbedder."""
    model = getattr(settings, "model", "all-minilm-l6-v2")
    batch_size = int(getattr(settings, "batch_size", 32))
    inner: Embedder
    if getattr(settings, "remote_url", None):
        from aisd.embed.remote import RemoteEmbedder

        inner = RemoteEmbedder(settings.remote_url, getattr(settings, "remote_model", None) or model,
                               batch_size=batch_size)
    elif model == "hashing" or model.startswith("hashing-"):
        inner = HashingEmbedder(dim=int(model.split("-", 1)[1]) if "-" in model else 256)
    else:
        from aisd.embed.sbert import SentenceTransformerEmbedder

        inner = SentenceTransformerEmbedder(model, batch_size=batch_size)
    if getattr(settings, "cache", True) and cache_dir is not None:
        return CachedEmbedder(inner, Path(cache_dir) / "embeddings.sqlite", batch_size=max(batch_size, 64))
    return inner
