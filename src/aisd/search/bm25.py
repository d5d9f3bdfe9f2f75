"""Okapi BM25 (Robertson & Zaragoza 2009) with incremental add/delete and an atomic on-disk format.

Variants follow Kamphuis et al. 2020 ("Which BM25 do you mean?"), the same formulas bm25s implements, so scores are
equal to bm25s with the same method and tokens (checked in tests/reference/test_search_bm25.py):

- ``lucene`` (default): idf = ln(1 + (N - df + 0.5) / (df + 0.5)); tf part = tf / (tf + k1 (1 - b + b dl / avgdl))
- ``robertson``: idf = ln((N - df + 0.5) / (df + 0.5)) clipped at 0; same tf part
- ``atire``: idf = ln(N / df); tf part = tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))
- ``bm25l``: idf = ln((N + 1) / (df + 0.5)); c = tf / (1 - b + b dl / avgdl); (k1 + 1)(c + d) / (k1 + c + d)
- ``bm25+``: idf = ln((N + 1) / df); tf part = (k1 + 1) tf / (k1 (1 - b + b dl / avgdl) + tf) + d

The source of truth is each document's term counts plus an inverted index of postings; ``N``, ``avgdl`` and ``df``
always describe the live documents, so scores after deletes equal a fresh index over what is left. Searching compiles
the postings into numpy arrays once per modification, then a query costs one gather per query term.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aisd.core.errors import CorruptDataError, InvalidRequestError
from aisd.core.files import atomic_write
from aisd.core.progress import progress
from aisd.search.tokenize import Tokenizer

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
_FORMAT = "aisd-bm25/1"


@dataclass(frozen=True)
class BM25Config:
    k1: float = 1.5
    b: float = 0.75
    delta: float = 0.5  # only bm25l / bm25+
    method: str = "lucene"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.k1 < 0:
            raise ValueError(f"k1 must be >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"b must be in [0, 1], got {self.b}")
        if self.delta < 0:
            raise ValueError(f"delta must be >= 0, got {self.delta}")


class BM25Hit(NamedTuple):
    id: str
    score: float


def idf(df: np.ndarray, n_docs: int, method: str) -> np.ndarray:
    """Inverse document frequency per term (Kamphuis et al. 2020, table 1). df: (n_terms,) -> (n_terms,)."""
    df = df.astype(np.float64)
    if method == "lucene":
        return np.log1p((n_docs - df + 0.5) / (df + 0.5))
    if method == "robertson":
        return np.log(np.maximum((n_docs - df + 0.5) / (df + 0.5), 1.0))
    if method == "atire":
        return np.log(n_docs / df)
    if method == "bm25l":
        return np.log((n_docs + 1) / (df + 0.5))
    if method == "bm25+":
        return np.log((n_docs + 1) / df)
    raise ValueError(f"unknown BM25 method {method!r}")


def tf_component(tf: np.ndarray, dl: np.ndarray, avgdl: float, cfg: BM25Config) -> np.ndarray:
    """Saturating, length-normalised term-frequency part (Kamphuis et al. 2020). tf, dl: (n,) -> (n,)."""
    norm = 1.0 - cfg.b + cfg.b * dl / avgdl
    if cfg.method in ("lucene", "robertson"):
        return tf / (tf + cfg.k1 * norm)
    if cfg.method == "atire":
        return tf * (cfg.k1 + 1.0) / (tf + cfg.k1 * norm)
    if cfg.method == "bm25l":
        c = tf / norm
        return (cfg.k1 + 1.0) * (c + cfg.delta) / (cfg.k1 + c + cfg.delta)
    if cfg.method == "bm25+":
        return (cfg.k1 + 1.0) * tf / (cfg.k1 * norm + tf) + cfg.delta
    raise ValueError(f"unknown BM25 method {cfg.method!r}")


class _Compiled(NamedTuple):
    ids: list[str]  # slot -> document id
    dl: np.ndarray  # (n_docs,) float64 document lengths
    avgdl: float
    postings: dict[str, tuple[np.ndarray, np.ndarray]]  # term -> (slots int64, tf float64)
    idf: dict[str, float]


class BM25Index:
    """An inverted index scored with BM25. ``add`` replaces a document with the same id; ``delete`` removes ids.

    ``path`` (optional) is where ``save()`` writes and where the constructor reads an existing index from.
    """

    def __init__(self, config: BM25Config | None = None, tokenizer: Tokenizer | None = None,
                 path: str | Path | None = None) -> None:
        self.config = config or BM25Config()
        self.tokenizer = tokenizer or Tokenizer()
        self.path = Path(path) if path is not None else None
        self._docs: dict[str, Counter[str]] = {}  # id -> term counts
        self._postings: dict[str, dict[str, int]] = {}  # term -> {id: tf}
        self._compiled: _Compiled | None = None
        self._lock = threading.RLock()
        if self.path is not None and self.path.exists():
            self._load(self.path)

    # ---- writes -----------------------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        if len(ids) != len(texts):
            raise InvalidRequestError(f"ids and texts differ in length ({len(ids)} vs {len(texts)})", param="ids")
        counts = [Counter(self.tokenizer.tokenize(t))
                  for t in progress(texts, total=len(texts), desc="BM25 indexing")]
        self.add_tokenized(ids, counts)

    def add_tokenized(self, ids: Sequence[str], counts: Sequence[Counter[str] | Sequence[str]]) -> None:
        """Add already-analysed documents (term lists or term counts)."""
        with self._lock:
            for doc_id, c in zip(ids, counts, strict=True):
                doc_id = str(doc_id)
                if doc_id in self._docs:
                    self._remove(doc_id)
                tf = c if isinstance(c, Counter) else Counter(c)
                self._docs[doc_id] = tf
                for term, n in tf.items():
                    self._postings.setdefault(term, {})[doc_id] = n
            self._compiled = None

    def _remove(self, doc_id: str) -> None:
        for term in self._docs.pop(doc_id):
            post = self._postings.get(term)
            if post is not None:
                post.pop(doc_id, None)
                if not post:
                    del self._postings[term]

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        with self._lock:
            for doc_id in ids:
                if str(doc_id) in self._docs:
                    self._remove(str(doc_id))
                    removed += 1
            if removed:
                self._compiled = None
        return removed

    # ---- reads ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    @property
    def vocabulary_size(self) -> int:
        return len(self._postings)

    def _compile(self) -> _Compiled:
        with self._lock:
            if self._compiled is None:
                ids = list(self._docs)
                slot = {d: i for i, d in enumerate(ids)}
                dl = np.array([sum(self._docs[d].values()) for d in ids], dtype=np.float64)
                avgdl = float(dl.mean()) if len(ids) and dl.sum() > 0 else 1.0
                postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                terms = list(self._postings)
                dfs = np.array([len(self._postings[t]) for t in terms], dtype=np.float64)
                idfs = idf(dfs, len(ids), self.config.method) if terms else np.zeros(0)
                for t in terms:
                    post = self._postings[t]
                    postings[t] = (np.fromiter((slot[d] for d in post), dtype=np.int64, count=len(post)),
                                   np.fromiter(post.values(), dtype=np.float64, count=len(post)))
                self._compiled = _Compiled(ids, dl, avgdl, postings, dict(zip(terms, idfs.tolist(), strict=True)))
            return self._compiled

    def score_terms(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every live document (in ``ids()`` order) for an analysed query; (n_docs,) float64.

        A query term that repeats counts once per occurrence, as bm25s and rank_bm25 do. For bm25l / bm25+ a known
        term also adds idf x tf_part(0) to documents without it (their tf part is not 0 at tf = 0), as bm25s does."""
        return self._score(terms)[0]

    def _score(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        c = self._compile()
        scores = np.zeros(len(c.ids), dtype=np.float64)
        matched = np.zeros(len(c.ids), dtype=bool)
        shifted = self.config.method in ("bm25l", "bm25+")
        for term in terms:
            hit = c.postings.get(term)
            if hit is None:
                continue
            slots, tf = hit
            w = c.idf[term]
            part = tf_component(tf, c.dl[slots], c.avgdl, self.config)
            if shifted:
                base = w * tf_component(np.zeros(len(c.ids)), c.dl, c.avgdl, self.config)  # (n_docs,)
                scores += base
                scores[slots] += w * part - base[slots]
            else:
                scores[slots] += w * part
            matched[slots] = True
        return scores, matched

    def ids(self) -> list[str]:
        return list(self._compile().ids)

    def get_scores(self, query: str) -> np.ndarray:
        return self.score_terms(self.tokenizer.tokenize(query))

    def search(self, query: str, k: int = 10, *, allowed: set[str] | None = None) -> list[BM25Hit]:
        """Top ``k`` documents by BM25, best first; documents sharing no term with the query are not returned.
        ``allowed`` restricts the candidates (a metadata filter already evaluated by the caller)."""
        if k < 1:
            raise InvalidRequestError(f"k must be >= 1, got {k}", param="k")
        c = self._compile()
        scores, matched = self._score(self.tokenizer.tokenize(query))
        if allowed is not None:
            matched &= np.fromiter((d in allowed for d in c.ids), dtype=bool, count=len(c.ids))
        nz = np.flatnonzero(matched)
        if nz.size == 0:
            return []
        if nz.size > k:  # partial selection first: O(n) instead of sorting every matching document
            nz = nz[np.argpartition(-scores[nz], k - 1)[:k]]
        top = nz[np.lexsort((nz, -scores[nz]))]  # score descending, ties by insertion order
        return [BM25Hit(c.ids[i], float(scores[i])) for i in top]

    # ---- persistence ------------------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write the index atomically (temp file, fsync, rename): a crash leaves the old file or the new one."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise InvalidRequestError("no path given and the index was created without one", param="path")
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            body = {"format": _FORMAT, "config": {"k1": self.config.k1, "b": self.config.b,
                                                  "delta": self.config.delta, "method": self.config.method},
                    "tokenizer": self.tokenizer.config(),
                    "docs": {d: dict(c) for d, c in self._docs.items()}}
            data = gzip.compress(json.dumps(body, separators=(",", ":")).encode("utf-8"), compresslevel=5)
        atomic_write(target, data)
        return target

    def _load(self, path: Path) -> None:
        try:
            body = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
        except (OSError, EOFError, ValueError, gzip.BadGzipFile) as e:
            raise CorruptDataError(f"BM25 index {path} cannot be read: {e}") from e
        if not isinstance(body, dict) or body.get("format") != _FORMAT:
            raise CorruptDataError(f"BM25 index {path}: not an {_FORMAT} file")
        self.config = BM25Config(**body["config"])
        self.tokenizer = Tokenizer.from_config(body["tokenizer"])
        self._docs, self._postings = {}, {}
        self.add_tokenized(list(body["docs"]), [Counter(c) for c in body["docs"].values()])

    @classmethod
    def load(cls, path: str | Path) -> BM25Index:
        path = Path(path)
        if not path.exists():
            from aisd.core.errors import NotFoundError

            raise NotFoundError(f"no BM25 index at {path}")
        return cls(path=path)


def bm25_scores_reference(corpus: Sequence[Sequence[str]], query: Sequence[str], cfg: BM25Config) -> list[float]:
    """A direct, loop-by-loop BM25 over tokenized documents (used as an in-repo oracle by tests)."""
    n = len(corpus)
    avgdl = sum(len(d) for d in corpus) / n if n else 1.0
    df: Counter[str] = Counter()
    for d in corpus:
        df.update(set(d))
    shifted = cfg.method in ("bm25l", "bm25+")
    out = []
    for d in corpus:
        tf = Counter(d)
        s = 0.0
        for term in query:
            if df[term] == 0 or (tf[term] == 0 and not shifted):
                continue
            i = float(idf(np.array([df[term]]), n, cfg.method)[0])
            s += i * float(tf_component(np.array([float(tf[term])]), np.array([float(len(d))]), avgdl, cfg)[0])
        out.append(s)
    return out
