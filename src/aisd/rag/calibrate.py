"""Calibrate the answerability thresholds on your own documents and questions.

The shipped thresholds (``answerability.DEFAULT_THRESHOLDS``) were fitted to SQuAD 2.0 with MiniLM and SmolLM2; other
documents, embedders or models put the scores on other scales. Given questions labelled answerable or not (JSONL
``{"question": ..., "answerable": true}``, or a SQuAD 2.0 file), this retrieves each question's sources from the
ingested index exactly as ``ask`` does, scores every strategy of the spec, and picks the thresholds that refuse the
most unanswerable questions while refusing at most ``max_false_refusal`` of the answerable ones - the Neyman-Pearson
operating point of ``answerability.best_threshold``. Several strategies joined with ``+`` (all must pass) are
calibrated jointly over a grid of answerable-score quantiles. The report gives the spec to put in the settings, the
rates it reached on these questions and each score's AUC (how well it separates the two kinds at any threshold).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisd.core.errors import CorruptDataError, InvalidRequestError, NotFoundError
from aisd.core.progress import progress
from aisd.rag.answerability import AnswerabilityChecker, AnswerabilityConfig, best_threshold, parse_strategy

MAX_JOINT = 3  # strategies calibrated jointly (the grid has 11 ** n points)


@dataclass(frozen=True)
class LabelledQuestion:
    question: str
    answerable: bool


@dataclass(frozen=True)
class StrategyCalibration:
    name: str
    threshold: float
    auc: float | None  # P(answerable score > unanswerable score), ties half; None without both kinds


@dataclass(frozen=True)
class CalibrationReport:
    spec: str  # the calibrated spec, e.g. "evidence:1.7123" - the ``answerability`` setting
    strategies: tuple[StrategyCalibration, ...]
    refused_unanswerable: float  # share of unanswerable questions refused with the calibrated spec
    false_refusal: float  # share of answerable questions refused
    max_false_refusal: float
    n_answerable: int
    n_unanswerable: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_questions(path: str | Path) -> list[LabelledQuestion]:
    """JSONL rows ``{"question": str, "answerable": bool}``, or a SQuAD 2.0 JSON file (``is_impossible``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise NotFoundError(f"no such file: {p}", param="questions")
    if p.suffix == ".json" or p.is_dir():
        from aisd.rag.loaders import load_squad

        return [LabelledQuestion(q.question, q.answerable) for q in load_squad(p).questions]
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, answerable = row["question"], row["answerable"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorruptDataError(f"{p} line {n}: expected {{\"question\": str, \"answerable\": bool}}: {e}") from e
        if not isinstance(question, str) or not question.strip() or not isinstance(answerable, bool):
            raise CorruptDataError(f"{p} line {n}: 'question' must be a non-empty string and 'answerable' a boolean")
        out.append(LabelledQuestion(question, answerable))
    return out


def auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(score of an answerable > score of an unanswerable), ties half (Mann-Whitney U / (n_pos n_neg))."""
    if pos.size == 0 or neg.size == 0:
        return None
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def refusal_rates(scores: np.ndarray, thresholds: Sequence[float], answerable: np.ndarray) -> tuple[float, float]:
    """(refused share of unanswerable, refused share of answerable) when any score is below its threshold.
    ``scores`` is (n_questions, n_strategies)."""
    refused = (scores < np.asarray(thresholds)[None, :]).any(axis=1)
    unans = float(refused[~answerable].mean()) if (~answerable).any() else 0.0
    ans = float(refused[answerable].mean()) if answerable.any() else 0.0
    return unans, ans


def fit_thresholds(scores: np.ndarray, answerable: np.ndarray, max_false_refusal: float) -> list[float]:
    """Thresholds for (n_questions, n_strategies) scores: one strategy, ``best_threshold``; several, the grid point
    (each threshold an answerable-score quantile in [0, budget], or off) with the most unanswerable questions refused
    within the false-refusal budget."""
    if not answerable.any():
        raise InvalidRequestError("calibration needs answerable questions", param="questions")
    if scores.shape[1] == 1:
        return [best_threshold(scores[answerable, 0], max_false_refusal)]
    off = [float(scores[:, j].min()) - 1.0 for j in range(scores.shape[1])]  # below every score: never refuses
    grids = []
    for j in range(scores.shape[1]):
        pos = scores[answerable, j]
        grids.append([off[j], *(float(np.quantile(pos, q)) for q in np.linspace(0.0, max_false_refusal, 11)[1:])])
    best, best_t = -1.0, off
    for combo in itertools.product(*grids):
        unans, frr = refusal_rates(scores, combo, answerable)
        if frr <= max_false_refusal and unans > best:
            best, best_t = unans, list(combo)
    return best_t


def calibrate(retrieve: Callable[[str], Sequence[Any]], checker: AnswerabilityChecker,
              questions: Sequence[LabelledQuestion], *, max_false_refusal: float = 0.2) -> CalibrationReport:
    """Score every question with every strategy of ``checker``'s spec over ``retrieve(question)``'s top chunks,
    then fit the thresholds. A question that retrieves nothing gets -inf (always refused)."""
    if not 0.0 <= max_false_refusal < 1.0:
        raise InvalidRequestError(f"max_false_refusal must be in [0, 1), got {max_false_refusal}",
                                  param="max_false_refusal")
    specs = checker.config.strategies
    if not specs:
        raise InvalidRequestError("answerability is 'none': name the strategies to calibrate, e.g. 'evidence'",
                                  param="answerability")
    if len(specs) > MAX_JOINT:
        raise InvalidRequestError(f"at most {MAX_JOINT} strategies can be calibrated jointly, got {len(specs)}",
                                  param="answerability")
    if not questions:
        raise InvalidRequestError("no questions to calibrate on", param="questions")
    scores = np.full((len(questions), len(specs)), -np.inf)
    for i, q in enumerate(progress(questions, desc="scoring questions")):
        top = list(retrieve(q.question))[: checker.config.sources]
        if top:
            for j, spec in enumerate(specs):
                try:
                    scores[i, j] = checker.score(spec, q.question, top).score
                except ValueError as e:  # e.g. "llm" without an LLM client: a configuration error
                    raise InvalidRequestError(f"answerability {spec.name!r}: {e}", param="answerability") from e
    answerable = np.array([q.answerable for q in questions])
    thresholds = fit_thresholds(np.where(np.isfinite(scores), scores, -1e9), answerable, max_false_refusal)
    unans, frr = refusal_rates(scores, thresholds, answerable)
    per = tuple(StrategyCalibration(s.name, round(t, 4), auc(scores[answerable, j], scores[~answerable, j]))
                for j, (s, t) in enumerate(zip(specs, thresholds, strict=True)))
    spec = "+".join(f"{c.name}:{c.threshold:.4f}" for c in per)
    parse_strategy(spec)  # what we hand back must be a valid setting
    return CalibrationReport(spec, per, unans, frr, max_false_refusal, int(answerable.sum()),
                             int((~answerable).sum()))


def checker_for(pipeline: Any, strategy: str) -> AnswerabilityChecker:
    """An AnswerabilityChecker with ``pipeline``'s embedder and LLM and its number of checked sources; the
    strategies' names only (calibration sets the thresholds). InvalidRequestError for an unknown strategy."""
    names = "+".join(part.split(":")[0].strip() for part in strategy.split("+"))
    sources = getattr(pipeline.config, "answerability_sources", 3)
    try:
        config = AnswerabilityConfig(strategy=names, sources=sources)
    except ValueError as e:
        raise InvalidRequestError(str(e), param="answerability") from e
    return AnswerabilityChecker(config, llm=pipeline.answerability_judge, embedder=pipeline.embedder)
