"""PDF loader: the text layer, page by page, with the document's headings kept as sections.

A PDF has no markup, so headings are recognised from how they are set: a line whose text is drawn
in a font clearly larger than the body text (at least :data:`HEADING_SCALE` times the most common
size), or in bold where the body is not, and that reads like a heading (short, not a sentence);
also a line that is only an upper-case label ("FINDINGS:", "IMPRESSION") as reports use them.
Heading sizes give the levels (largest first). A section continues across pages: each page's part
of it is its own :class:`~knowledge.loaders.Section` with that page number, so citations give the
page. Scanned PDFs (no text layer) are refused: OCR is not supported.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge.loaders import REPORT_TITLE, LoadedDocument, Section, markdown_sections, redact
from tools.errors import CorruptFileError, InputError

HEADING_SCALE = 1.15  # a line this much larger than the body text is a heading
MAX_HEADING_CHARS = 100
_LABEL_LINE = re.compile(r"^[ \t]*([A-Z][A-Z0-9 /&()-]{2,40}):?[ \t]*$")
_SENTENCE_END = re.compile(r"[.;,]\s*$")


@dataclass(frozen=True)
class _Style:
    size: float  # effective font size, points
    bold: bool


def _page_styles(page: Any) -> tuple[str, dict[str, _Style], Counter[float]]:
    """The page's text, the style of each text fragment drawn on it, and characters per font size."""
    styles: dict[str, _Style] = {}
    sizes: Counter[float] = Counter()

    def visit(text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        frag = " ".join(text.split())
        if not frag:
            return
        scale = math.hypot(float(tm[2]), float(tm[3])) * math.hypot(float(cm[2]), float(cm[3]))
        effective = round(float(size) * (scale or 1.0), 1)
        name = str((font or {}).get("/BaseFont", "")).lower()
        bold = any(w in name for w in ("bold", "black", "heavy", "semibold"))
        styles[frag] = _Style(max(effective, styles[frag].size) if frag in styles else effective, bold)
        sizes[effective] += len(frag)

    text = page.extract_text(visitor_text=visit) or ""
    return text.replace("\r\n", "\n").replace("\r", "\n"), styles, sizes


def _is_heading(line: str, style: _Style | None, body: _Style) -> float | None:
    """The heading's size (its level key) when ``line`` is a heading, else None."""
    text = " ".join(line.split())
    if not text or len(text) > MAX_HEADING_CHARS or not re.search(r"[A-Za-z]", text):
        return None
    if style is not None and not _SENTENCE_END.search(text):
        if style.size >= body.size * HEADING_SCALE:
            return style.size
        if style.bold and not body.bold and style.size >= body.size * 0.95:
            return style.size
    if _LABEL_LINE.match(line) and len(text.split()) <= 5:
        return body.size  # an upper-case label: the lowest heading level
    return None


def load_pdf(data: bytes, name: str, kind: str | None, warnings: list[str]) -> LoadedDocument:
    """A PDF's text layer with page numbers and heading-path sections; reports are redacted first."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InputError(f"{name}: the PDF is encrypted; ingest an unencrypted copy")
        pages = [_page_styles(page) for page in reader.pages]
        info = reader.metadata
    except InputError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError) as exc:
        raise CorruptFileError(f"{name}: cannot read the PDF ({exc})") from None
    if not any(text.strip() for text, _, _ in pages):
        raise InputError(f"{name}: the PDF has no text layer (a scanned image?); OCR is not supported, "
                         f"so ingest a PDF with selectable text or the report's text itself")
    sizes: Counter[float] = Counter()
    bold_chars = 0
    for _, styles, page_sizes in pages:
        sizes.update(page_sizes)
        bold_chars += sum(len(f) for f, s in styles.items() if s.bold)
    body = _Style(sizes.most_common(1)[0][0] if sizes else 10.0, bold_chars > sum(sizes.values()) / 2)

    # first pass: find heading lines, so that their sizes can be ranked into levels
    texts: list[str] = []
    heads: list[dict[int, tuple[float, str]]] = []  # per page: line start -> (size, heading text)
    for page_text, styles, _ in pages:
        if kind == "report":
            page_text = redact(page_text)
        found: dict[int, tuple[float, str]] = {}
        pos = 0
        for line in page_text.split("\n"):
            size = _is_heading(line, styles.get(" ".join(line.split())), body)
            if size is not None:
                found[pos] = (size, " ".join(line.split()).rstrip(":").strip())
            pos += len(line) + 1
        texts.append(page_text)
        heads.append(found)
    levels = {s: n for n, s in enumerate(sorted({s for h in heads for s, _ in h.values()}, reverse=True), 1)}

    # second pass: sections with heading paths that run on across pages
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    offset = 0
    first_heading = ""
    for number, (page_text, found) in enumerate(zip(texts, heads, strict=True), start=1):
        if not found and not stack:
            page_sections, _ = markdown_sections(page_text, page=number)  # Markdown-like text layers
            sections.extend(Section(s.start + offset, s.end + offset, s.path, number) for s in page_sections)
        else:
            body_start = 0
            for start in sorted(found):
                _add(sections, page_text, offset, body_start, start, stack, number)
                size, heading = found[start]
                first_heading = first_heading or heading
                while stack and stack[-1][0] >= levels[size]:
                    stack.pop()
                stack.append((levels[size], heading))
                line_end = page_text.find("\n", start)
                body_start = len(page_text) if line_end < 0 else line_end + 1
            _add(sections, page_text, offset, body_start, len(page_text), stack, number)
        offset += len(page_text) + 2
    text = "\n\n".join(texts)
    title = str(info.title).strip() if info is not None and info.title else ""
    title = title or first_heading or next((ln.strip() for ln in text.splitlines() if ln.strip()), Path(name).stem)
    if kind == "report":  # document titles and file names of reports often carry the patient's name
        title = REPORT_TITLE
    meta: dict[str, Any] = {"title": title[:120]}
    if info is not None and info.author and kind != "report":
        meta["organisation"] = str(info.author)
    return LoadedDocument(text, sections, meta, "pdf", warnings)


def _add(sections: list[Section], page_text: str, offset: int, start: int, end: int,
         stack: list[tuple[int, str]], page: int) -> None:
    if page_text[start:end].strip():
        sections.append(Section(offset + start, offset + end, tuple(h for _, h in stack), page))
