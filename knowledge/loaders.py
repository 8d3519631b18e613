"""Document loaders: a file (or text) in, :class:`LoadedDocument` objects out (one per document).

Formats: Markdown with YAML front matter, plain text, HTML, PDF (:mod:`knowledge.pdf`: text layer
only, page numbers and headings kept), DICOM Structured Reports (text of the content tree, keys
after de-identification) and FHIR (:mod:`knowledge.fhir`: a DiagnosticReport, or a Bundle of them,
one document each). Every loader returns the document's text
(the "original" that citation spans index into) and its sections (heading path, page, span).

Report text is redacted (names after labels, MRNs and other IDs, dates of birth, phone numbers,
e-mails) *before* sectioning, so neither the stored passages nor their spans ever hold the raw
identifiers. Raw patient IDs from DICOM or FHIR only pass through :func:`tools.deid.patient_key`.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tools.errors import (
    CorruptFileError,
    FileMissingError,
    FileTooLargeError,
    InputError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    from knowledge.config import KnowledgeConfig
    from tools.deid import DeidPolicy

log = logging.getLogger(__name__)

SUFFIXES: dict[str, str] = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
    ".html": "html", ".htm": "html", ".pdf": "pdf", ".dcm": "dicom", ".json": "fhir",
}
REPORT_TITLE = "Imaging report"
SUPPORTED = "Markdown (.md), plain text (.txt), HTML (.html), PDF (.pdf), DICOM SR (.dcm), FHIR DiagnosticReport (.json)"


@dataclass(frozen=True)
class Section:
    """A span of the document's text under one heading path; ``page`` is 1-based (PDF) or None."""

    start: int
    end: int
    path: tuple[str, ...]
    page: int | None = None


@dataclass
class LoadedDocument:
    """A document ready for chunking. ``meta`` keys: title, organisation, year, url, reference, kind,
    patient, study_date (YYYY-MM-DD), modality, body_part, synthetic."""

    text: str
    sections: list[Section]
    meta: dict[str, Any]
    fmt: str
    warnings: list[str] = field(default_factory=list)
    part: str = ""  # which document of a file that holds several (a FHIR Bundle's reports); "" if one


# --- redaction ----------------------------------------------------------------------------------
_DATE = (r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|"
         r"\d{1,2}\s+[A-Za-z]{3,9}\.?,?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4}|\d{8})")
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[EMAIL]"),
    (re.compile(r"(?i)\b(DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)(\s*[:#=]?\s*)" + _DATE),
     r"\1\2[DOB]"),
    (re.compile(r"(?i)\b(MRN|medical\s+record\s+(?:number|no\.?|#)|patient\s+id(?:entifier)?|hospital\s+(?:number|no\.?)|"
                r"NHS\s+(?:number|no\.?)|accession\s*(?:number|no\.?|#)?|SSN|social\s+security\s+(?:number|no\.?))"
                r"(\s*[:#=]?\s*)([A-Z0-9][A-Z0-9 -]{2,}[A-Z0-9])\b"), r"\1\2[ID]"),
    (re.compile(r"\b(ID)(\s*[:#]\s*)([A-Za-z0-9][A-Za-z0-9-]{2,})\b"), r"\1\2[ID]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[ID]"),
    (re.compile(r"(?i)\b(tel|phone|telephone|mobile|cell|fax|pager)\b(\.?\s*(?:no\.?|number)?\s*[:#]?\s*)"
                r"\+?[\d()][\d() .-]{5,}\d"), r"\1\2[PHONE]"),
    (re.compile(r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w.])"), "[PHONE]"),
    (re.compile(r"(?im)^([ \t]*(?:patient(?:'s)?\s+name|patient|name|pt|surname|first\s+name|last\s+name|"
                r"dictated\s+by|signed\s+by|reported\s+by|electronically\s+signed\s+by|read\s+by|radiologist|"
                r"referring\s+(?:physician|doctor|clinician)|requested\s+by|attending|physician)"
                r"[ \t]*[:=][ \t]*)([^\n]*\S)"), r"\1[NAME]"),
    (re.compile(r"\b(Dr\.?|Doctor|Prof\.?)\s+[A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+)?"), r"\1 [NAME]"),
]


def scrub_values(text: str, values: Iterable[str]) -> str:
    """Replace each identifying value (a name, an ID, a birth date; two characters or more) wherever it
    stands as a whole word, case-insensitively, with ``[REDACTED]``. Line structure is kept."""
    for value in sorted({v.strip() for v in values if len(v.strip()) >= 2}, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "[REDACTED]", text, flags=re.IGNORECASE)
    return text


