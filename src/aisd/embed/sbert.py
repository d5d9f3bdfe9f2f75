"""SentenceTransformerEmbedder: a sentence-transformers model from a local folder (default: the bundled
all-MiniLM-L6-v2), offline.

The model loads on first use (or ``load()``); ``token_spans`` / ``count_tokens`` use the model's fast tokenizer
offsets, so chunkers size chunks in the very tokens the model reads. ``token_embeddings`` returns the per-token
contextual vectors MaxSim late interaction needs (Khattab & Zaharia 2020, ColBERT).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aisd.core.errors import ModelNotFoundError
from aisd.embed.base import TokenSpan, l2_normalize


def resolve_model_path(model: str) -> Path:
    """A bundled model name (``all-minilm-l6-v2``) or a local sentence-transformers folder -> its folder."""
    from aisd.assets import is_bundled, resolve

    if is_bundled(model):
        return resolve(model)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"embedding model {model!r} is neither a bundled model (all-minilm-l6-v2) nor a local "
            f"sentence-transformers folder", param="model")
    return path


class SentenceTransformerEmbedder:
    """An ``Embedder`` over a sentence-transformers model on CPU.

    ``model``: a bundled name or a local folder; ``batch_size``: texts per forward pass; ``num_threads``: torch
    intra-op threads (None leaves torch's default).
    """

    def __init__(self, model: str = "all-minilm-l6-v2", *, batch_size: int = 32, device: str = "cpu",
                 num_threads: int | None = None, name: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.num_threads = num_threads
        self._name = name
        self._st: Any = None
        self._lock = threading.Lock()

    # ---- loading ----------------------------------------------------------------------------------------------
    def load(self) -> SentenceTransformerEmbedder:
        with self._lock:
            if self._st is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                path = resolve_model_path(self.model)
                import torch
                from sentence_transformers import SentenceTransformer

                if self.num_threads:
                    torch.set_num_threads(self.num_threads)
                self._st = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        return self

    @property
    def st(self) -> Any:
        return self.load()._st

    # ---- Embedder protocol ------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        if self._name:
            return self._name
        from aisd.assets import canonical_name, is_bundled

        return canonical_name(self.model) if is_bundled(self.model) else Path(self.model).name

    @property
    def dim(self) -> int:
        st = self.st
        get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_tokens(self) -> int:
        return int(self.st.max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.st.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def _encoding(self, text: str) -> Any:
        # the fast tokenizer's offsets give exact character spans; no special tokens, no truncation
        return self.st.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                                 verbose=False)

    def count_tokens(self, text: str) -> int:
        return len(self._encoding(text)["input_ids"])

    def token_spans(self, text: str) -> list[TokenSpan]:
        return [TokenSpan(int(s), int(e)) for s, e in self._encoding(text)["offset_mapping"]]

    # ---- late interaction -------------------------------------------------------------------------------------
    def token_embeddings(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, its (n_tokens, dim) contextual token vectors, L2-normalised, [CLS]/[SEP] and padding removed.

        Texts longer than ``max_tokens`` are truncated, as ``embed`` does."""
        texts = list(texts)
        if not texts:
            return []
        outs = self.st.encode(texts, batch_size=self.batch_size, output_value="token_embeddings",
                              convert_to_numpy=False, show_progress_bar=False)
        result = []
        for t in outs:
            arr = t.detach().cpu().float().numpy()
            # sentence-transformers trims padding; drop [CLS] (first) and [SEP] (last) which carry no term
            if arr.shape[0] > 2:
                arr = arr[1:-1]
            result.append(l2_normalize(arr))
        return result
