"""BEIR-layout loading (splits, header lines, clear errors) and the SQuAD 2.0 -> BEIR adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisd.core.errors import CorruptDataError, NotFoundError
from aisd.evals.beir import available_splits, load_beir, load_dataset, load_squad_as_beir


def make_beir(root: Path, split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    docs = [{"_id": "d1", "title": "Cats", "text": "Cats purr."}, {"_id": "d2", "title": "", "text": "Dogs bark."},
            {"_id": "d3", "title": "Birds", "text": "Birds sing."}]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    qs = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}, {"_id": "q3", "text": "unjudged"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in qs))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n")
    return root


def test_load_beir(tmp_path: Path) -> None:
    ds = load_beir(make_beir(tmp_path / "toy"), "test")
    assert ds.name == "toy" and len(ds.corpus) == 3
    assert ds.queries == {"q1": "what purrs", "q2": "what barks"}  # only judged queries
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert ds.corpus["d1"].full_text == "Cats Cats purr."
    assert ds.corpus["d2"].full_text == "Dogs bark."
    assert ds.subset(1).queries == {"q1": "what purrs"}


def test_missing_split_lists_present_ones(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "toy", split="train")
    assert available_splits(root) == ["train"]
    with pytest.raises(NotFoundError, match="split 'test' not found.*splits present: train"):
        load_beir(root, "test")
    with pytest.raises(NotFoundError, match="corpus.jsonl"):
        load_beir(tmp_path, "test")


def test_corrupt_lines_are_named(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "toy")
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{broken\n')
    with pytest.raises(CorruptDataError, match="corpus.jsonl:2"):
        load_beir(root, "test")


def test_squad_adapter(tmp_path: Path) -> None:
    squad = {"version": "v2.0", "data": [{"title": "Super_Bowl", "paragraphs": [
        {"context": "The game was played in Santa Clara.", "qas": [
            {"id": "a", "question": "Where was the game?", "answers": [{"text": "Santa Clara", "answer_start": 23}],
             "is_impossible": False},
            {"id": "b", "question": "Who sang?", "answers": [], "is_impossible": True}]},
        {"context": "Denver won.", "qas": [
            {"id": "c", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 0}]}]}]}]}
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps(squad))
    ds = load_squad_as_beir(path)
    assert ds.qrels == {"a": {"0-0": 1}, "c": {"0-1": 1}}
    assert ds.extra_queries == {"b": "Who sang?"}  # unanswerable: kept out of retrieval qrels
    assert ds.corpus["0-0"].full_text == "Super Bowl The game was played in Santa Clara."
    assert load_dataset(path).qrels == ds.qrels and load_dataset(tmp_path).name == "squad2"


def test_shared_scifact_train(shared_data: Path) -> None:
    ds = load_beir(shared_data / "scifact", "train")
    assert len(ds.corpus) == 5183 and len(ds.queries) == 809
    assert sum(len(v) for v in ds.qrels.values()) == 919