def redact(text: str) -> str:
    """Replace identifiers in free report text with bracketed placeholders ([NAME], [ID], [DOB],
    [PHONE], [EMAIL]). Conservative: a value after a name label goes entirely."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# --- reading ------------------------------------------------------------------------------------
def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, after the existence, size (at most ``max_bytes``) and emptiness checks."""
    if not path.exists():
        raise FileMissingError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise FileTooLargeError(f"{path.name}: {size / 2**20:.1f} MiB is over the ingestion limit of "
                                f"{max_bytes / 2**20:.1f} MiB (RADCONSULT_MAX_INGEST_BYTES)")
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path.name}: the file is empty")
    return data


def looks_binary(data: bytes) -> bool:
    """NUL bytes, or many control characters, in the first 8 KiB."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls > max(8, len(head) // 20)


def decode_text(data: bytes, name: str, warnings: list[str]) -> str:
    """UTF-8 (BOM allowed); anything else is decoded with replacement characters and a warning."""
    if looks_binary(data):
        raise UnsupportedFormatError(f"{name}: looks like a binary file, not text; supported: {SUPPORTED}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        message = (f"{name}: not valid UTF-8 (first bad byte at offset {exc.start}); "
                   f"undecodable bytes were replaced with U+FFFD")
        warnings.append(message)
        log.warning(message)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InputError(f"{name}: the file has no text")
    return text


def detect_format(path: Path, data: bytes) -> str:
    """The loader for a file: from the suffix, else sniffed from the first bytes."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt:
        return fmt
    if len(data) > 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(b"%PDF"):
        return "pdf"
    head = data[:512].lstrip().lower()
    if head.startswith(b"{"):
        return "fhir"
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    if path.suffix == "" and not looks_binary(data):
        return "text"
    raise UnsupportedFormatError(f"{path.name}: unsupported format {path.suffix or '(no suffix)'}; "
                                 f"supported: {SUPPORTED}")


# --- front matter and sections ----------------------------------------------------------------------
_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LABEL = re.compile(r"^[ \t]*([A-Z][A-Z0-9 /&()-]{2,40}):[ \t]*", re.M)


def split_front_matter(text: str, name: str, warnings: list[str]) -> tuple[dict[str, Any], int]:
    """YAML front matter -> (mapping, offset where the body starts)."""
    match = _FRONT.match(text)
    if not match:
        return {}, 0
    try:
        data = yaml.safe_load(match.group(1) or "") or {}
    except yaml.YAMLError as exc:
        message = f"{name}: front matter is not valid YAML ({str(exc).splitlines()[0]}); ignored"
        warnings.append(message)
        log.warning(message)
        return {}, match.end()
    if not isinstance(data, dict):
        warnings.append(f"{name}: front matter is not a mapping; ignored")
        return {}, match.end()
    return data, match.end()


def markdown_sections(text: str, start: int = 0, end: int | None = None, page: int | None = None,
                      base: tuple[str, ...] = ()) -> tuple[list[Section], str | None]:
    """Sections of Markdown text between ``start`` and ``end`` -> (sections, first H1 or None).

    A section is the body under a heading (the heading line itself is in the path, not the span).
    Headings inside fenced code blocks are ignored."""
    end = len(text) if end is None else end
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    first_h1: str | None = None
    body_start = start
    in_fence = False
    pos = start

    def close(upto: int) -> None:
        if text[body_start:upto].strip():
            sections.append(Section(body_start, upto, base + tuple(t for _, t in stack), page))

    while pos < end:
        nl = text.find("\n", pos, end)
        line_end = end if nl < 0 else nl
        line = text[pos:line_end]
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            m = _HEADING.match(line)
            if m:
                close(pos)
                level, title = len(m.group(1)), m.group(2).strip()
                if level == 1 and first_h1 is None:
                    first_h1 = title
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, title))
                body_start = line_end + 1 if nl >= 0 else end
        pos = line_end + 1
    close(end)
    return sections, first_h1


def label_sections(text: str, start: int = 0, end: int | None = None,
                   base: tuple[str, ...] = ()) -> list[Section]:
    """Sections of plain text: lines that start with an upper-case label and a colon ("FINDINGS:",
    "IMPRESSION: ...") open a section; text before the first label is its own section."""
    end = len(text) if end is None else end
    sections: list[Section] = []
    current: tuple[str, ...] = base
    body_start = start
    pos = start
    while pos < end:
        nl = text.find("\n", pos, end)
        line_end = end if nl < 0 else nl
        m = _LABEL.match(text, pos, line_end)
        if m:
            if text[body_start:pos].strip():
                sections.append(Section(body_start, pos, current))
            current = base + (m.group(1).strip().title(),)
            body_start = m.end()
        pos = line_end + 1
    if text[body_start:end].strip():
        sections.append(Section(body_start, end, current))
    return sections


