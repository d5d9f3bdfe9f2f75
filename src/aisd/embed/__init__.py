"""Embeddings: the Embedder protocol and its implementations (sentence-transformers, remote, cached, hashing)."""

from aisd.embed.base import Embedder, TokenSpan, embed_query, l2_normalize
from aisd.embed.fake import HashingEmbedder

__all__ = ["Embedder", "HashingEmbedder", "TokenSpan", "embed_query", "l2_normalize"]
