"""Query transforms: turn one user question into one or more search queries; callers fuse the result lists with
reciprocal rank fusion (``search_with_transform``).

- ``rewrite``: an LLM rewrites the question as a concise search query (the "rewrite-retrieve-read" step of
  Ma et al. 2023); the original query is kept beside it by default so a bad rewrite cannot lose recall.
- ``expansion``: an LLM lists related keywords/synonyms that are appended to the query (query2doc-style
  expansion, Wang et al. 2023, in its keyword form).
- ``prf``: pseudo-relevance feedback without an LLM: retrieve, take the top ``docs`` chunks, add the ``terms`` words
  with the highest feedback weight (RM3-style: sum over feedback docs of normalised term frequency x normalised
  retrieval score; Lavrenko & Croft 2001, Abdul-Jaleel et al. 2004), skipping stopwords and query words.
- ``hyde``: an LLM writes a hypothetical answer passage that is searched with (Gao et al. 2022, "Precise zero-shot
  dense retrieval without relevance labels"); the original query is searched too and fused.
- ``multi-query``: an LLM writes ``n`` differently-worded versions; all are searched and fused (RAG-Fusion).

Every LLM output is cleaned (numbering, quotes, "Query:" prefixes stripped); an empty or unusable output falls back
to the original query, so a transform never makes retrieval fail.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from aisd.core.registry import Registry
from aisd.llm.client import LLMClient, ask
from aisd.rag.documents import RetrievedChunk
from aisd.search.fusion import RRF_K, reciprocal_rank_fusion
from aisd.search.tokenize import ENGLISH_STOPWORDS


@runtime_checkable
class QueryTransform(Protocol):
    name: str

    def transform(self, query: str) -> list[str]: ...


class _Searcher(Protocol):
    def search(self, query: str, k: int = 10, filter: dict | None = None) -> list[RetrievedChunk]: ...


_PREFIX = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|(?:search\s+)?query\s*\d*\s*:|rewritten(?:\s+query)?\s*:|"
                     r"keywords?\s*:|answer\s*:|passage\s*:)\s*", re.IGNORECASE)


def clean_line(text: str) -> str:
    """One LLM output line without list markers, labels or wrapping quotes."""
    line = text.strip()
    for _ in range(3):
        new = _PREFIX.sub("", line).strip().strip('"\u201c\u201d\'`').strip()
        if new == line:
            break
        line = new
    return line


def _lines(text: str) -> list[str]:
    return [c for c in (clean_line(x) for x in text.splitlines()) if c]


def _dedupe(queries: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for q in queries:
        key = " ".join(q.lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(q)
    return out


class _LLMTransform:
    name = "llm"
    system = "You help a search engine. Reply with the requested text only."

    def __init__(self, llm: LLMClient, *, max_tokens: int = 64, temperature: float = 0.0) -> None:
        self.llm = llm
        self.max_tokens = max_tokens
        self.temperature = temperature

    def _ask(self, prompt: str) -> str:
        return ask(self.llm, prompt, system=self.system, max_tokens=self.max_tokens, temperature=self.temperature)


QUERY_TRANSFORMS: Registry[QueryTransform] = Registry("query_transform")


@QUERY_TRANSFORMS.register("rewrite")
class RewriteTransform(_LLMTransform):
    name = "rewrite"

    def __init__(self, llm: LLMClient, *, keep_original: bool = True, **kw: Any) -> None:
        super().__init__(llm, **kw)
        self.keep_original = keep_original

    def transform(self, query: str) -> list[str]:
        out = _lines(self._ask(f"Rewrite this question as a short search query with the key words.\n"
                               f"Question: {query}\nSearch query:"))
        rewritten = out[0] if out else ""
        if not rewritten or len(rewritten) > 4 * len(query) + 40:  # a rambling answer is not a query
            return [query]
        return _dedupe([query, rewritten] if self.keep_original else [rewritten])


@QUERY_TRANSFORMS.register("expansion")
class ExpansionTransform(_LLMTransform):
    name = "expansion"

    def __init__(self, llm: LLMClient, *, max_terms: int = 10, **kw: Any) -> None:
        super().__init__(llm, **kw)
        self.max_terms = max_terms

    def transform(self, query: str) -> list[str]:
        text = self._ask(f"List 5 keywords or synonyms related to this question, separated by commas.\n"
                         f"Question: {query}\nKeywords:")
        terms = [clean_line(t) for t in re.split(r"[,\n;]", text)]
        q_words = {w.lower() for w in re.findall(r"\w+", query)}
        extra = _dedupe([t for t in terms if t and len(t) < 40 and t.lower() not in q_words])[: self.max_terms]
        return [f"{query} {' '.join(extra)}" if extra else query]


@QUERY_TRANSFORMS.register("hyde")
class HyDETransform(_LLMTransform):
    name = "hyde"

    def __init__(self, llm: LLMClient, *, keep_original: bool = True, max_tokens: int = 128, **kw: Any) -> None:
        super().__init__(llm, max_tokens=max_tokens, **kw)
        self.keep_original = keep_original

    def transform(self, query: str) -> list[str]:
        passage = " ".join(self._ask(f"Write a short passage that answers the question.\nQuestion: {query}\n"
                                     f"Passage:").split())
        passage = clean_line(passage)
        if not passage:
            return [query]
        return _dedupe([query, passage] if self.keep_original else [passage])


@QUERY_TRANSFORMS.register("multi-query")
class MultiQueryTransform(_LLMTransform):
    name = "multi-query"

    def __init__(self, llm: LLMClient, n: int = 3, **kw: Any) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        kw.setdefault("max_tokens", 32 * n + 32)
        super().__init__(llm, **kw)
        self.n = n

    def transform(self, query: str) -> list[str]:
        out = _lines(self._ask(f"Write {self.n} different search queries for this question, one per line.\n"
                               f"Question: {query}\nQueries:"))
        out = [q for q in out if len(q) <= 4 * len(query) + 40]
        return _dedupe([query, *out])[: self.n + 1]


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]+")


def prf_terms(query: str, feedback: Sequence[RetrievedChunk], n_terms: int) -> list[str]:
    """Expansion terms from feedback chunks, RM3-style (Abdul-Jaleel et al. 2004): weight(w) = sum_d P(w|d) * P(d|q)
    with P(w|d) = tf / |d| and P(d|q) = the retrieval score min-max-shifted and normalised over the feedback set."""
    if not feedback or n_terms < 1:
        return []
    scores = [r.score for r in feedback]
    lo = min(scores)
    weights = [s - lo + 1e-6 for s in scores]
    total = sum(weights)
    q_words = {w.lower() for w in _WORD.findall(query)}
    term_weight: Counter[str] = Counter()
    for r, w in zip(feedback, weights, strict=True):
        words = [t.lower() for t in _WORD.findall(r.chunk.text)]
        words = [t for t in words if t not in ENGLISH_STOPWORDS and t not in q_words and len(t) > 2]
        if not words:
            continue
        for term, tf in Counter(words).items():
            term_weight[term] += (tf / len(words)) * (w / total)
    return [t for t, _ in sorted(term_weight.items(), key=lambda kv: (-kv[1], kv[0]))[:n_terms]]


@QUERY_TRANSFORMS.register("prf")
class PRFExpansion:
    name = "prf"

    def __init__(self, retriever: _Searcher, docs: int = 3, terms: int = 8) -> None:
        if docs < 1 or terms < 1:
            raise ValueError(f"docs and terms must be >= 1, got docs={docs}, terms={terms}")
        self.retriever = retriever
        self.docs = docs
        self.terms = terms

    def transform(self, query: str) -> list[str]:
        extra = prf_terms(query, self.retriever.search(query, k=self.docs), self.terms)
        return [f"{query} {' '.join(extra)}" if extra else query]


class IdentityTransform:
    name = "none"

    def transform(self, query: str) -> list[str]:
        return [query]


TRANSFORM_NAMES = ("none", "rewrite", "expansion", "prf", "hyde", "multi-query")


def build_query_transform(name: str | None, *, llm: LLMClient | None = None, retriever: _Searcher | None = None,
                          **options: Any) -> QueryTransform:
    """A query transform by name: none, rewrite, expansion, prf (needs ``retriever``), hyde, multi-query (the
    others need ``llm``)."""
    from aisd.core.errors import InvalidRequestError

    if name in (None, "", "none"):
        return IdentityTransform()
    if name not in QUERY_TRANSFORMS:
        raise InvalidRequestError(f"unknown query_transform {name!r}; expected one of: {', '.join(TRANSFORM_NAMES)}",
                                  param="query_transform")
    if name == "prf":
        if retriever is None:
            raise InvalidRequestError("query_transform 'prf' needs a retriever", param="query_transform")
        return QUERY_TRANSFORMS.create(name, retriever, **options)
    if llm is None:
        raise InvalidRequestError(f"query_transform {name!r} needs an LLM client", param="query_transform")
    return QUERY_TRANSFORMS.create(name, llm, **options)


def search_with_transform(retriever: _Searcher, transform: QueryTransform, query: str, k: int,
                          filter: dict | None = None, *, depth: int | None = None) -> list[RetrievedChunk]:
    """Search every query the transform produces and fuse the lists by RRF (k = 60); one query = plain search.
    ``depth`` (default max(k, 20)) is how many results each query contributes to the fusion."""
    queries = transform.transform(query) or [query]
    if len(queries) == 1:
        return retriever.search(queries[0], k=k, filter=filter)
    depth = depth or max(k, 20)
    lists = [retriever.search(q, k=depth, filter=filter) for q in queries]
    by_id: dict[str, RetrievedChunk] = {}
    for results in lists:
        for r in results:
            by_id.setdefault(r.chunk.id, r)
    fused = reciprocal_rank_fusion([[r.chunk.id for r in results] for results in lists], k=RRF_K, n=k)
    return [by_id[str(f.id)].with_score("query_rrf", f.score) for f in fused]
