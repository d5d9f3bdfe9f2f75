"""Latency budget of one request: network + tokenization + prefill + decode x tokens + post-processing.

Defaults for the fixed parts are the midpoints of the seed's ranges (network 50-100 ms, tokenization 5-10 ms,
post-processing 10-20 ms). Prefill and per-token decode come from the roofline model (``perf``) for a GPU, or from a
benchmark result file of aisd's engine when one is given -- measured numbers win over modelled ones.

Measured file (JSON; ``bench/results/engine_*.json``). Fields read, anywhere in the document (top level, or nested
objects such as ``"results"``/``"summary"``, or the first element of a list), first match wins:
  - TTFT median: ``ttft_ms_median`` | ``ttft_median_ms`` | ``median_ttft_ms`` | ``ttft_p50_ms`` | ``ttft_ms``
    (or the same names with ``_s``: seconds)
  - TPOT median (inter-token latency): ``tpot_ms_median`` | ``tpot_median_ms`` | ``median_tpot_ms`` |
    ``tpot_p50_ms`` | ``tpot_ms`` | ``itl_ms_median`` | ``median_itl_ms`` | ``itl_ms`` (or ``_s``), else
    1000 / ``decode_tokens_per_s`` (per-sequence decode speed)
  - optional context: ``prompt_tokens`` | ``input_len`` | ``prompt_len``; ``batch_size`` | ``concurrency``;
    ``model``; ``device``.
When the file gives ``prompt_tokens`` the measured TTFT is scaled linearly to the requested prompt length.
``row="..."`` selects the result row one of whose string values contains that text (default: the first one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.planner.catalog import GPUSpec, ModelConfig
from aisd.planner.loaders import resolve_model
from aisd.planner.perf import decode_estimate, prefill_estimate

SEED_DEFAULTS_MS = {"network": 75.0, "tokenization": 7.5, "postprocessing": 15.0}
_TTFT_KEYS = ("ttft_ms_median", "ttft_median_ms", "median_ttft_ms", "ttft_p50_ms", "ttft_ms")
_TPOT_KEYS = ("tpot_ms_median", "tpot_median_ms", "median_tpot_ms", "tpot_p50_ms", "tpot_ms", "itl_ms_median",
              "median_itl_ms", "itl_ms")


@dataclass(frozen=True)
class MeasuredEngine:
    """Numbers read from an engine benchmark result file."""

    ttft_ms: float | None
    tpot_ms: float | None
    prompt_tokens: int | None = None
    batch_size: int | None = None
    model: str | None = None
    device: str | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _walk(doc: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``doc``, breadth-first-ish: the top level before nested ones."""
    if depth > 6:
        return
    if isinstance(doc, dict):
        yield doc
        for v in doc.values():
            if isinstance(v, dict | list):
                yield from _walk(v, depth + 1)
    elif isinstance(doc, list) and doc:
        yield from _walk(doc[0], depth + 1)


def _number(obj: dict[str, Any], key: str) -> float | None:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v < 0:
        return None
    return float(v)


def _find_ms(objs: list[dict[str, Any]], keys: tuple[str, ...]) -> float | None:
    for obj in objs:
        for k in keys:
            ms = _number(obj, k)
            if ms is not None:
                return ms
            s = _number(obj, k[:-3] + "_s" if k.endswith("_ms") else k.replace("_ms_", "_s_"))
            if s is not None:
                return s * 1e3
    return None


def _find(objs: list[dict[str, Any]], keys: tuple[str, ...]) -> Any:
    for obj in objs:
        for k in keys:
            if obj.get(k) is not None:
                return obj[k]
    return None


def _all_objects(doc: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every JSON object, including every element of every list (for row selection)."""
    if depth > 6:
        return
    if isinstance(doc, dict):
        yield doc
        for v in doc.values():
            yield from _all_objects(v, depth + 1)
    elif isinstance(doc, list):
        for v in doc:
            yield from _all_objects(v, depth + 1)


def measured_from_dict(doc: Any, source: str = "measured", row: str | None = None) -> MeasuredEngine:
    """``row``: pick the result row one of whose string values contains this text (e.g. ``"inf"`` for the burst
    row of aisd's engine_serving benchmark); by default the first row (the sequential baseline) is used."""
    objs = list(_walk(doc))
    if row:
        wanted = row.lower()
        chosen = next((o for o in _all_objects(doc)
                       if any(isinstance(v, str) and wanted in v.lower() for v in o.values())
                       and any(k in o for k in _TTFT_KEYS + _TPOT_KEYS)), None)
        if chosen is None:
            raise InvalidRequestError(f"{source}: no result row matches {row!r}", param="measured_row")
        objs = [chosen] + [o for o in objs if o is not chosen]
    ttft, tpot = _find_ms(objs, _TTFT_KEYS), _find_ms(objs, _TPOT_KEYS)
    if tpot is None:
        tps = next((v for o in objs if (v := _number(o, "decode_tokens_per_s"))), None)
        tpot = 1e3 / tps if tps else None
    if ttft is None and tpot is None:
        raise InvalidRequestError(f"{source}: no TTFT or TPOT median found (expected e.g. 'ttft_ms_median', "
                                  f"'tpot_ms_median'; see docs/planner.md)", param="measured")
    prompt = _find(objs, ("prompt_tokens", "input_len", "prompt_len"))
    batch = _find(objs, ("batch_size", "concurrency"))
    return MeasuredEngine(ttft_ms=ttft, tpot_ms=tpot,
                          prompt_tokens=int(prompt) if isinstance(prompt, int | float) and prompt > 0 else None,
                          batch_size=int(batch) if isinstance(batch, int | float) and batch > 0 else None,
                          model=str(_find(objs, ("model",)) or "") or None,
                          device=str(_find(objs, ("device",)) or "") or None, source=source)


def load_measured(path: str | Path, row: str | None = None) -> MeasuredEngine:
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"measured benchmark file {str(p)!r} does not exist", param="measured")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRequestError(f"{p}: not valid JSON ({e})", param="measured") from e
    return measured_from_dict(doc, source=str(p), row=row)


@dataclass(frozen=True)
class LatencyItem:
    component: str
    ms: float
    source: str  # "seed default" | "given" | "model: <gpu>" | "measured: <file>"


@dataclass(frozen=True)
class LatencyBudget:
    model: str
    prompt_tokens: int
    output_tokens: int
    items: list[LatencyItem] = field(default_factory=list)
    tpot_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return sum(i.ms for i in self.items)

    @property
    def ttft_ms(self) -> float:
        """Time to first token as the user sees it: everything before decoding starts."""
        return sum(i.ms for i in self.items if i.component in ("network", "tokenization", "prefill"))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "items": [asdict(i) for i in self.items], "tpot_ms": round(self.tpot_ms, 3),
                "ttft_ms": round(self.ttft_ms, 3), "total_ms": round(self.total_ms, 3)}


