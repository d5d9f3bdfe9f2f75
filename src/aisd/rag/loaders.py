"""Document loaders: .txt, .md, .html (boilerplate stripped), .pdf (pypdf, page numbers), .jsonl (BEIR corpus
layout), folders with globs, CPython's ``pydoc_data.topics`` (the demo corpus) and SQuAD 2.0 JSON (evaluation).

Every loader returns ``Document`` records whose ``id`` is stable for the source (the resolved file path, the BEIR
``_id`` or the topic name), so that re-ingesting the same source replaces rather than duplicates it. PDF documents
keep ``pages`` = (page number, start offset) so every chunk can report its page; all documents keep ``source``,
``title`` and ``metadata`` (file suffix, size, modification time ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from aisd.core.errors import CorruptDataError, InvalidRequestError, NotFoundError, UnsupportedError
from aisd.rag.documents import Document

# ---- plain text and markdown -----------------------------------------------------------------------------------

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_MD_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")  # never fails; a best effort for legacy files


def _file_metadata(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path), "filename": path.name, "suffix": path.suffix.lower(), "size": st.st_size,
            "mtime": int(st.st_mtime)}


def load_text(path: Path) -> list[Document]:
    text = _read_text(path)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return [Document(id=str(path), text=text, source=str(path), title=first[:120] or path.stem,
                     metadata=_file_metadata(path))]


def load_markdown(path: Path) -> list[Document]:
    """Markdown stays as written (headings are strong chunk boundaries); the title is the first heading or
    ``title:`` in YAML front matter."""
    text = _read_text(path)
    title = ""
    front = _MD_FRONT_MATTER.match(text)
    if front:
        m = re.search(r"^title:\s*['\"]?(.+?)['\"]?\s*$", front.group(1), re.MULTILINE)
        title = m.group(1) if m else ""
    if not title:
        m = _MD_HEADING.search(text)
        title = m.group(1) if m else path.stem
    return [Document(id=str(path), text=text, source=str(path), title=title, metadata=_file_metadata(path))]


# ---- HTML --------------------------------------------------------------------------------------------------------

# Boilerplate: containers whose whole content is dropped (navigation, page chrome, code that is not prose).
_DROP_TAGS = {"script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template", "svg",
              "iframe", "button", "select", "head"}
_BLOCK_TAGS = {"p", "div", "section", "article", "main", "br", "li", "ul", "ol", "table", "tr", "h1", "h2", "h3",
               "h4", "h5", "h6", "pre", "blockquote", "dd", "dt", "dl", "hr", "figure", "figcaption", "title"}
_VOID_TAGS = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr"}
_BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}


class _HTMLText(HTMLParser):
    """Collects visible prose; skips boilerplate subtrees; keeps block structure as blank lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.h1 = ""
        self._stack: list[str] = []
        self._skip_at: int | None = None  # stack depth of the dropped subtree we are inside, if any

    @property
    def _skipping(self) -> bool:
        return self._skip_at is not None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            if tag in _BLOCK_TAGS and not self._skipping:
                self.parts.append("\n")
            return
        role = dict(attrs).get("role") or ""
        self._stack.append(tag)
        if not self._skipping and (tag in _DROP_TAGS or role in _BOILERPLATE_ROLES):
            self._skip_at = len(self._stack) - 1
        if self._skipping:
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n" if tag in {"li", "tr", "dd", "dt"} else "\n\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS or tag not in self._stack:
            return  # void element or a stray end tag in sloppy HTML
        while self._stack and self._stack.pop() != tag:  # close implicitly-closed children too
            pass
        if self._skip_at is not None and len(self._stack) <= self._skip_at:
            self._skip_at = None
            return
        if not self._skipping and tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] == "title":
            self.title += data  # <title> sits in the dropped <head>
            return
        if self._skipping:
            return
        if "h1" in self._stack:
            self.h1 += data
        self.parts.append(data)

    def text(self) -> str:
        raw = "".join(self.parts)
        lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in raw.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(html: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page with nav/header/footer/script/style and similar chrome removed."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    title = " ".join(parser.title.split()) or " ".join(parser.h1.split())
    return title, parser.text()


def load_html(path: Path) -> list[Document]:
    title, text = html_to_text(_read_text(path))
    return [Document(id=str(path), text=text, source=str(path), title=title or path.stem,
                     metadata=_file_metadata(path))]


# ---- PDF ---------------------------------------------------------------------------------------------------------

def load_pdf(path: Path) -> list[Document]:
    """One document per PDF; ``pages`` maps 1-based page numbers to their start offset in the joined text."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError) as e:
        raise CorruptDataError(f"cannot read PDF {path}: {e}") from e
    parts: list[str] = []
    pages: list[tuple[int, int]] = []
    offset = 0
    for number, page_text in enumerate(texts, start=1):
        if parts:
            parts.append("\n\n")
            offset += 2
        pages.append((number, offset))
        parts.append(page_text)
        offset += len(page_text)
    text = "".join(parts)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    meta = {**_file_metadata(path), "num_pages": len(texts)}
    return [Document(id=str(path), text=text, source=str(path), title=str(meta_title) or first[:120] or path.stem,
                     metadata=meta, pages=tuple(pages))]


# ---- BEIR jsonl --------------------------------------------------------------------------------------------------

def iter_beir_corpus(path: Path) -> Iterator[Document]:
    """Documents of a BEIR ``corpus.jsonl``: one JSON object per line with ``_id``, ``title``, ``text`` (other
    keys go to metadata)."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorruptDataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict) or "text" not in row:
                raise CorruptDataError(f"{path}:{lineno}: expected an object with '_id' and 'text' (BEIR layout)")
            doc_id = str(row.get("_id", row.get("id", f"{path.name}:{lineno}")))
            extra = {k: v for k, v in row.items() if k not in {"_id", "id", "title", "text"}}
            meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else extra
            yield Document(id=doc_id, text=str(row["text"]), source=str(path), title=str(row.get("title") or ""),
                           metadata=dict(meta))


def load_jsonl(path: Path) -> list[Document]:
    return list(iter_beir_corpus(path))


# ---- dispatch and folders ----------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[[Path], list[Document]]] = {
    ".txt": load_text, ".text": load_text, ".rst": load_text,
    ".md": load_markdown, ".markdown": load_markdown,
    ".html": load_html, ".htm": load_html,
    ".pdf": load_pdf,
    ".jsonl": load_jsonl,
}


