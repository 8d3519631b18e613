"""Heading-aware chunking: a loaded document -> passages that quote it exactly.

Chunks follow the document's headings: a section's body is cut at paragraph, line, sentence and
finally word boundaries into pieces of at most :data:`MAX_CHARS` characters, with no overlap. Each
chunk's stored text is exactly ``document.text[start:end]``, so a citation can quote the passage.
What is embedded (and indexed for BM25) is the chunk prefixed with its title and section path.

Chunk ids are deterministic: a hash of the source, the title, the section path and the chunk's
text (plus its occurrence number when the same passage repeats).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from knowledge.loaders import LoadedDocument, Section
from tools.text_safety import neutralise_lines

MAX_CHARS = 800  # MiniLM reads 256 word pieces; 800 characters plus the title prefix fit
MIN_CHARS = 200  # a shorter trailing piece is merged into the one before when that still fits


@dataclass(frozen=True)
class Chunk:
    """One passage of a document, with everything a citation needs."""

    id: str
    text: str  # == document text[start:end]
    start: int
    end: int
    section: str  # "Heading > Subheading"
    page: int | None
    embed_text: str  # title and section path + text: what the models see


_PARA = re.compile(r"\n[ \t]*\n")
_SENT = re.compile(r"(?<=[.!?;])\s+")


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split(text: str, start: int, end: int, pattern: re.Pattern[str] | None) -> list[tuple[int, int]]:
    """Spans of text[start:end] between separators (separators dropped, spans trimmed)."""
    out: list[tuple[int, int]] = []
    pos = start
    if pattern is not None:
        for m in pattern.finditer(text, start, end):
            s, e = _trim(text, pos, m.start())
            if e > s:
                out.append((s, e))
            pos = m.end()
    s, e = _trim(text, pos, end)
    if e > s:
        out.append((s, e))
    return out


def _hard_split(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Cut at the last whitespace before ``limit`` characters (mid-word only when there is none)."""
    out = []
    while end - start > limit:
        cut = text.rfind(" ", start + limit // 2, start + limit)
        if cut <= start:
            cut = start + limit
        s, e = _trim(text, start, cut)
        if e > s:
            out.append((s, e))
        start = cut
    s, e = _trim(text, start, end)
    if e > s:
        out.append((s, e))
    return out


def _units(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Smallest-needed pieces: paragraphs, then lines, then sentences, then words, each <= limit."""
    levels: list[re.Pattern[str]] = [_PARA, re.compile(r"\n"), _SENT]

    def rec(s: int, e: int, level: int) -> list[tuple[int, int]]:
        if e - s <= limit:
            return [(s, e)]
        if level >= len(levels):
            return _hard_split(text, s, e, limit)
        out: list[tuple[int, int]] = []
        for ps, pe in _split(text, s, e, levels[level]):
            out.extend(rec(ps, pe, level + 1))
        return out

    return rec(start, end, 0)


def chunk_spans(text: str, start: int, end: int, limit: int = MAX_CHARS) -> list[tuple[int, int]]:
    """Spans of at most ``limit`` characters covering text[start:end], cut at the most natural
    boundary available and packed greedily (neighbouring units are joined while they fit)."""
    start, end = _trim(text, start, end)
    if end <= start:
        return []
    if end - start <= limit:
        return [(start, end)]
    packed: list[tuple[int, int]] = []
    for s, e in _units(text, start, end, limit):
        if packed and e - packed[-1][0] <= limit:
            packed[-1] = (packed[-1][0], e)
        else:
            packed.append((s, e))
    if len(packed) > 1 and packed[-1][1] - packed[-1][0] < MIN_CHARS \
            and packed[-1][1] - packed[-2][0] <= limit * 5 // 4:
        last = packed.pop()
        packed[-1] = (packed[-1][0], last[1])
    return packed


def section_label(path: Sequence[str], page: int | None) -> str:
    label = " > ".join(path)
    if page is not None:
        label = f"{label} (p. {page})" if label else f"p. {page}"
    return label


def _same_heading(heading: str, title: str) -> bool:
    """True when a document's top heading only repeats its title (then it is left out of paths)."""
    a, b = heading.strip().lower(), title.strip().lower()
    return bool(a) and (a in b or b in a)


def make_chunks(doc: LoadedDocument, source: str, limit: int = MAX_CHARS) -> list[Chunk]:
    """Heading-aware chunks of a loaded document with deterministic ids."""
    title = str(doc.meta.get("title", ""))
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    sections: Iterable[Section] = doc.sections or [Section(0, len(doc.text), ())]
    for section in sections:
        path = section.path
        if len(path) > 1 and _same_heading(path[0], title):
            path = path[1:]
        label = section_label(path, section.page)
        for s, e in chunk_spans(doc.text, section.start, section.end, limit):
            passage = neutralise_lines(doc.text[s:e])  # stored text is data: instructions never reach a prompt
            heading = neutralise_lines(" > ".join(x for x in (title, " > ".join(path)) if x))
            embed_text = f"{heading}\n{passage}" if heading else passage
            digest = hashlib.sha256(f"{title}\x00{label}\x00{passage}".encode("utf-8", "surrogatepass")).hexdigest()
            n = seen.get(digest, 0)
            seen[digest] = n + 1
            cid = hashlib.sha256(f"{source}\x00{digest}\x00{n}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
            chunks.append(Chunk(cid, passage, s, e, label, section.page, embed_text))
    return chunks