def norm_date(value: object) -> str:
    """YYYY-MM-DD from a date, a datetime, 'YYYYMMDD', 'YYYY-MM-DD...', else ''."""
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    text = str(value or "").strip()
    m = re.match(r"^(\d{4})-?(\d{2})-?(\d{2})", text)
    if not m:
        return ""
    try:
        return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        return ""


def normalise_meta(raw: dict[str, Any]) -> dict[str, Any]:
    """Front matter (ours and common variants such as NCI PDQ's) -> our metadata keys."""
    meta: dict[str, Any] = {}
    for key in ("title", "url", "modality", "body_part", "patient", "kind"):
        if raw.get(key) not in (None, ""):
            meta[key] = str(raw[key]).strip()
    org = raw.get("organisation") or raw.get("organization") or raw.get("publisher") or raw.get("source")
    if org:
        meta["organisation"] = str(org).strip()
    reference = raw.get("reference") or raw.get("citation")
    if reference:
        meta["reference"] = str(reference).strip()
    year = raw.get("year")
    if year in (None, ""):
        for key in ("date", "published", "lastReviewed", "last_reviewed", "updated"):
            if raw.get(key):
                m = re.match(r"(\d{4})", str(raw[key]))
                if m:
                    year = m.group(1)
                    break
    if year not in (None, ""):
        digits = str(year)[:4]
        if digits.isdigit():
            meta["year"] = int(digits)
    if raw.get("study_date"):
        meta["study_date"] = norm_date(raw["study_date"])
    if "synthetic" in raw:
        meta["synthetic"] = bool(raw["synthetic"])
    if meta.get("modality"):
        meta["modality"] = meta["modality"].upper()
    return meta


# --- loaders ------------------------------------------------------------------------------------
def load_markdown(text: str, name: str, kind: str | None, warnings: list[str]) -> LoadedDocument:
    raw, body = split_front_matter(text, name, warnings)
    meta = normalise_meta(raw)
    if "report" in (meta.get("kind"), kind):
        text = text[:body] + redact(text[body:])
    sections, h1 = markdown_sections(text, body)
    meta.setdefault("title", h1 or Path(name).stem)
    return LoadedDocument(text, sections, meta, "markdown", warnings)


def load_text(text: str, name: str, kind: str | None, warnings: list[str]) -> LoadedDocument:
    if kind == "report":
        text = redact(text)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), Path(name).stem)
    meta = {"title": first[:120] if kind != "report" else REPORT_TITLE}
    return LoadedDocument(text, label_sections(text), meta, "text", warnings)


def html_to_markdown(html: str) -> tuple[str, str | None]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer", "svg", "head"]):
        if tag.name == "head":
            continue
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    if soup.head:
        soup.head.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(["p", "div", "li", "tr", "table", "ul", "ol", "section", "article", "pre",
                                "blockquote"]):
        block.insert_before("\n")
        block.insert_after("\n")
    for li in soup.find_all("li"):
        li.insert(0, "- ")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" | ")
    text = soup.get_text()
    lines = [re.sub(r"[ \t\u00a0]+", " ", ln).strip() for ln in text.splitlines()]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
    return out, title


def load_html(text: str, name: str, kind: str | None, warnings: list[str]) -> LoadedDocument:
    body, title = html_to_markdown(text)
    if not body.strip():
        raise InputError(f"{name}: the HTML page has no visible text")
    if kind == "report":
        body = redact(body)
    sections, h1 = markdown_sections(body)
    if kind == "report":  # page titles and file names of reports often carry the patient's name
        title = REPORT_TITLE
    return LoadedDocument(body, sections, {"title": title or h1 or Path(name).stem}, "html", warnings)


def _sr_lines(items: Any, depth: int, lines: list[str]) -> None:
    for item in items or ():
        vt = str(item.get("ValueType", ""))
        names = item.get("ConceptNameCodeSequence")
        name = str(names[0].get("CodeMeaning", "")).strip() if names else ""
        if vt == "CONTAINER":
            lines.append("")
            lines.append(f"{'#' * min(depth, 6)} {name or 'Section'}")
            lines.append("")
        elif vt == "TEXT":
            value = str(item.get("TextValue", "")).strip()
            if value:
                lines.append(f"{name}: {value}" if name else value)
        elif vt == "CODE":
            codes = item.get("ConceptCodeSequence")
            if codes:
                lines.append(f"{name}: {codes[0].get('CodeMeaning', '')}".strip(": "))
        elif vt == "NUM":
            mv = item.get("MeasuredValueSequence")
            if mv:
                units = mv[0].get("MeasurementUnitsCodeSequence")
                unit = str(units[0].get("CodeValue", "")) if units else ""
                lines.append(f"{name}: {mv[0].get('NumericValue', '')} {unit}".strip())
        # PNAME (person names), UIDREF, DATE/TIME, IMAGE, COMPOSITE and coordinates are not report text.
        if vt != "CONTAINER" and item.get("ContentSequence"):
            _sr_lines(item.ContentSequence, depth + 1, lines)
        elif vt == "CONTAINER":
            _sr_lines(item.get("ContentSequence"), depth + 1, lines)


