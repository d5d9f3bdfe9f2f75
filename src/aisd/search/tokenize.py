"""Lexical tokenization for BM25: lower-case, split on non-alphanumerics, drop English stopwords, stem.

These choices are what BEIR-style BM25 baselines use (Lucene's EnglishAnalyzer; bm25s with PyStemmer): on SciFact
they move nDCG@10 from ~0.60 (whitespace split) to ~0.67. The stemmer is Snowball English through PyStemmer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aisd.core.errors import ServiceUnavailableError

# Two or more word characters, like scikit-learn's and bm25s's default token pattern (single letters carry no signal).
TOKEN_PATTERN = r"(?u)\b\w\w+\b"

# A standard English stopword list (function words only: articles, pronouns, auxiliaries, prepositions, conjunctions).
ENGLISH_STOPWORDS: frozenset[str] = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can cannot could couldn't did didn't do does doesn't doing don't down during each few for from further
had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his how how's
i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so some
such than that that's the their theirs them themselves then there there's these they they'd they'll they're they've
this those through to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when
when's where where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're you've
your yours yourself yourselves also however thus may might must shall will just s t
""".split())

STEMMERS = ("english", "porter", "none")


@lru_cache(maxsize=4)
def _stemmer(name: str) -> Any:
    try:
        import Stemmer  # PyStemmer: Snowball stemmers in C
    except ImportError as e:  # pragma: no cover - PyStemmer is a dependency
        raise ServiceUnavailableError(
            f"stemmer {name!r} needs PyStemmer: pip install PyStemmer (or use stemmer='none')") from e
    return Stemmer.Stemmer(name)


@dataclass(frozen=True)
class Tokenizer:
    """Text -> terms. ``stemmer``: english (Snowball), porter, none; ``stopwords``: english, none, or a list."""

    lowercase: bool = True
    stopwords: str | tuple[str, ...] = "english"
    stemmer: str = "english"
    token_pattern: str = TOKEN_PATTERN
    strip_accents: bool = True
    _stop: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stemmer not in STEMMERS:
            raise ValueError(f"stemmer must be one of {', '.join(STEMMERS)}; got {self.stemmer!r}")
        if isinstance(self.stopwords, str):
            if self.stopwords not in ("english", "none"):
                raise ValueError(f"stopwords must be 'english', 'none' or a list of words; got {self.stopwords!r}")
            stop = ENGLISH_STOPWORDS if self.stopwords == "english" else frozenset()
        else:
            stop = frozenset(w.lower() for w in self.stopwords)
        object.__setattr__(self, "_stop", stop)
        object.__setattr__(self, "_re", re.compile(self.token_pattern))
        if self.stemmer != "none":
            _stemmer(self.stemmer)  # fail at construction, not mid-index

    def config(self) -> dict[str, Any]:
        """JSON-able description, stored beside a persisted index so it is reopened with the same analysis."""
        stop = self.stopwords if isinstance(self.stopwords, str) else list(self.stopwords)
        return {"lowercase": self.lowercase, "stopwords": stop, "stemmer": self.stemmer,
                "token_pattern": self.token_pattern, "strip_accents": self.strip_accents}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Tokenizer:
        stop = cfg.get("stopwords", "english")
        return cls(lowercase=cfg.get("lowercase", True), stopwords=stop if isinstance(stop, str) else tuple(stop),
                   stemmer=cfg.get("stemmer", "english"), token_pattern=cfg.get("token_pattern", TOKEN_PATTERN),
                   strip_accents=cfg.get("strip_accents", True))

    def __call__(self, text: str) -> list[str]:
        return self.tokenize(text)

    def tokenize(self, text: str) -> list[str]:
        if self.strip_accents:
            text = unicodedata.normalize("NFKD", text)
            text = "".join(c for c in text if not unicodedata.combining(c))
        if self.lowercase:
            text = text.lower()
        words = [w for w in self._re.findall(text) if w not in self._stop]  # type: ignore[attr-defined]
        if self.stemmer != "none":
            words = _stemmer(self.stemmer).stemWords(words)
        return words

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(t) for t in texts]


def simple_tokens(texts: Sequence[str]) -> list[list[str]]:
    """Default analysis for many texts (convenience for callers without a configured Tokenizer)."""
    return Tokenizer().tokenize_many(texts)