def supported_suffixes() -> list[str]:
    return sorted(LOADERS)


def load_file(path: str | Path) -> list[Document]:
    """Load one file by its suffix; raises UnsupportedError for unknown types."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise NotFoundError(f"no such file: {p}", param="path")
    loader = LOADERS.get(p.suffix.lower())
    if loader is None:
        raise UnsupportedError(f"cannot load {p.name}: unsupported file type {p.suffix or '(none)'}; supported: "
                               f"{', '.join(supported_suffixes())}", param="path")
    return loader(p)


def list_files(root: str | Path, glob: str | None = None) -> list[Path]:
    """Files under a folder matching ``glob`` (default: every supported type, recursively), sorted, hidden
    files and folders skipped."""
    r = Path(root).expanduser().resolve()
    if not r.is_dir():
        raise NotFoundError(f"no such folder: {r}", param="path")
    if glob:
        candidates = r.glob(glob)
    else:
        candidates = (p for p in r.rglob("*") if p.suffix.lower() in LOADERS)
    files = [p for p in candidates if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(r).parts)]
    return sorted(files)


@dataclass(frozen=True)
class LoadedSource:
    """What a path expanded to: the documents, the files read, and the scope that owns them (for deletions)."""

    documents: list[Document]
    files: list[Path]
    scope: str  # "<resolved root>" for a file or folder (with "|glob" when a glob was given)
    failed: tuple[tuple[str, str], ...] = ()  # (file, reason) for files skipped with on_error="skip"


def load_path(path: str | Path, glob: str | None = None, *, on_error: str = "raise") -> LoadedSource:
    """Load a file or every matching file of a folder. ``on_error`` = "raise" | "skip" (unreadable or corrupt
    files are left out; ``LoadedSource.failed`` lists them with the reason)."""
    if on_error not in {"raise", "skip"}:
        raise ValueError(f"on_error must be one of: raise, skip; got {on_error!r}")
    p = Path(path).expanduser().resolve()
    if p.is_file():
        if glob:
            raise InvalidRequestError("glob applies to folders only; got a file path", param="glob")
        return LoadedSource(load_file(p), [p], str(p))
    files = list_files(p, glob)
    docs: list[Document] = []
    failed: list[tuple[str, str]] = []
    for f in files:
        try:
            docs.extend(load_file(f))
        except (CorruptDataError, UnsupportedError) as e:
            if on_error == "raise":
                raise
            failed.append((str(f), str(e)))
    return LoadedSource(docs, files, f"{p}|{glob}" if glob else str(p), tuple(failed))


# ---- bundled corpora ---------------------------------------------------------------------------------------------

def load_pydoc_topics(topics: list[str] | None = None, *, limit: int | None = None) -> list[Document]:
    """CPython's ``pydoc_data.topics`` (the language reference topics behind ``help('assert')``): one document
    per topic, title from its first line, in sorted topic order; ``topics`` picks some, ``limit`` keeps the first
    N (the demo limits the corpus to stay fast on two cores)."""
    from pydoc_data.topics import topics as all_topics

    names = sorted(all_topics) if topics is None else topics
    unknown = [t for t in names if t not in all_topics]
    if unknown:
        raise NotFoundError(f"unknown pydoc topics: {', '.join(unknown)}", param="topics")
    if limit is not None:
        names = names[:limit]
    docs = []
    for name in names:
        text = all_topics[name].strip()
        title = text.splitlines()[0].strip() if text else name
        docs.append(Document(id=f"pydoc:{name}", text=text, source=f"pydoc_data.topics[{name!r}]", title=title,
                             metadata={"topic": name}))
    return docs


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # gold answer texts (several annotators); empty for unanswerable questions
    answerable: bool
    doc_id: str  # the paragraph the question was written about


@dataclass(frozen=True)
class SquadData:
    documents: list[Document]  # one per paragraph: id "<title>#<n>"
    questions: list[SquadQuestion]


def load_squad(path: str | Path) -> SquadData:
    """SQuAD 1.1 / 2.0 JSON (a file, or a folder holding one ``*.json``): every paragraph becomes a Document and
    every question keeps its gold answers and its paragraph id (its relevant document)."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = sorted(p.glob("*.json"))
        if not files:
            raise NotFoundError(f"no SQuAD .json file in {p}", param="data")
        p = files[0]
    if not p.is_file():
        raise NotFoundError(f"no such file: {p}", param="data")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        articles = raw["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CorruptDataError(f"{p} is not SQuAD JSON (expected {{'data': [articles]}}): {e}") from e
    docs: list[Document] = []
    questions: list[SquadQuestion] = []
    for article in articles:
        title = str(article.get("title", "")).replace("_", " ")
        for n, para in enumerate(article.get("paragraphs", [])):
            doc_id = f"{title}#{n}"
            docs.append(Document(id=doc_id, text=para["context"], source=str(p), title=title,
                                 metadata={"article": title, "paragraph": n}))
            for qa in para.get("qas", []):
                impossible = bool(qa.get("is_impossible", False))
                golds = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []))) if not impossible else ()
                questions.append(SquadQuestion(id=str(qa["id"]), question=qa["question"], answers=golds,
                                               answerable=not impossible, doc_id=doc_id))
    return SquadData(docs, questions)
