"""Offline metric reports: model-evaluation numbers (accuracy, F1, BLEU ...) attached to an experiment's variants.

Online experiments answer "did users do better"; offline evaluations answer "is the model better on a fixed set".
A report stores both side by side in the analysis. The small metric functions here let a user compute a report from
predictions without another dependency; the evals system can attach its own numbers the same way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aisd.core.errors import InvalidRequestError


@dataclass(frozen=True)
class OfflineReport:
    """``metrics``: variant -> metric -> value, e.g. {"control": {"accuracy": 0.81}, "treatment": {...}}."""

    name: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    n: int | None = None  # evaluation set size
    source: str = ""  # where the numbers come from (data set, eval run id)

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidRequestError("an offline report needs a name", param="name")
        if not isinstance(self.metrics, Mapping) or not self.metrics:
            raise InvalidRequestError("metrics must map variant -> {metric: value}", param="metrics")
        for variant, values in self.metrics.items():
            if not isinstance(values, Mapping):
                raise InvalidRequestError(f"metrics[{variant!r}] must map metric -> value", param="metrics")
            for metric, value in values.items():
                if not isinstance(value, int | float) or not math.isfinite(value):
                    raise InvalidRequestError(f"metrics[{variant!r}][{metric!r}] must be a finite number",
                                              param="metrics")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metrics": self.metrics, "n": self.n, "source": self.source}


def _check_pair(pred: Sequence[Any], gold: Sequence[Any]) -> None:
    if len(pred) != len(gold) or not pred:
        raise InvalidRequestError(f"predictions and references need the same non-zero length, got {len(pred)} and "
                                  f"{len(gold)}", param="references")


def accuracy(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Share of exact matches."""
    _check_pair(predictions, references)
    return sum(p == g for p, g in zip(predictions, references, strict=True)) / len(references)


def f1(predictions: Sequence[Hashable], references: Sequence[Hashable], average: str = "macro",
       positive: Hashable = 1) -> float:
    """F1 = 2PR/(P+R); ``binary`` for ``positive``, ``macro`` = unweighted mean over reference labels (sklearn's)."""
    _check_pair(predictions, references)
    if average not in ("binary", "macro"):
        raise InvalidRequestError("average must be 'binary' or 'macro'", param="average")
    labels = [positive] if average == "binary" else sorted(set(references) | set(predictions), key=str)
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predictions, references, strict=True))
        fp = sum(p == label and g != label for p, g in zip(predictions, references, strict=True))
        fn = sum(p != label and g == label for p, g in zip(predictions, references, strict=True))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU with clipped n-gram precisions and brevity penalty (Papineni et al. 2002, ACL), whitespace tokens.

    Each reference entry may be one string or a list of alternative references. Returns a value in [0, 1].
    """
    _check_pair(hypotheses, references)
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        alts = [refs] if isinstance(refs, str) else list(refs)
        h = hyp.split()
        r_toks = [r.split() for r in alts]
        hyp_len += len(h)
        ref_len += min((len(r) for r in r_toks), key=lambda length: (abs(length - len(h)), length))
        for n in range(1, max_n + 1):
            counts = _ngrams(h, n)
            max_ref: Counter[tuple[str, ...]] = Counter()
            for r in r_toks:
                max_ref |= _ngrams(r, n)
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    if min(matches) == 0 or hyp_len == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)
