"""Generation metrics for RAG answers: faithfulness, answer relevancy, context relevancy (each with an LLM judge
through any LLMClient and a judge-free variant), SQuAD exact match / F1, and "not in the sources" accuracy.

Definitions (a sample = question, answer, retrieved contexts, optionally gold answers):
- faithfulness = share of the answer's statements supported by the contexts (Ragas, Es et al. 2023).
  Judge: the LLM says YES/NO per statement. Judge-free: a statement is supported when at least ``threshold`` of its
  content words occur in the contexts (lexical support, in the spirit of ROUGE-style grounding checks).
- answer relevancy = does the answer address the question. Judge: YES/NO. Judge-free: cosine similarity of the
  question's and the answer's embeddings, clipped to [0, 1] (Ragas embeds questions generated from the answer; we
  embed the answer itself so no LLM is needed).
- context relevancy = share of the retrieved context that is relevant to the question (Ragas v0.1). Judge: YES/NO
  per context passage. Judge-free: share of context sentences whose embedding similarity to the question is at least
  ``threshold``.
- SQuAD EM / F1: the official SQuAD v2 evaluation script's normalisation (lower case, no punctuation, no articles,
  single spaces), max over the gold answers (Rajpurkar et al. 2016, 2018); an unanswerable question's gold is "".
- not-in-sources accuracy: share of unanswerable questions answered with the explicit refusal; the false-refusal
  rate is the share of answerable ones that were refused.

Judge replies that contain neither YES nor NO are counted in ``unparsed`` and left out of the mean, never NaN.
A metric over several runs is reported as ``MetricValue(mean, std, runs)``: the mean of per-run means and their
sample standard deviation (the run-to-run spread).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aisd.embed.base import Embedder
from aisd.llm.client import LLMClient, chat_request

# ---- SQuAD answer metrics (official v2.0 evaluation script semantics) ------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def squad_normalize(text: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (SQuAD's normalize_answer)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, gold: str) -> float:
    pred_toks, gold_toks = squad_normalize(prediction).split(), squad_normalize(gold).split()
    if not pred_toks or not gold_toks:  # SQuAD v2: both empty -> 1, one empty -> 0
        return float(pred_toks == gold_toks)
    common = Counter(pred_toks) & Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer (max over golds; [] means [""])."""
    golds = list(golds) or [""]
    return max(float(squad_normalize(prediction) == squad_normalize(g)) for g in golds)


def squad_f1(prediction: str, golds: Sequence[str]) -> float:
    """Token-level F1 against the best-matching gold answer (SQuAD's compute_f1, max over golds)."""
    golds = list(golds) or [""]
    return max(_f1(prediction, g) for g in golds)


def answer_span(text: str) -> str:
    """The answer without citation markers or the trailing period, for EM/F1 against short gold spans."""
    text = re.sub(r"\[\s*\d+(?:\s*[-,]\s*\d+)*\s*\]", "", text)
    return " ".join(text.split()).rstrip(".").strip()


# ---- statements and words ----------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z0-9]+")
_STOP = frozenset("a an the and or of to in on at by for with from as is are was were be been being it its this "
                  "that these those which who whom what when where why how not no do does did has have had can "
                  "could will would should may might also than then there their they them he she his her we our "
                  "you your i".split())


def content_words(text: str) -> list[str]:
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in _STOP]


def split_statements(text: str) -> list[str]:
    """The answer's sentences (citation markers removed), each one a statement to verify."""
    text = re.sub(r"\s*\[\s*\d+(?:\s*[-,]\s*\d+)*\s*\]", "", text)
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if content_words(p)]


def lexical_support(statement: str, context: str) -> float:
    """Share of the statement's content words that occur in the context (0 when it has none)."""
    words = content_words(statement)
    if not words:
        return 0.0
    ctx = set(content_words(context))
    return sum(w in ctx for w in words) / len(words)


# ---- judge-free metrics -----------------------------------------------------------------------------------------

def faithfulness_lexical(answer: str, contexts: Sequence[str], threshold: float = 0.6) -> float | None:
    """Share of answer statements with lexical support >= threshold in the joined contexts; None if no statement."""
    statements = split_statements(answer)
    if not statements:
        return None
    joined = "\n".join(contexts)
    return sum(lexical_support(s, joined) >= threshold for s in statements) / len(statements)


