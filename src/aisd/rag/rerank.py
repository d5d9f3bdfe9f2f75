"""Rerankers that need another system: ``LLMReranker`` (pointwise relevance 0-10 through any LLMClient) and
``MaxSimReranker`` (weights-free late interaction over the embedder's token vectors).

Both implement aisd.search.rerank.Reranker; ``build_reranker(spec, llm=, embedder=)`` makes one from the names the
CLI and settings use: ``maxsim``, ``llm``, ``cross-encoder:PATH``, ``remote:URL#MODEL``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aisd.core.errors import InvalidRequestError, UnsupportedError
from aisd.core.hashing import sha256_hex
from aisd.core.progress import progress
from aisd.embed.base import Embedder
from aisd.llm.client import LLMClient, ask, chat_request
from aisd.rag.token_cache import TokenVectorCache
from aisd.search.rerank import Reranker, RerankResult, order_results

RERANKERS = ("maxsim", "llm", "cross-encoder:PATH", "remote:URL#MODEL")

LLM_SYSTEM = ("You judge search results. Given a query and a passage, rate how well the passage answers or is "
              "relevant to the query on a scale from 0 (unrelated) to 10 (directly answers it). "
              "Reply with the number only.")
LLM_PROMPT = "Query: {query}\n\nPassage: {passage}\n\nRelevance (0-10):"
_NUMBER = re.compile(r"(?<![\d.])(10|[0-9])(?:\.\d+)?(?![\d])")


def parse_rating(text: str) -> float | None:
    """The first number 0-10 in a model's reply, or None (e.g. '7', 'Relevance: 8/10', '**9**')."""
    m = _NUMBER.search(text)
    return float(m.group(0)) if m else None


YES_NO_SYSTEM = ("You judge search results. Answer Yes if the passage is relevant to the query (it answers or "
                 "directly supports it), otherwise answer No.")
YES_NO_PROMPT = "Query: {query}\nPassage: {passage}\nIs the passage relevant to the query? Answer Yes or No."
MODES = ("yes-no", "rating")


def first_token_logprob(response: Any, word: str) -> float | None:
    """log P(word) of the first generated token (case and spaces ignored) from its top logprobs; a word missing from
    the top list gets one nat below the least likely listed token; None when the response carries no logprobs."""
    try:
        first = response.choices[0].logprobs.content[0]
    except (AttributeError, IndexError, TypeError):
        return None
    tops = list(first.top_logprobs) or [first]
    vals = [t.logprob for t in tops if t.token.strip().lower() == word]
    return max(vals) if vals else min(t.logprob for t in tops) - 1.0


def yes_no_score(response: Any) -> float | None:
    """log P(Yes) - log P(No) of the first generated token, from its top logprobs (the relevance-generation score of
    monoT5, Nogueira et al. 2020, and HELM's ranking prompts); None when the response carries no logprobs. A word
    missing from the top list gets one nat below the least likely listed token."""
    yes, no = first_token_logprob(response, "yes"), first_token_logprob(response, "no")
    return None if yes is None or no is None else yes - no


