"""Evaluation data in BEIR layout (Thakur et al. 2021) and a SQuAD 2.0 -> BEIR adapter.

BEIR layout: ``corpus.jsonl`` ({"_id", "title", "text"}), ``queries.jsonl`` ({"_id", "text"}) and
``qrels/<split>.tsv`` (``query-id corpus-id score``, with a header line). Only queries that have qrels in the chosen
split are kept. SQuAD 2.0: each paragraph becomes a document (title = the article title), each answerable question a
query whose one relevant document is its paragraph; unanswerable questions have no relevant paragraph by design and
are kept out of the retrieval qrels (they are returned separately for generation tests of "not in the sources").
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aisd.core.errors import CorruptDataError, InvalidRequestError, NotFoundError


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """What gets indexed for whole-document retrieval: title and text joined by a space (as BEIR does)."""
        return doc_text(self.title, self.text)


def doc_text(title: str, text: str) -> str:
    return f"{title} {text}".strip() if title else text.strip()


@dataclass(frozen=True)
class BeirDataset:
    name: str
    corpus: dict[str, BeirDoc]
    queries: dict[str, str]  # query id -> text (only those with qrels in ``split``)
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: grade}
    split: str
    extra_queries: dict[str, str] = field(default_factory=dict)  # e.g. SQuAD's unanswerable questions

    def subset(self, limit: int | None) -> BeirDataset:
        """The first ``limit`` queries (in file order) and their qrels; the corpus is unchanged."""
        if limit is None or limit >= len(self.queries):
            return self
        if limit < 1:
            raise InvalidRequestError(f"limit must be >= 1, got {limit}", param="limit")
        keep = list(self.queries)[:limit]
        return BeirDataset(self.name, self.corpus, {q: self.queries[q] for q in keep},
                           {q: self.qrels[q] for q in keep}, self.split, self.extra_queries)


def _jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise CorruptDataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e


def available_splits(data_dir: str | Path) -> list[str]:
    qdir = Path(data_dir) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if not row or (lineno == 1 and not row[-1].lstrip("-").isdigit()):
                continue  # blank line or the header
            if len(row) == 4:  # TREC qrels: qid 0 docid grade
                row = [row[0], row[2], row[3]]
            if len(row) != 3:
                raise CorruptDataError(f"{path}:{lineno}: expected 'query-id corpus-id score', got {row}")
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError as e:
                raise CorruptDataError(f"{path}:{lineno}: score {row[2]!r} is not an integer") from e
    return qrels


def load_beir(data_dir: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder. A missing split raises NotFoundError naming the splits that exist."""
    root = Path(data_dir)
    if not root.is_dir():
        raise NotFoundError(f"no data folder at {root}")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise NotFoundError(f"{root} is not in BEIR layout: {name} is missing (expected corpus.jsonl, "
                                f"queries.jsonl and qrels/<split>.tsv)")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        present = available_splits(root)
        raise NotFoundError(f"split {split!r} not found in {root / 'qrels'}; splits present: "
                            f"{', '.join(present) if present else 'none'}", param="split")
    corpus = {str(d["_id"]): BeirDoc(str(d["_id"]), d.get("title") or "", d.get("text") or "")
              for d in _jsonl(root / "corpus.jsonl")}
    qrels = load_qrels(qrels_path)
    queries = {str(q["_id"]): q.get("text") or "" for q in _jsonl(root / "queries.jsonl")}
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise CorruptDataError(f"{qrels_path}: {len(missing)} query ids have no text in queries.jsonl "
                               f"(first: {missing[0]!r})")
    kept = {q: t for q, t in queries.items() if q in qrels}
    return BeirDataset(root.name, corpus, kept, {q: qrels[q] for q in kept}, split)


def load_squad_as_beir(path: str | Path) -> BeirDataset:
    """SQuAD 2.0 JSON -> BEIR: paragraphs are documents, answerable questions queries (their paragraph relevant)."""
    p = Path(path)
    if p.is_dir():
        candidates = sorted(p.glob("*.json"))
        if not candidates:
            raise NotFoundError(f"no SQuAD JSON file in {p}")
        p = candidates[0]
    try:
        data = json.loads(p.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as e:
        raise CorruptDataError(f"{p} is not a SQuAD 2.0 JSON file: {e}") from e
    corpus: dict[str, BeirDoc] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    unanswerable: dict[str, str] = {}
    for a_i, article in enumerate(data):
        title = str(article.get("title", "")).replace("_", " ")
        for p_i, para in enumerate(article["paragraphs"]):
            doc_id = f"{a_i}-{p_i}"
            corpus[doc_id] = BeirDoc(doc_id, title, para["context"])
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    unanswerable[qa["id"]] = qa["question"]
                    continue
                queries[qa["id"]] = qa["question"]
                qrels[qa["id"]] = {doc_id: 1}
    return BeirDataset("squad2", corpus, queries, qrels, "dev", unanswerable)


def load_dataset(data: str | Path, split: str = "test") -> BeirDataset:
    """A BEIR folder, or a SQuAD 2.0 JSON file / folder holding one (detected by content)."""
    p = Path(data)
    if p.is_file() and p.suffix == ".json":
        return load_squad_as_beir(p)
    if p.is_dir() and not (p / "corpus.jsonl").exists() and list(p.glob("*.json")):
        return load_squad_as_beir(p)
    return load_beir(p, split)
