"""`aisd eval retrieval`: the public command writes {"results": [{"config", "ndcg@10", ...}]} and prints a table;
a missing split is a clear error listing the splits present. Uses the hashing embedder (no model load)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisd.app.cli import app

TOPICS = {
    "astro": "star galaxy planet orbit telescope nebula comet",
    "bio": "cell protein gene enzyme membrane tissue virus",
    "cook": "flour butter oven bake dough sugar recipe",
    "law": "court judge statute contract appeal verdict lawyer",
}


def make_corpus(root: Path, split: str = "test") -> Path:
    rng = random.Random(0)
    root.mkdir(parents=True)
    docs, queries, qrels = [], [], []
    for t, words in TOPICS.items():
        w = words.split()
        for i in range(6):
            docs.append({"_id": f"{t}{i}", "title": f"{t} {i}", "text": " ".join(rng.choices(w, k=30))})
        for j in range(3):
            queries.append({"_id": f"q-{t}{j}", "text": " ".join(rng.sample(w, 3))})
            qrels += [(f"q-{t}{j}", f"{t}{i}", 1) for i in range(6)]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                                 "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


@pytest.fixture()
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("AISD_EMBED__MODEL", "hashing-128")
    monkeypatch.setenv("AISD_HOME", str(tmp_path / "home"))
    return tmp_path


def test_eval_retrieval_writes_json_and_table(env) -> None:
    data = make_corpus(env / "toy")
    out = env / "out.json"
    r = CliRunner().invoke(app, ["eval", "retrieval", "--data", str(data), "--split", "test", "--configs",
                                 "bm25,dense,hybrid-rrf,hybrid-alpha", "--json", str(out)])
    assert r.exit_code == 0, r.output
    body = json.loads(out.read_text())
    assert [row["config"] for row in body["results"]] == ["bm25", "dense", "hybrid-rrf", "hybrid-alpha"]
    for row in body["results"]:
        assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "precision@10", "latency_ms_p50",
                "latency_ms_p99"} <= set(row)
        assert 0.0 <= row["ndcg@10"] <= 1.0
    bm25 = body["results"][0]
    assert bm25["ndcg@10"] > 0.9 and bm25["recall@100"] == 1.0  # topical words make this easy for BM25
    assert "bm25" in r.output and "ndcg@10" in r.output and body["meta"]["queries"] == 12


def test_rerank_transform_chunks_and_limit(env) -> None:
    data = make_corpus(env / "toy")
    out = env / "out.json"
    r = CliRunner().invoke(app, ["eval", "retrieval", "--data", str(data), "--configs", "bm25", "--transform",
                                 "prf", "--chunk-size", "16", "--limit", "4", "--k", "5", "--json", str(out)])
    assert r.exit_code == 0, r.output
    row = json.loads(out.read_text())["results"][0]
    assert row["config"] == "bm25+prf@16" and row["num_queries"] == 4 and "ndcg@5" in row


def test_missing_split_is_a_clear_error(env) -> None:
    data = make_corpus(env / "toy", split="train")
    r = CliRunner().invoke(app, ["eval", "retrieval", "--data", str(data), "--split", "test", "--configs", "bm25"])
    assert r.exit_code != 0
    assert "splits present: train" in str(r.exception) + r.output


def test_unknown_config(env) -> None:
    data = make_corpus(env / "toy")
    r = CliRunner().invoke(app, ["eval", "retrieval", "--data", str(data), "--configs", "bm25,splade"])
    assert r.exit_code != 0 and "splade" in str(r.exception) + r.output