class LLMReranker:
    """Pointwise LLM relevance: each passage is judged independently (RankGPT's pointwise baseline, Sun et al. 2023).

    ``mode="yes-no"`` (default) asks Yes/No for one token with logprobs and scores log P(Yes) - log P(No), which
    even a 135M-parameter model orders sensibly; when the server returns no logprobs the reply text decides (Yes = 1,
    No = -1). ``mode="rating"`` asks for a 0-10 number. A reply without a usable answer scores ``fallback`` (below
    every answer) so first-stage order decides; ties keep first-stage order. ``max_chars`` trims long passages."""

    def __init__(self, llm: LLMClient, *, mode: str = "yes-no", max_chars: int = 1200, max_tokens: int = 4,
                 fallback: float = -100.0, system: str | None = None, prompt: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        self.llm = llm
        self.mode = mode
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.fallback = fallback
        self.system = system or (YES_NO_SYSTEM if mode == "yes-no" else LLM_SYSTEM)
        self.prompt = prompt or (YES_NO_PROMPT if mode == "yes-no" else LLM_PROMPT)
        self.name = "llm"
        self.unparsed = 0  # replies without a usable answer, for reports

    def score(self, query: str, passage: str) -> float:
        text = self.prompt.format(query=query, passage=passage[:self.max_chars])
        if self.mode == "yes-no":
            request = chat_request([{"role": "system", "content": self.system}, {"role": "user", "content": text}],
                                   max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=10)
            response = self.llm.chat(request)
            score = yes_no_score(response)
            if score is not None:
                return score
            word = response.text.strip().lower()
            if word.startswith("yes"):
                return 1.0
            if word.startswith("no"):
                return -1.0
            self.unparsed += 1
            return self.fallback
        reply = ask(self.llm, text, system=self.system, max_tokens=self.max_tokens, temperature=0.0)
        rating = parse_rating(reply)
        if rating is None:
            self.unparsed += 1
            return self.fallback
        return rating

    def rerank(self, query: str, texts: Sequence[str], top_n: int | None = None) -> list[RerankResult]:
        texts = list(texts)
        scores = [self.score(query, t) for t in progress(texts, total=len(texts), desc="LLM rerank")]
        return order_results(scores, top_n)


def maxsim(query_tokens: np.ndarray, doc_tokens: np.ndarray) -> float:
    """Late-interaction relevance (Khattab & Zaharia 2020, ColBERT eq. 3): for each query token the best cosine with
    any document token, averaged over query tokens. query_tokens: (n_q, d), doc_tokens: (n_d, d), rows unit-norm."""
    if query_tokens.shape[0] == 0 or doc_tokens.shape[0] == 0:
        return 0.0
    sim = query_tokens.astype(np.float32) @ doc_tokens.astype(np.float32).T  # (n_q, n_d)
    return float(sim.max(axis=1).mean())


class MaxSimReranker:
    """MaxSim over the embedder's contextual token vectors (``embedder.token_embeddings``), with no extra weights.
    Document token matrices are kept in an LRU of ``cache_size`` texts (float16) since the same candidates come back
    across queries, and, with ``store`` (a TokenVectorCache), on disk across processes."""

    def __init__(self, embedder: Embedder, *, cache_size: int = 1024, store: TokenVectorCache | None = None) -> None:
        if not hasattr(embedder, "token_embeddings"):
            raise UnsupportedError(f"embedder {embedder.model_name!r} has no token embeddings; MaxSim needs a local "
                                   f"sentence-transformers embedder", param="reranker")
        self.embedder = embedder
        self.cache_size = cache_size
        self.name = "maxsim"
        self.store = store
        self.store_key = f"{embedder.model_name}/{embedder.dim}/tokens"
        self.computed = 0  # texts whose token vectors were computed (neither in memory nor on disk)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _doc_tokens(self, texts: list[str]) -> list[np.ndarray]:
        keys = [sha256_hex(t) for t in texts]
        with self._lock:
            have = {k: self._cache[k] for k in keys if k in self._cache}
            for k in have:
                self._cache.move_to_end(k)
        if self.store is not None:
            missing = list(dict.fromkeys(k for k in keys if k not in have))
            if missing:
                on_disk = self.store.get(self.store_key, missing)
                have.update(on_disk)
                self._remember(on_disk)
        first: dict[str, int] = {}
        for i, k in enumerate(keys):  # one computation per distinct text, in order (the LRU keeps the last ones)
            first.setdefault(k, i)
        todo = [i for k, i in first.items() if k not in have]
        if todo:
            fresh = self.embedder.token_embeddings([texts[i] for i in todo])  # type: ignore[attr-defined]
            new = {keys[i]: mat.astype(np.float16) for i, mat in zip(todo, fresh, strict=True)}  # (n_tok, dim) each
            self.computed += len(new)
            have.update(new)
            self._remember(new)
            if self.store is not None:
                self.store.put(self.store_key, new)
        return [have[k] for k in keys]

    def _remember(self, mats: dict[str, np.ndarray]) -> None:
        with self._lock:
            for k, m in mats.items():
                self._cache[k] = m
                self._cache.move_to_end(k)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def rerank(self, query: str, texts: Sequence[str], top_n: int | None = None) -> list[RerankResult]:
        texts = list(texts)
        if not texts:
            return []
        q = self.embedder.token_embeddings([query])[0]  # type: ignore[attr-defined]
        scores = [maxsim(q, d) for d in self._doc_tokens(texts)]
        return order_results(scores, top_n)


def build_reranker(spec: str | None, *, llm: LLMClient | None = None, embedder: Embedder | None = None,
                   api_key: str | None = None) -> Reranker | None:
    """A reranker from its name: maxsim | llm | cross-encoder:PATH | remote:URL#MODEL; None/'' -> None."""
    if not spec or spec == "none":
        return None
    if spec == "maxsim":
        if embedder is None:
            raise InvalidRequestError("the maxsim reranker needs an embedder", param="reranker")
        inner: Any = getattr(embedder, "inner", embedder)  # a CachedEmbedder delegates token vectors anyway
        cache_path = getattr(embedder, "path", None)  # a CachedEmbedder's SQLite file: keep token vectors beside it
        store = TokenVectorCache(Path(cache_path).with_name("token_vectors.sqlite")) if cache_path else None
        return MaxSimReranker(inner if hasattr(inner, "token_embeddings") else embedder, store=store)
    if spec == "llm":
        if llm is None:
            raise InvalidRequestError("the llm reranker needs an LLM client", param="reranker")
        return LLMReranker(llm)
    if spec.startswith("cross-encoder:"):
        from aisd.embed.cross_encoder import CrossEncoderReranker

        return CrossEncoderReranker(spec.split(":", 1)[1])
    if spec.startswith("remote:"):
        from aisd.search.rerank import RemoteReranker

        url, _, model = spec[len("remote:"):].partition("#")
        if not url or not model:
            raise InvalidRequestError(f"remote reranker spec must be remote:URL#MODEL, got {spec!r}", param="reranker")
        return RemoteReranker(url, model, api_key=api_key)
    raise InvalidRequestError(f"unknown reranker {spec!r}; choose one of {', '.join(RERANKERS)}", param="reranker")
