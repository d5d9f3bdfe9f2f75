"""Answer text checks for cited generation: [n] citation parsing, refusal detection, loop / repeat clean-up and
post-hoc attribution of uncited sentences. Pure functions over strings (no LLM, no embedder)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np


class _Numbered(Protocol):
    number: int
    text: str


_SOURCE_WORDS = r"(?:sources?|context|documents?|text|passages?|information)"
_REFUSAL = re.compile(
    r"not (?:found |mentioned |given |stated |provided |available |covered )?in the (?:provided |given |above )?"
    + _SOURCE_WORDS + r"|" + _SOURCE_WORDS + r" (?:do|does|did)(?: not|n't) (?:say|mention|contain|provide|specify|"
    r"state|include|answer|cover)|could(?: not|n't) find|can(?:not|'t) find|unable to (?:find|answer|determine)|"
    r"no (?:relevant )?information|(?:do not|don't) (?:know|have (?:enough )?information)|is not mentioned|"
    r"unanswerable|cannot be answered|can't be answered",
    re.IGNORECASE)
_CITATION = re.compile(r"\[(\s*\d+(?:\s*[-,\u2013]\s*\d+)*\s*)\]")
_CONTENT_WORD = re.compile(r"[A-Za-z0-9]{3,}")
_STOP = frozenset("the and for are was were with that this from have has had not but its into than then they them "
                  "their there which what when where who whom how why can could would should will also been being "
                  "such these those about over under only other more most some any each".split())


def parse_citations(text: str) -> list[int]:
    """Citation numbers in order of first appearance: [1], [1, 3], [2-4] (ranges expanded, capped at 50 wide)."""
    out: list[int] = []
    for m in _CITATION.finditer(text):
        for part in m.group(1).split(","):
            bounds = re.split(r"[-\u2013]", part.strip())
            a = int(bounds[0])
            b = int(bounds[-1]) if len(bounds) > 1 else a
            for n in range(a, min(b, a + 50) + 1):
                if n not in out:
                    out.append(n)
    return out


def strip_invalid_citations(text: str, valid: set[int]) -> str:
    """Remove citation numbers not in ``valid``; a bracket left empty disappears."""
    def fix(m: re.Match[str]) -> str:
        keep = [n for n in parse_citations(m.group(0)) if n in valid]
        return f"[{', '.join(map(str, keep))}]" if keep else ""

    return re.sub(r"\s+([.,;:!?])", r"\1", _CITATION.sub(fix, text)).strip()


_LOOP = re.compile(r"((?:\S+\s*){1,4}?)\1{4,}")  # a 1-4 word pattern repeated 5+ times in a row
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+(?:\s*\[[\d,\s\-\u2013]+\])*|\n|$)")


def tidy_answer(text: str, truncated: bool) -> tuple[str, dict[str, int]]:
    """Drop sentences that repeat an earlier one (small models loop) and, when generation hit the token limit, the
    unfinished tail after the last complete sentence; the rest of the text (line breaks, lists) is kept as written.
    Returns the text and the counts of what was removed."""
    text = text.strip()
    loop = _LOOP.search(text)  # "(not (not (not (not ..." - a degenerate token loop: cut it and what follows
    looped = 0
    if loop is not None:
        head = text[: loop.start()]
        line_start = head.rfind("\n")
        text = (head[:line_start] if line_start > 0 else head).rstrip()  # the loop's line is not kept
        truncated, looped = True, 1
    out: list[str] = []
    seen: set[str] = set()
    repeats = 0
    cursor = 0
    for m in _SENTENCE.finditer(text):
        if not m.group().strip():
            continue
        key = " ".join(re.findall(r"\w+", _CITATION.sub("", m.group()).lower()))
        if key in seen and len(key.split()) >= 2:  # one-word repeats ("Yes.") can be legitimate
            repeats += 1
            out.append(text[cursor:m.start()].rstrip(" "))
        else:
            seen.add(key)
            out.append(text[cursor:m.end()])
        cursor = m.end()
    out.append(text[cursor:])
    result = "".join(out).strip()
    cut = 0
    if truncated:
        ends = [m.end() for m in re.finditer(r"[.!?](?:\s*\[[\d,\s\-\u2013]+\])*(?=\s|$)", result)]
        if ends and ends[-1] < len(result.rstrip()):
            result, cut = result[: ends[-1]].rstrip(), 1
    result = re.sub(r"[ \t]+\n", "\n", re.sub(r"\n{3,}", "\n\n", result))
    return result, {"repeated_sentences": repeats, "unfinished_sentence": cut, "token_loop": looped}


def is_refusal(text: str) -> bool:
    """True when the answer says the sources do not hold the answer (or is empty)."""
    stripped = text.strip()
    return not stripped or bool(_REFUSAL.search(stripped))


def content_words(text: str) -> set[str]:
    return {w.lower() for w in _CONTENT_WORD.findall(text)} - _STOP


def attribute(text: str, sources: Sequence[_Numbered], min_overlap: float) -> tuple[str, list[int]]:
    """Append [n] to each answer sentence that has no citation, n = the source holding the largest share of the
    sentence's content words (if that share >= min_overlap). Returns the new text and the numbers added."""
    added: list[int] = []
    vocab = [content_words(s.text) for s in sources]
    parts = re.split(r"(?<=[.!?])(\s+)", text)
    out = []
    for part in parts:
        words = content_words(part)
        if part.strip() and words and not _CITATION.search(part):
            shares = np.array([len(words & v) / len(words) for v in vocab])
            best = int(shares.argmax())
            if shares[best] >= min_overlap:
                n = sources[best].number
                stripped = part.rstrip()
                if stripped and stripped[-1] in ".!?":
                    part = f"{stripped[:-1]} [{n}]{stripped[-1]}" + part[len(stripped):]
                else:
                    part = f"{stripped} [{n}]" + part[len(stripped):]
                if n not in added:
                    added.append(n)
        out.append(part)
    return "".join(out), added
