"""Answerability: decide, before generating, whether the retrieved sources hold the answer to the question.

A small model answers whatever it is asked (SmolLM2-135M never says "not in the sources" on SQuAD 2.0's unanswerable
questions), so the decision is made outside the model's answer. A spec names one strategy or several joined with
``+`` (every one must pass), each optionally with its own threshold: ``evidence``, ``coverage:0.4+llm:0.5``.

- ``similarity``: cos(question, best of the top chunks) with the embedder (a retrieval-score gate on one scale for
  every retriever).
- ``sentence``: cos(question, best single sentence of the top chunks): the answer sits in one sentence, and a
  sentence's embedding is not diluted by the rest of its chunk.
- ``coverage`` (judge-free, no model): do the question's content words, numbers and named entities appear in the
  best-matching window of source sentences? SQuAD 2.0's unanswerable questions are adversarial (Rajpurkar et al.
  2018, sec. 3): they swap an entity, add a negation or ask about something the paragraph almost says, so the score
  also penalises a question entity or number missing from the sources and a negation (in the question, more so when
  the sources do not have one).
- ``evidence``: coverage + 2 x sentence, one score from the two judge-free signals (the weight: their spreads on the
  calibration articles, ~0.32 vs ~0.13).
- ``llm``: one yes/no question to any ``LLMClient`` ("do the sources state the answer?") scored log P(Yes) -
  log P(No) from the first token's top logprobs (the relevance-generation score of monoT5, Nogueira et al. 2020);
  without logprobs the reply text decides (+1 / -1).

Default thresholds are calibrated by ``bench/rag_answerability.py`` on held-out SQuAD 2.0 articles (never the test
questions) under a false-refusal budget; docs/rag.md gives the numbers and the trade-off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aisd.embed.base import Embedder
from aisd.llm.client import LLMClient, chat_request
from aisd.rag.documents import RetrievedChunk
from aisd.search.tokenize import Tokenizer

STRATEGIES = ("none", "similarity", "sentence", "coverage", "evidence", "llm")

# Calibrated thresholds (bench/rag_answerability.py, calibration articles, false-refusal budget 0.2; docs/rag.md).
# SmolLM2-135M for llm, MiniLM-L6-v2 for similarity / sentence / evidence: recalibrate for other models.
DEFAULT_THRESHOLDS: dict[str, float] = {"similarity": 0.46, "sentence": 0.57, "coverage": 0.57, "evidence": 1.84,
                                        "llm": -0.57}
EVIDENCE_SENTENCE_WEIGHT = 2.0


@dataclass(frozen=True)
class StrategySpec:
    name: str
    threshold: float


def parse_strategy(spec: str | None) -> tuple[StrategySpec, ...]:
    """'coverage:0.4+llm' -> (coverage @ 0.4, llm @ its default); None / '' / 'none' -> (). ValueError if invalid."""
    if not spec or spec.strip() == "none":
        return ()
    out: list[StrategySpec] = []
    for part in (p.strip() for p in spec.split("+")):
        name, _, thr = part.partition(":")
        name = name.strip()
        if name not in STRATEGIES or name == "none":
            raise ValueError(f"answerability must be one of {', '.join(STRATEGIES)} (several joined with '+', each "
                             f"optionally name:threshold); got {spec!r}")
        try:
            threshold = float(thr) if thr.strip() else DEFAULT_THRESHOLDS[name]
        except ValueError as e:
            raise ValueError(f"answerability threshold of {name!r} must be a number; got {thr!r}") from e
        out.append(StrategySpec(name, threshold))
    return tuple(out)


@dataclass(frozen=True)
class AnswerabilityConfig:
    strategy: str = "none"  # a spec: "evidence", "coverage:0.4+llm" ...
    sources: int = 3  # how many top chunks the checks look at
    window: int = 1  # coverage: sentences either side of a sentence form its window
    llm_max_chars: int = 1500  # llm: characters of sources shown to the judge

    def __post_init__(self) -> None:
        parse_strategy(self.strategy)
        if self.sources < 1:
            raise ValueError(f"answerability sources must be >= 1, got {self.sources}")
        if self.window < 0:
            raise ValueError(f"answerability window must be >= 0, got {self.window}")
        if self.llm_max_chars < 100:
            raise ValueError(f"llm_max_chars must be >= 100, got {self.llm_max_chars}")

    @property
    def strategies(self) -> tuple[StrategySpec, ...]:
        return parse_strategy(self.strategy)


@dataclass(frozen=True)
class CheckScore:
    """One strategy's score and verdict (``passed``: the sources look like they hold the answer)."""

    strategy: str
    score: float
    threshold: float
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "score": round(self.score, 4), "threshold": self.threshold,
                "passed": self.passed, **self.detail}


