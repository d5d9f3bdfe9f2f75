"""Benchmark: aisd.vector against raw FAISS on >= 50,000 real text embeddings (placeholder; the full script follows)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache"
_SPLIT = re.compile(r'(?<=[.!?])\s+(?=[A-Z0-9(\["])')


def corpus_sentences(data: Path = DATA) -> tuple[list[str], list[str]]:
    """Sentences of SciFact abstracts (+ titles) and SQuAD paragraphs; queries = SciFact claims + SQuAD questions."""
    sents: list[str] = []
    for line in (data / "scifact" / "corpus.jsonl").open(encoding="utf-8"):
        doc = json.loads(line)
        sents.append(doc["title"])
        sents += [s for s in _SPLIT.split(doc["text"]) if len(s.split()) >= 3]
    squad = json.loads((data / "squad2-dev" / "dev-v2.0.json").read_text(encoding="utf-8"))
    questions: list[str] = []
    for article in squad["data"]:
        for para in article["paragraphs"]:
            sents += [s for s in _SPLIT.split(para["context"]) if len(s.split()) >= 3]
            questions += [qa["question"] for qa in para["qas"]]
    claims = [json.loads(line)["text"] for line in (data / "scifact" / "queries.jsonl").open(encoding="utf-8")]
    return sents, claims + questions


def embed_cached(texts: list[str], name: str, chunk: int = 2048) -> np.ndarray:
    """Embed with the bundled MiniLM, normalised, caching each chunk so an interrupted run resumes."""
    out = CACHE / f"{name}.npy"
    if out.exists():
        return np.load(out)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from aisd.assets import resolve

    torch.set_num_threads(int(os.environ.get("BENCH_EMBED_THREADS", "2")))
    model = SentenceTransformer(str(resolve("all-minilm-l6-v2")), device="cpu")
    parts = []
    for start in range(0, len(texts), chunk):
        part_file = CACHE / f"{name}.part{start // chunk:04d}.npy"
        if part_file.exists():
            parts.append(np.load(part_file))
            continue
        t0 = time.perf_counter()
        emb = model.encode(texts[start:start + chunk], batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True).astype(np.float32)
        np.save(part_file, emb)
        parts.append(emb)
        print(f"{name}: {start + len(emb)}/{len(texts)} ({len(emb) / (time.perf_counter() - t0):.0f}/s)",
              file=sys.stderr, flush=True)
    mat = np.concatenate(parts)
    np.save(out, mat)
    for p in CACHE.glob(f"{name}.part*.npy"):
        p.unlink()
    return mat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--embed-only", action="store_true")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    sents, queries = corpus_sentences()
    print(f"{len(sents)} sentences, {len(queries)} queries", file=sys.stderr)
    embed_cached(queries[:2000:1], "vector_ann_queries")
    embed_cached(sents, "vector_ann_corpus")
    if args.embed_only:
        return


if __name__ == "__main__":
    main()
