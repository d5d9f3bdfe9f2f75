"""Loaders: txt, md, html (boilerplate stripped), pdf (pages), BEIR jsonl, folders + globs, pydoc topics, SQuAD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisd.core.errors import CorruptDataError, NotFoundError, UnsupportedError
from aisd.rag.loaders import (
    html_to_text,
    list_files,
    load_file,
    load_path,
    load_pydoc_topics,
    load_squad,
)


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF (Helvetica text, one line per page) with a correct xref table."""
    objects: list[bytes] = []
    n = len(pages)
    font_id = 3 + 2 * n
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        objects.append(b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_text_and_markdown(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\n\nFirst line here\nsecond line\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("---\ntitle: 'Front Title'\n---\n# Heading\nBody text.\n", encoding="utf-8")
    (tmp_path / "c.md").write_text("intro\n\n## Sub heading ##\ntext\n", encoding="utf-8")
    [a] = load_file(tmp_path / "a.txt")
    assert a.title == "First line here" and a.text.startswith("\n\nFirst") and a.source == str(tmp_path / "a.txt")
    assert a.id == str((tmp_path / "a.txt").resolve()) and a.metadata["suffix"] == ".txt"
    assert load_file(tmp_path / "b.md")[0].title == "Front Title"
    assert load_file(tmp_path / "c.md")[0].title == "Sub heading"


def test_html_boilerplate_is_stripped() -> None:
    html = """<html><head><title>Page  Title</title><style>body{color:red}</style>
    <script>var secret = 1;</script></head><body>
    <header><a href="/">Home</a> | <a>Login</a></header>
    <nav><ul><li>Menu item</li></ul></nav>
    <div role="navigation">breadcrumbs</div>
    <main><h1>Main heading</h1><p>The first &amp; only <b>paragraph</b>.</p>
    <ul><li>point one</li><li>point two</li></ul><br>tail text</main>
    <aside>related links</aside><footer>Copyright 2024</footer>
    <script>track()</script></body></html>"""
    title, text = html_to_text(html)
    assert title == "Page Title"
    for gone in ("secret", "Home", "Login", "Menu item", "breadcrumbs", "related links", "Copyright", "track",
                 "color:red"):
        assert gone not in text
    assert "The first & only paragraph." in text
    assert "- point one" in text and "- point two" in text and "tail text" in text
    assert text.startswith("Main heading")


def test_html_sloppy_markup_does_not_leak_or_crash() -> None:
    title, text = html_to_text("<body><p>open para<div>inner</p> after <nav>menu<p>x</nav> end</body>")
    assert "menu" not in text and "x" not in text.split() and "end" in text and "inner" in text


def test_pdf_pages_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(make_pdf(["Alpha page one", "Beta page two", "Gamma page three"]))
    [doc] = load_file(path)
    assert [p for p, _ in doc.pages] == [1, 2, 3]
    for number, word in ((1, "Alpha"), (2, "Beta"), (3, "Gamma")):
        offset = doc.text.index(word)
        assert doc.page_at(offset) == number
    assert doc.metadata["num_pages"] == 3


def test_corrupt_pdf_raises_or_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (tmp_path / "ok.txt").write_text("fine", encoding="utf-8")
    with pytest.raises(CorruptDataError):
        load_path(tmp_path, on_error="raise")
    loaded = load_path(tmp_path, on_error="skip")
    assert [d.text for d in loaded.documents] == ["fine"]
    assert loaded.failed and loaded.failed[0][0].endswith("bad.pdf")


def test_beir_jsonl(tmp_path: Path) -> None:
    rows = [{"_id": "d1", "title": "T1", "text": "one"}, {"_id": "d2", "title": "", "text": "two", "year": 2020}]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    docs = load_file(path)
    assert [(d.id, d.title, d.text) for d in docs] == [("d1", "T1", "one"), ("d2", "", "two")]
    assert docs[1].metadata == {"year": 2020}
    path.write_text('{"_id": "x", "text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(CorruptDataError, match=":2:"):
        load_file(path)


def test_folder_glob_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "a.md").write_text("# A", encoding="utf-8")
    (tmp_path / "sub" / "b.txt").write_text("B", encoding="utf-8")
    (tmp_path / "sub" / "c.md").write_text("# C", encoding="utf-8")
    (tmp_path / ".git" / "d.md").write_text("# D", encoding="utf-8")
    (tmp_path / "e.bin").write_bytes(b"\x00")
    names = [p.name for p in list_files(tmp_path)]
    assert names == ["a.md", "b.txt", "c.md"]
    assert [p.name for p in list_files(tmp_path, "**/*.md")] == ["a.md", "c.md"]
    loaded = load_path(tmp_path, "*.md")
    assert [d.title for d in loaded.documents] == ["A"] and loaded.scope.endswith("|*.md")
    with pytest.raises(UnsupportedError):
        load_file(tmp_path / "e.bin")
    with pytest.raises(NotFoundError):
        load_path(tmp_path / "missing")


def test_pydoc_topics() -> None:
    docs = load_pydoc_topics(["assert", "break"])
    assert [d.id for d in docs] == ["pydoc:assert", "pydoc:break"]
    assert "assert" in docs[0].title.lower() and "AssertionError" in docs[0].text
    assert len(load_pydoc_topics(limit=3)) == 3
    with pytest.raises(NotFoundError):
        load_pydoc_topics(["no-such-topic"])


def test_squad_loader(tmp_path: Path) -> None:
    data = {"version": "v2.0", "data": [{"title": "Big_Cats", "paragraphs": [{"context": "Lions live in Africa.", "qas": [
        {"id": "q1", "question": "Where do lions live?", "is_impossible": False,
         "answers": [{"text": "Africa", "answer_start": 14}, {"text": "Africa", "answer_start": 14},
                     {"text": "in Africa", "answer_start": 11}]},
        {"id": "q2", "question": "Where do tigers live?", "is_impossible": True, "answers": [],
         "plausible_answers": [{"text": "Africa", "answer_start": 14}]}]}]}]}
    (tmp_path / "dev.json").write_text(json.dumps(data), encoding="utf-8")
    squad = load_squad(tmp_path)
    assert [d.id for d in squad.documents] == ["Big Cats#0"]
    q1, q2 = squad.questions
    assert q1.answers == ("Africa", "in Africa") and q1.answerable and q1.doc_id == "Big Cats#0"
    assert q2.answers == () and not q2.answerable
