"""CrossEncoderReranker: a sentence-transformers CrossEncoder (e.g. ms-marco-MiniLM-L-6-v2) loaded from a local
folder. No cross-encoder weights ship offline with aisd: point ``path`` at a folder you downloaded or trained; a
missing folder is a clear ModelNotFoundError, never a hub download.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from aisd.core.errors import ModelNotFoundError


class RerankResult(NamedTuple):
    """Same fields as aisd.search.rerank.RerankResult (embed and search are sibling layers and may not import each
    other; equal tuples compare equal): ``index`` into the texts, ``score`` higher = more relevant."""

    index: int
    score: float


def order_results(scores: list[float], top_n: int | None = None) -> list[RerankResult]:
    """Best first; ties keep the input order."""
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [RerankResult(i, float(scores[i])) for i in (ranked if top_n is None else ranked[:max(top_n, 0)])]


class CrossEncoderReranker:
    """Scores each (query, text) pair jointly with a cross-encoder; ``batch_size`` pairs per forward pass."""

    def __init__(self, path: str | Path, *, batch_size: int = 32, max_length: int | None = 512,
                 device: str = "cpu") -> None:
        self.path = Path(path).expanduser()
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.name = f"cross-encoder:{self.path.name}"
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> CrossEncoderReranker:
        with self._lock:
            if self._model is None:
                if not (self.path.is_dir() and (self.path / "config.json").is_file()):
                    raise ModelNotFoundError(
                        f"cross-encoder weights not found at {self.path} (a folder with config.json and weights is "
                        f"expected). aisd ships no cross-encoder weights; download one (for example "
                        f"ms-marco-MiniLM-L-6-v2) on a connected machine and pass its folder", param="reranker")
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.path), device=self.device, max_length=self.max_length,
                                           local_files_only=True)
        return self

    def rerank(self, query: str, texts: Sequence[str], top_n: int | None = None) -> list[RerankResult]:
        texts = list(texts)
        if not texts:
            return []
        model = self.load()._model
        scores = model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False,
                               convert_to_numpy=True)
        return order_results(np.asarray(scores, dtype=np.float64).reshape(len(texts), -1)[:, -1].tolist(), top_n)