def latency_budget(model: ModelConfig | str, gpu: GPUSpec | None = None, precision: str = "fp16", *,
                   prompt_tokens: int = 512, output_tokens: int = 256, batch: int = 1, tensor_parallel: int = 1,
                   kv_dtype: str = "fp16", network_ms: float | None = None, tokenization_ms: float | None = None,
                   postprocessing_ms: float | None = None, measured: MeasuredEngine | None = None,
                   mfu: float | None = None, bandwidth_efficiency: float | None = None) -> LatencyBudget:
    """The seed's budget table for one request; needs a GPU for modelled numbers or a measured file (or both)."""
    m = resolve_model(model)
    if prompt_tokens < 1:
        raise InvalidRequestError("prompt_tokens must be >= 1", param="prompt_tokens")
    if output_tokens < 0:
        raise InvalidRequestError("output_tokens must be >= 0", param="output_tokens")
    fixed = {"network": network_ms, "tokenization": tokenization_ms, "postprocessing": postprocessing_ms}
    for name, v in fixed.items():
        if v is not None and v < 0:
            raise InvalidRequestError(f"{name}_ms must be >= 0", param=f"{name}_ms")
    if gpu is None and (measured is None or measured.ttft_ms is None or measured.tpot_ms is None):
        raise InvalidRequestError("give a gpu for modelled prefill/decode times, or a measured engine file with "
                                  "both TTFT and TPOT medians", param="gpu")
    knobs: dict[str, float] = {}
    if mfu is not None:
        knobs["mfu"] = mfu
    if bandwidth_efficiency is not None:
        knobs["bandwidth_efficiency"] = bandwidth_efficiency

    if measured is not None and measured.ttft_ms is not None:
        scale = prompt_tokens / measured.prompt_tokens if measured.prompt_tokens else 1.0
        prefill_ms, prefill_src = measured.ttft_ms * scale, f"measured: {measured.source}" + (
            f" (x{scale:.2f} for {prompt_tokens} vs {measured.prompt_tokens} prompt tokens)" if scale != 1 else "")
    else:
        assert gpu is not None
        est = prefill_estimate(m, gpu, precision, tokens=prompt_tokens, tensor_parallel=tensor_parallel,
                               **{k: v for k, v in knobs.items()})
        prefill_ms, prefill_src = est.time_s * 1e3, f"model: {gpu.id} x{tensor_parallel}, compute-bound"
    if measured is not None and measured.tpot_ms is not None:
        tpot, decode_src = measured.tpot_ms, f"measured: {measured.source}"
    else:
        assert gpu is not None
        est_d = decode_estimate(m, gpu, precision, batch=batch, context=prompt_tokens + max(1, output_tokens // 2),
                                kv_dtype=kv_dtype, tensor_parallel=tensor_parallel, **knobs)
        tpot, decode_src = est_d.step_time_s * 1e3, f"model: {gpu.id} x{tensor_parallel}, batch {batch}, " \
                                                    f"{est_d.bound}-bound"
    items = [
        LatencyItem("network", fixed["network"] if network_ms is not None else SEED_DEFAULTS_MS["network"],
                    "given" if network_ms is not None else "seed default (50-100 ms)"),
        LatencyItem("tokenization", tokenization_ms if tokenization_ms is not None
                    else SEED_DEFAULTS_MS["tokenization"],
                    "given" if tokenization_ms is not None else "seed default (5-10 ms)"),
        LatencyItem("prefill", prefill_ms, prefill_src),
        LatencyItem("decode", tpot * output_tokens, f"{output_tokens} tokens x {tpot:.2f} ms; {decode_src}"),
        LatencyItem("postprocessing", postprocessing_ms if postprocessing_ms is not None
                    else SEED_DEFAULTS_MS["postprocessing"],
                    "given" if postprocessing_ms is not None else "seed default (10-20 ms)"),
    ]
    return LatencyBudget(model=m.id, prompt_tokens=prompt_tokens, output_tokens=output_tokens, items=items,
                         tpot_ms=tpot)