@dataclass(frozen=True)
class AnswerabilityVerdict:
    answerable: bool
    checks: tuple[CheckScore, ...]
    llm_calls: int = 0

    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        return "; ".join(f"{c.strategy} score {c.score:.3f} < {c.threshold}" for c in failed) or "answerable"

    def to_dict(self) -> dict[str, Any]:
        return {"answerable": self.answerable, "checks": [c.to_dict() for c in self.checks]}


# ---- judge-free coverage ---------------------------------------------------------------------------------------

_TOKENIZER = Tokenizer()  # BM25's analysis: lower case, English stopwords out, Snowball stems
# Question frame words: they shape the question, not its content ("What is the name of ...", "How many ...").
_FRAME = frozenset(_TOKENIZER.tokenize("name names called call type kind many much long often year years "
                                       "percentage percent number amount term"))
_NEGATION = re.compile(r"\b(?:not|never|no|none|nothing|without|neither|nor|cannot)\b|n't\b", re.IGNORECASE)
_ENTITY = re.compile(r"\b[A-Z][\w'\-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'\-]*)*")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(" ".join(text.split())) if s]


def question_entities(question: str) -> list[str]:
    """Capitalised spans after the first word, and numbers: what an adversarial rewrite swaps."""
    first = re.match(r"\s*\S+", question)
    start = first.end() if first else 0
    spans = [m.group() for m in _ENTITY.finditer(question, start)]
    spans += _NUMBER.findall(question)
    return list(dict.fromkeys(s for s in spans if s.strip()))


def _terms(text: str) -> set[str]:
    return set(_TOKENIZER.tokenize(text))


@dataclass(frozen=True)
class CoverageScore:
    """Judge-free answerability evidence for one question (shares in [0, 1])."""

    score: float
    coverage: float  # weighted share of question terms in the best sentence window
    missing_entities: tuple[str, ...]  # question entities / numbers absent from every checked source
    entity_missing_share: float
    question_negated: bool  # the question holds a negation ("not", "never", "n't" ...)
    negation_mismatch: bool  # ... and the best window holds none
    best_window: str

    def detail(self) -> dict[str, Any]:
        return {"coverage": round(self.coverage, 4), "missing_entities": list(self.missing_entities),
                "question_negated": self.question_negated, "negation_mismatch": self.negation_mismatch,
                "best_window": self.best_window[:300]}


# Penalty weights of the coverage score, in units of coverage: the ratios of a logistic regression fitted on the
# calibration articles of bench/rag_answerability.py (never its test articles), rounded. An expected-answer-type
# feature ("how many" without a number in the window) had no signal there (AUC 0.50) and was dropped.
ENTITY_PENALTY = 0.4
NEGATION_MISMATCH_PENALTY = 0.6
NEGATED_QUESTION_PENALTY = 0.3


