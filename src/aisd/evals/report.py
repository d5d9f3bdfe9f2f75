"""Reporting retrieval results: a fixed-width text table and the JSON document ``aisd eval retrieval --json``
writes (``{"results": [{"config", "ndcg@10", "recall@10", ..., "latency_ms_p50", "latency_ms_p99"}], "meta": {...}}``).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aisd.evals.runner import ConfigResult

DEFAULT_COLUMNS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "precision@10", "map", "latency_ms_p50",
                   "latency_ms_p99")


def columns_for(results: Sequence[ConfigResult], k: int = 10) -> list[str]:
    """The table's metric columns: nDCG/recall/MRR/precision at ``k``, recall@100, MAP, latency p50/p99."""
    cols = [f"ndcg@{k}", f"recall@{k}", "recall@100", f"mrr@{k}", f"precision@{k}", "map",
            "latency_ms_p50", "latency_ms_p99"]
    present = set(results[0].row()) if results else set(cols)
    return [c for c in dict.fromkeys(cols) if c in present]


def format_table(results: Sequence[ConfigResult], k: int = 10, title: str | None = None) -> str:
    """Plain-text table, one row per configuration (for logs and benchmark output)."""
    cols = columns_for(results, k)
    rows = [[r.config] + [f"{r.row()[c]:.4f}" if not c.startswith("latency") else f"{r.row()[c]:.2f}"
                          for c in cols] for r in results]
    header = ["config", *cols]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def to_json(results: Sequence[ConfigResult], **meta: Any) -> dict[str, Any]:
    return {"results": [r.row() for r in results], "meta": {**meta, "machine": machine_info()}}


def write_json(path: str | Path, results: Sequence[ConfigResult], **meta: Any) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_json(results, **meta), indent=2) + "\n", encoding="utf-8")
    return p