def load_dicom_sr(data: bytes, name: str, deid_values: DeidPolicy, warnings: list[str]) -> LoadedDocument:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from tools import deid

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{name}: cannot read the DICOM file ({exc})") from None
    if "ContentSequence" not in ds:
        raise UnsupportedFormatError(f"{name}: a DICOM file without a content tree is not a Structured "
                                     f"Report; images go through `radconsult imaging`")
    names = ds.get("ConceptNameCodeSequence")
    doc_title = str(names[0].get("CodeMeaning", "")).strip() if names else ""
    lines = [f"# {doc_title or 'Structured report'}", ""]
    _sr_lines(ds.ContentSequence, 2, lines)
    identifying = deid.identifying_values(ds)
    text = redact(scrub_values("\n".join(lines), identifying)) + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    meta: dict[str, Any] = {"title": doc_title or "Structured report", "modality": str(ds.get("Modality", "SR"))}
    raw_id = deid.patient_identity(ds)
    study_date = str(ds.get("StudyDate", "") or ds.get("ContentDate", "") or "")
    if raw_id:
        meta["patient"] = deid.patient_key(raw_id, deid_values)
        if deid_values.shifts_dates and study_date:
            study_date = deid.shift_date(study_date, deid.date_shift_days(raw_id, deid_values))
    if ds.get("StudyInstanceUID"):
        meta["study"] = deid.study_key(str(ds.StudyInstanceUID), deid_values)
    meta["study_date"] = norm_date(study_date)
    if ds.get("BodyPartExamined"):
        meta["body_part"] = str(ds.BodyPartExamined).title()
    sections, _ = markdown_sections(text)
    return LoadedDocument(text, sections, meta, "dicom-sr", warnings)


_MODALITY_WORDS = [("MG", r"mammo"), ("CT", r"\bCT\b|computed tomography"), ("MR", r"\bMRI?\b|magnetic"),
                   ("US", r"ultrasound|\bUS\b|sonograph"), ("CR", r"x-?ray|radiograph|\bXR\b|\bCXR\b"),
                   ("PT", r"\bPET\b"), ("NM", r"nuclear")]


def guess_modality(text: str) -> str:
    for code, pattern in _MODALITY_WORDS:
        if re.search(pattern, text, re.I):
            return code
    return ""


def load_bytes(data: bytes, path: Path, config: KnowledgeConfig, kind: str | None = None) -> list[LoadedDocument]:
    """The documents in one file's bytes (already read and size-checked), with the loader its suffix
    (or content) calls for: one, or several for a FHIR Bundle. ``kind`` ("guideline" or "report",
    None when unknown) decides whether the text is redacted."""
    fmt = detect_format(path, data)
    warnings: list[str] = []
    name = path.name
    if fmt == "pdf":
        from knowledge.pdf import load_pdf

        return [load_pdf(data, name, kind, warnings)]
    if fmt == "dicom":
        return [load_dicom_sr(data, name, config.deid, warnings)]
    text = decode_text(data, name, warnings)
    if fmt == "markdown":
        return [load_markdown(text, name, kind, warnings)]
    if fmt == "html":
        return [load_html(text, name, kind, warnings)]
    if fmt == "fhir":
        from knowledge.fhir import load_fhir

        return load_fhir(text, name, config.deid, warnings)
    return [load_text(text, name, kind, warnings)]


def load_documents(path: Path, config: KnowledgeConfig, kind: str | None = None) -> list[LoadedDocument]:
    """Every document in one file (see :func:`load_bytes`), after the size and emptiness checks."""
    return load_bytes(read_bytes(path, config.max_ingest_bytes), path, config, kind)


def load_file(path: Path, config: KnowledgeConfig, kind: str | None = None) -> LoadedDocument:
    """The one document in a file; a file holding several (a FHIR Bundle) is an :class:`InputError`
    here: use :func:`load_documents`."""
    docs = load_documents(path, config, kind)
    if len(docs) != 1:
        raise InputError(f"{path.name}: holds {len(docs)} documents; load it with load_documents()")
    return docs[0]


def load_text_document(text: str, name: str, kind: str | None, fmt: str = "markdown") -> LoadedDocument:
    """An in-memory document (benchmarks, the API): ``fmt`` is "markdown" or "text"."""
    warnings: list[str] = []
    if fmt == "markdown":
        return load_markdown(text, name, kind, warnings)
    return load_text(text, name, kind, warnings)