def coverage_score(question: str, passages: Sequence[str], window: int = 1) -> CoverageScore:
    """score = coverage - 0.4 x missing-entity share - 0.6 x negation mismatch - 0.3 x negated question.

    coverage: over the question's content terms (stems, stopwords and frame words removed; entity / number terms
    weighted 2), the weighted share found in the best window of ``2 x window + 1`` consecutive sentences of any
    passage (the sliding-window lexical baseline of MCTest, Richardson et al. 2013, used as a no-answer signal)."""
    q_terms = _terms(question) - _FRAME
    entities = question_entities(question)
    entity_terms = set().union(*(_terms(e) for e in entities)) if entities else set()
    weights = {t: (2.0 if t in entity_terms else 1.0) for t in q_terms}
    total = sum(weights.values())
    best, best_text = 0.0, ""
    all_terms: set[str] = set()
    for passage in passages:
        sents = split_sentences(passage) or [passage]
        sent_terms = [_terms(s) for s in sents]
        for ts in sent_terms:
            all_terms |= ts
        for i in range(len(sents)):
            lo, hi = max(0, i - window), min(len(sents), i + window + 1)
            have = set().union(*sent_terms[lo:hi])
            cov = sum(w for t, w in weights.items() if t in have) / total if total else 0.0
            if cov > best or not best_text:
                best, best_text = cov, " ".join(sents[lo:hi])
    missing = tuple(e for e in entities if _terms(e) and not _terms(e) <= all_terms)
    ent_share = len(missing) / len(entities) if entities else 0.0
    negated = bool(_NEGATION.search(question))
    mismatch = negated and not _NEGATION.search(best_text)
    score = (best - ENTITY_PENALTY * ent_share - NEGATION_MISMATCH_PENALTY * mismatch
             - NEGATED_QUESTION_PENALTY * negated)
    return CoverageScore(float(score), float(best), missing, float(ent_share), negated, mismatch, best_text)


# ---- LLM yes/no ------------------------------------------------------------------------------------------------

LLM_SYSTEM = ("You check whether a question can be answered from the given sources. Answer Yes if the sources "
              "state the answer, No if they do not (for example they mention a different person, place, date or "
              "thing, or never say it).")
LLM_PROMPT = "Sources:\n{sources}\n\nQuestion: {question}\nDo the sources state the answer to the question? " \
             "Answer Yes or No."


def numbered_sources(passages: Sequence[str], max_chars: int = 1500) -> str:
    """The judge's source block: "[1] text" per passage, whitespace collapsed, at most ``max_chars`` in all."""
    budget = max_chars
    shown: list[str] = []
    for i, p in enumerate(passages, 1):
        text = " ".join(p.split())[:budget]
        if not text:
            break
        shown.append(f"[{i}] {text}")
        budget -= len(text)
    return "\n\n".join(shown)


def llm_answerability_score(llm: LLMClient, question: str, passages: Sequence[str], max_chars: int = 1500) -> float:
    """log P(Yes) - log P(No) of the judge's first token (reply text +1 / -1 when there are no logprobs, 0 when
    neither word is given)."""
    from aisd.rag.rerank import yes_no_score  # the same Yes/No logprob reading the LLM reranker uses

    prompt = LLM_PROMPT.format(sources=numbered_sources(passages, max_chars), question=question)
    request = chat_request([{"role": "system", "content": LLM_SYSTEM}, {"role": "user", "content": prompt}],
                           max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=10)
    response = llm.chat(request)
    score = yes_no_score(response)
    if score is not None:
        return float(score)
    word = response.text.strip().lower()
    return 1.0 if word.startswith("yes") else -1.0 if word.startswith("no") else 0.0


# ---- the checker ------------------------------------------------------------------------------------------------

def best_sentence_similarity(question: str, passages: Sequence[str], embedder: Embedder) -> tuple[float, str]:
    """max cos(question, sentence) over the passages' sentences, and that sentence."""
    sents = [s for p in passages for s in split_sentences(p)]
    if not sents:
        return -1.0, ""
    vecs = embedder.embed([question, *sents])  # (1 + n, dim), unit rows
    sims = vecs[1:] @ vecs[0]
    best = int(np.argmax(sims))
    return float(sims[best]), sents[best]