def answer_relevancy_embedding(question: str, answer: str, embedder: Embedder) -> float | None:
    """cos(embed(question), embed(answer)) clipped to [0, 1]; None for an empty answer."""
    if not answer.strip():
        return None
    v = embedder.embed([question, answer])  # (2, dim) unit rows
    return float(np.clip(v[0] @ v[1], 0.0, 1.0))


def _sentences(texts: Sequence[str]) -> list[str]:
    return [s for t in texts for s in re.split(r"(?<=[.!?])\s+|\n\s*\n", t) if content_words(s)]


def context_relevancy_embedding(question: str, contexts: Sequence[str], embedder: Embedder,
                                threshold: float = 0.35) -> float | None:
    """Share of context sentences with cos(question, sentence) >= threshold; None when there is no context."""
    sents = _sentences(contexts)
    if not sents:
        return None
    v = embedder.embed([question, *sents])  # (1 + n, dim)
    return float(np.mean(v[1:] @ v[0] >= threshold))


# ---- LLM-judged metrics ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgeScore:
    score: float | None  # mean of the parsed verdicts; None when none parsed
    verdicts: tuple[bool | None, ...]  # per item; None = unparseable reply

    @property
    def unparsed(self) -> int:
        return sum(v is None for v in self.verdicts)


def parse_verdict(text: str) -> bool | None:
    """YES -> True, NO -> False (the first of the two words in the reply), else None."""
    m = re.search(r"\b(yes|no)\b", text, re.IGNORECASE)
    return None if m is None else m.group(1).lower() == "yes"


def _score(verdicts: list[bool | None]) -> JudgeScore:
    parsed = [v for v in verdicts if v is not None]
    return JudgeScore(sum(parsed) / len(parsed) if parsed else None, tuple(verdicts))


_YES, _NO = {"yes", "y"}, {"no", "n"}


def verdict_from_logprobs(top: Sequence[tuple[str, float]]) -> bool | None:
    """YES vs NO from the first generated token's alternatives: compare the probability mass of yes-like and
    no-like tokens (the G-Eval idea, Liu et al. 2023, reduced to a binary verdict); None when neither appears."""
    p_yes = sum(math.exp(lp) for tok, lp in top if tok.strip().lower() in _YES)
    p_no = sum(math.exp(lp) for tok, lp in top if tok.strip().lower() in _NO)
    if p_yes == 0.0 and p_no == 0.0:
        return None
    return p_yes > p_no


def _judge(judge: LLMClient, prompt: str) -> bool | None:
    """The reply's YES/NO; if it has neither (small models start with "The statement ..."), the first token's
    top logprobs decide when the server returns them."""
    messages = [{"role": "system", "content": "You are a strict grader. Reply with YES or NO only."},
                {"role": "user", "content": prompt}]
    response = judge.chat(chat_request(messages, max_tokens=4, temperature=0.0, logprobs=True, top_logprobs=10))
    verdict = parse_verdict(response.text)
    if verdict is not None or not response.choices:
        return verdict
    lp = response.choices[0].logprobs
    if lp is None or not lp.content:
        return None
    return verdict_from_logprobs([(t.token, t.logprob) for t in lp.content[0].top_logprobs])


def _clip(text: str, chars: int = 2000) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[:chars] + " ..."


def faithfulness_judge(answer: str, contexts: Sequence[str], judge: LLMClient) -> JudgeScore:
    ctx = _clip("\n".join(contexts))
    return _score([_judge(judge, f"Context: {ctx}\n\nStatement: {s}\n\nIs the statement supported by the context? "
                                 f"Reply YES or NO.") for s in split_statements(answer)])


def answer_relevancy_judge(question: str, answer: str, judge: LLMClient) -> JudgeScore:
    if not answer.strip():
        return JudgeScore(None, ())
    return _score([_judge(judge, f"Question: {question}\nAnswer: {_clip(answer, 800)}\n\nDoes the answer address the "
                                 f"question? Reply YES or NO.")])


def context_relevancy_judge(question: str, contexts: Sequence[str], judge: LLMClient) -> JudgeScore:
    return _score([_judge(judge, f"Passage: {_clip(c, 1200)}\n\nQuestion: {question}\n\nIs the passage relevant to "
                                 f"the question? Reply YES or NO.") for c in contexts])


