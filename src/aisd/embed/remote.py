"""RemoteEmbedder: any OpenAI-compatible ``POST /v1/embeddings`` server (aisd, vLLM, TEI, llama.cpp, OpenAI ...).

Texts go out in batches of ``batch_size``; rows come back ordered by their ``index`` and are L2-normalised here (not
every server normalises). A remote server exposes no tokenizer, so ``count_tokens`` / ``token_spans`` fall back to
word and punctuation pieces (regex ``\\w+|[^\\w\\s]``), which over-count slightly versus WordPiece/BPE: chunks sized
with them stay within the model's limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from aisd.core.errors import InvalidRequestError, RateLimitError, ServiceUnavailableError
from aisd.embed.base import TokenSpan, l2_normalize

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class RemoteEmbedder:
    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, dim: int | None = None,
                 max_tokens: int = 512, batch_size: int = 64, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        url = base_url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        self.base_url = url
        self.model = model
        self._dim = dim
        self._max_tokens = max_tokens
        self.batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def dim(self) -> int:
        if self._dim is None:  # ask the server once
            self._dim = int(self._call(["dimension probe"]).shape[1])
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def _call(self, texts: list[str]) -> np.ndarray:
        try:
            r = self._http.post("/embeddings", json={"model": self.model, "input": texts,
                                                     "encoding_format": "float"})
        except httpx.HTTPError as e:
            raise ServiceUnavailableError(f"cannot reach embedding server {self.base_url}: {e}") from e
        if r.status_code >= 400:
            try:
                msg: Any = r.json().get("error", {}).get("message") or r.text[:300]
            except ValueError:
                msg = r.text[:300]
            cls = {400: InvalidRequestError, 429: RateLimitError}.get(r.status_code, ServiceUnavailableError)
            raise cls(f"embedding server {self.base_url} answered {r.status_code}: {msg}")
        try:
            data = sorted(r.json()["data"], key=lambda d: int(d["index"]))
            mat = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as e:
            raise ServiceUnavailableError(f"embedding server {self.base_url} sent an unexpected body: {e}") from e
        if mat.ndim != 2 or mat.shape[0] != len(texts):
            raise ServiceUnavailableError(f"embedding server {self.base_url} returned {mat.shape[0]} vectors for "
                                          f"{len(texts)} inputs")
        return l2_normalize(mat)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._call(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        out = np.concatenate(parts, axis=0)
        if self._dim is None:
            self._dim = int(out.shape[1])
        elif out.shape[1] != self._dim:
            raise ServiceUnavailableError(f"embedding server returned {out.shape[1]}-d vectors, expected {self._dim}")
        return out

    def count_tokens(self, text: str) -> int:
        return sum(1 for _ in _PIECE.finditer(text))

    def token_spans(self, text: str) -> list[TokenSpan]:
        return [TokenSpan(m.start(), m.end()) for m in _PIECE.finditer(text)]

    def close(self) -> None:
        self._http.close()