class AnswerabilityChecker:
    """Runs the configured strategies over the top chunks; ``check`` says whether to generate or refuse."""

    def __init__(self, config: AnswerabilityConfig | None = None, *, llm: LLMClient | None = None,
                 embedder: Embedder | None = None,
                 similarity: Callable[[str, Sequence[RetrievedChunk]], list[float] | None] | None = None) -> None:
        self.config = config or AnswerabilityConfig()
        self.llm = llm
        self.embedder = embedder
        self._similarity = similarity

    @property
    def enabled(self) -> bool:
        return bool(self.config.strategies)

    def _sims(self, question: str, top: Sequence[RetrievedChunk]) -> list[float] | None:
        if self._similarity is not None:
            return self._similarity(question, top)
        if self.embedder is None:
            return None
        vecs = self.embedder.embed([question, *[r.chunk.text for r in top]])  # (1 + n, dim), unit rows
        return [float(x) for x in vecs[1:] @ vecs[0]]

    def _need_embedder(self, name: str) -> Embedder:
        if self.embedder is None:
            raise ValueError(f"answerability {name!r} needs an embedder")
        return self.embedder

    def score(self, spec: StrategySpec, question: str, top: Sequence[RetrievedChunk]) -> CheckScore:
        cfg, name, thr = self.config, spec.name, spec.threshold
        texts = [r.chunk.context_text for r in top]
        if name == "similarity":
            sims = self._sims(question, top)
            if sims is None:
                raise ValueError("answerability 'similarity' needs an embedder")
            best = max(sims) if sims else -1.0
            return CheckScore(name, best, thr, best >= thr)
        if name == "sentence":
            sim, sent = best_sentence_similarity(question, texts, self._need_embedder(name))
            return CheckScore(name, sim, thr, sim >= thr, {"best_sentence": sent[:300]})
        if name in ("coverage", "evidence"):
            cov = coverage_score(question, texts, cfg.window)
            detail = cov.detail()
            value = cov.score
            if name == "evidence":
                sim, sent = best_sentence_similarity(question, texts, self._need_embedder(name))
                value = cov.score + EVIDENCE_SENTENCE_WEIGHT * sim
                detail = {**detail, "coverage_score": round(cov.score, 4), "sentence_similarity": round(sim, 4),
                          "best_sentence": sent[:300]}
            return CheckScore(name, value, thr, value >= thr, detail)
        if name == "llm":
            if self.llm is None:
                raise ValueError("answerability 'llm' needs an LLM client")
            s = llm_answerability_score(self.llm, question, texts, cfg.llm_max_chars)
            return CheckScore(name, s, thr, s >= thr)
        raise ValueError(f"unknown answerability strategy {name!r}")

    def check(self, question: str, retrieved: Sequence[RetrievedChunk]) -> AnswerabilityVerdict:
        top = list(retrieved)[: self.config.sources]
        if not top:
            return AnswerabilityVerdict(False, ())
        checks: list[CheckScore] = []
        calls = 0
        for spec in self.config.strategies:
            c = self.score(spec, question, top)
            calls += spec.name == "llm"
            checks.append(c)
            if not c.passed:  # every strategy must pass: stop at the first refusal (saves the LLM call)
                break
        return AnswerabilityVerdict(all(c.passed for c in checks), tuple(checks), calls)


def best_threshold(pos_scores: Sequence[float], max_false_refusal: float) -> float:
    """Calibration: the highest threshold (so the most unanswerable questions refused) with at most
    ``max_false_refusal`` of the answerable questions' ``pos_scores`` below it (a Neyman-Pearson operating point)."""
    pos = np.sort(np.asarray(pos_scores, dtype=float))
    if pos.size == 0:
        raise ValueError("calibration needs answerable examples")
    allowed = int(np.floor(max_false_refusal * pos.size))  # answerable scores allowed strictly below the threshold
    return float(pos[allowed]) if allowed < pos.size else float(pos[-1]) + 1e-9