# ---- samples, runs and summaries ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationSample:
    question: str
    answer: str
    contexts: tuple[str, ...]
    gold_answers: tuple[str, ...] = ()  # empty + answerable=False: an unanswerable question
    answerable: bool = True
    refused: bool = False  # the system answered "not in the sources"


@dataclass(frozen=True)
class MetricValue:
    """A metric over one or more runs: mean of per-run means, their sample std (0 for one run), per-run means."""

    name: str
    mean: float | None
    std: float
    runs: tuple[float, ...]
    n: int  # samples scored in total
    unparsed: int = 0  # judge replies with no verdict (left out of the mean)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "mean": self.mean, "std": self.std, "runs": list(self.runs), "n": self.n,
                "unparsed": self.unparsed}

    def __str__(self) -> str:
        return "n/a" if self.mean is None else f"{self.mean:.3f} \u00b1 {self.std:.3f}"


@dataclass
class RunScores:
    """Per-sample scores of one run, by metric name (None entries = not applicable to that sample)."""

    values: dict[str, list[float]] = field(default_factory=dict)
    unparsed: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: float | None, unparsed: int = 0) -> None:
        if value is not None and not math.isnan(value):
            self.values.setdefault(name, []).append(float(value))
        else:
            self.values.setdefault(name, [])
        if unparsed:
            self.unparsed[name] = self.unparsed.get(name, 0) + unparsed

    def means(self) -> dict[str, float | None]:
        return {k: (float(np.mean(v)) if v else None) for k, v in self.values.items()}


class GenerationEvaluator:
    """Scores GenerationSamples. ``embedder`` enables the embedding-based judge-free metrics, ``judge`` the
    LLM-judged ones; faithfulness (lexical), SQuAD EM/F1 and refusal accuracy need neither."""

    def __init__(self, *, embedder: Embedder | None = None, judge: LLMClient | None = None,
                 faithfulness_threshold: float = 0.6, context_threshold: float = 0.35) -> None:
        self.embedder = embedder
        self.judge = judge
        self.faithfulness_threshold = faithfulness_threshold
        self.context_threshold = context_threshold

    def score_run(self, samples: Sequence[GenerationSample]) -> RunScores:
        run = RunScores()
        for s in samples:
            if s.answerable:
                run.add("squad_em", squad_exact_match(answer_span(s.answer), s.gold_answers) if not s.refused
                        else 0.0)
                run.add("squad_f1", squad_f1(answer_span(s.answer), s.gold_answers) if not s.refused else 0.0)
                run.add("false_refusal_rate", float(s.refused))
            else:
                run.add("not_in_sources_accuracy", float(s.refused))
            if s.refused:  # faithfulness / relevancy are about answers that were given
                continue
            run.add("faithfulness", faithfulness_lexical(s.answer, s.contexts, self.faithfulness_threshold))
            if self.embedder is not None:
                run.add("answer_relevancy", answer_relevancy_embedding(s.question, s.answer, self.embedder))
                run.add("context_relevancy", context_relevancy_embedding(s.question, s.contexts, self.embedder,
                                                                         self.context_threshold))
            if self.judge is not None:
                for name, js in (("faithfulness_judge", faithfulness_judge(s.answer, s.contexts, self.judge)),
                                 ("answer_relevancy_judge", answer_relevancy_judge(s.question, s.answer, self.judge)),
                                 ("context_relevancy_judge", context_relevancy_judge(s.question, s.contexts,
                                                                                     self.judge))):
                    run.add(name, js.score, js.unparsed)
        return run


def summarize_runs(runs: Sequence[RunScores]) -> dict[str, MetricValue]:
    """Per metric: mean and sample std (ddof=1) of the per-run means, over the runs where it was defined."""
    names = sorted({k for r in runs for k in r.values})
    out: dict[str, MetricValue] = {}
    for name in names:
        per_run = [m for m in (r.means().get(name) for r in runs) if m is not None]
        n = sum(len(r.values.get(name, [])) for r in runs)
        unparsed = sum(r.unparsed.get(name, 0) for r in runs)
        mean = float(np.mean(per_run)) if per_run else None
        std = float(np.std(per_run, ddof=1)) if len(per_run) > 1 else 0.0
        out[name] = MetricValue(name, mean, std, tuple(per_run), n, unparsed)
    return out
