"""Ingestion: files -> loaders -> heading-aware chunks -> embeddings -> the Chroma store.

Chunks follow the document's headings: a section's body is cut at paragraph, line, sentence and
finally word boundaries into pieces of at most :data:`MAX_CHARS` characters, with no overlap. Each
chunk's stored text is exactly ``document.text[start:end]``, so a citation can quote the passage.
What is embedded (and indexed for BM25) is the chunk prefixed with its title and section path.

Chunk ids are deterministic: a hash of the source, the title, the section path and the chunk's
text (plus its occurrence number when the same passage repeats). Writing one source is
idempotent and crash-safe: unchanged chunks are left alone (their metadata refreshed), new ones
are upserted, stale ones deleted last, so a run killed at any point is completed by re-running it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.loaders import SUFFIXES, LoadedDocument, Section, load_file
from knowledge.store import KINDS, KnowledgeStore, collection_name
from tools.errors import InputError, RadconsultError

if TYPE_CHECKING:
    from agent.settings import Settings

log = logging.getLogger(__name__)

MAX_CHARS = 800  # MiniLM reads 256 word pieces; 800 characters plus the title prefix fit
MIN_CHARS = 200  # a shorter trailing piece is merged into the one before when that still fits
CHUNKER_VERSION = "1"
CORPUS_PREFIX = "corpus/"


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


@dataclass
class IngestReport:
    """What one ingest run did. ``failed`` maps a path to the reason it was skipped."""

    files: int = 0
    chunks_added: int = 0
    chunks_kept: int = 0
    chunks_removed: int = 0
    unchanged_files: int = 0
    chars: int = 0
    seconds: float = 0.0
    sources: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def chunks(self) -> int:
        return self.chunks_added + self.chunks_kept

    def summary(self) -> str:
        text = (f"ingested {self.files} file(s): {self.chunks} chunks ({self.chunks_added} new, "
                f"{self.chunks_kept} unchanged, {self.chunks_removed} removed) in {self.seconds:.1f} s")
        if self.failed:
            text += f"; {len(self.failed)} file(s) failed"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "chunks": self.chunks, "chunks_added": self.chunks_added,
                "chunks_kept": self.chunks_kept, "chunks_removed": self.chunks_removed,
                "unchanged_files": self.unchanged_files, "chars": self.chars,
                "seconds": round(self.seconds, 3), "failed": self.failed, "warnings": self.warnings}


# --- chunking -------------------------------------------------------------------------------------
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
            passage = doc.text[s:e]
            heading = " > ".join(x for x in (title, " > ".join(path)) if x)
            embed_text = f"{heading}\n{passage}" if heading else passage
            digest = hashlib.sha256(f"{title}\x00{label}\x00{passage}".encode("utf-8", "surrogatepass")).hexdigest()
            n = seen.get(digest, 0)
            seen[digest] = n + 1
            cid = hashlib.sha256(f"{source}\x00{digest}\x00{n}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
            chunks.append(Chunk(cid, passage, s, e, label, section.page, embed_text))
    return chunks


# --- sources ----------------------------------------------------------------------------------------
def corpus_dir() -> Path:
    return Path(__file__).resolve().parent / "corpus"


def source_name(path: Path, kind: str) -> str:
    """The stored ``source`` of a file: ``corpus/...`` for the bundled corpus; the absolute path for a
    guideline; for a report an opaque ``report:<hash>`` (file paths often carry patient names)."""
    resolved = path.resolve()
    try:
        return CORPUS_PREFIX + resolved.relative_to(corpus_dir()).as_posix()
    except ValueError:
        pass
    if kind == "report":
        return "report:" + hashlib.sha256(str(resolved).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return str(resolved)


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the supported files under any directory (sorted, hidden files skipped)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(p for p in sorted(path.rglob("*"))
                       if p.is_file() and p.suffix.lower() in SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            out.append(path)
    return list({p.resolve() if p.exists() else p: p for p in out}.values())  # each file once


def chunk_metadata(doc: LoadedDocument, chunk: Chunk, source: str, kind: str, doc_hash: str,
                   index: int) -> dict[str, str | int | float | bool]:
    """Chroma metadata (scalars only: '' and 0 stand for unknown)."""
    m = doc.meta
    study_date = str(m.get("study_date", "") or "")
    return {
        "source": source, "kind": kind, "title": str(m.get("title", "")),
        "organisation": str(m.get("organisation", "")), "year": int(m.get("year", 0) or 0),
        "url": str(m.get("url", "")), "reference": str(m.get("reference", "")),
        "section": chunk.section, "page": int(chunk.page or 0), "start": chunk.start, "end": chunk.end,
        "chunk_index": index, "doc_hash": doc_hash, "fmt": doc.fmt,
        "patient": str(m.get("patient", "")), "study": str(m.get("study", "")), "study_date": study_date,
        "study_day": int(study_date.replace("-", "")) if study_date else 0,
        "modality": str(m.get("modality", "")).upper(), "body_part": str(m.get("body_part", "")),
        "synthetic": bool(m.get("synthetic", False)),
    }


@dataclass
class _Plan:
    source: str
    kind: str
    add_ids: list[str]
    add_docs: list[str]
    add_embed: list[str]
    add_meta: list[dict[str, Any]]
    keep_ids: list[str]
    keep_meta: list[dict[str, Any]]
    stale_ids: list[str]


class Ingestor:
    """Writes documents into the store, batching embeddings across files (``settings.kb_batch_size``
    chunks per batch). The caller holds the single-writer lock (:meth:`KnowledgeStore.writing`) and
    calls :meth:`flush` at the end."""

    def __init__(self, store: KnowledgeStore, progress: bool | None = None) -> None:
        self.store = store
        self.progress = progress
        self._pending: list[_Plan] = []
        self.report = IngestReport()

    def plan(self, doc: LoadedDocument, source: str, kind: str) -> _Plan | None:
        """Compare a document's chunks with what the store holds for ``source``; None if unchanged."""
        collection_name(kind)
        chunks = make_chunks(doc, source)
        meta_json = json.dumps(doc.meta, sort_keys=True, default=str)
        doc_hash = hashlib.sha256(f"{CHUNKER_VERSION}\x00{kind}\x00{meta_json}\x00{doc.text}".encode(
            "utf-8", "surrogatepass")).hexdigest()[:16]
        existing = {row["id"]: row["metadatas"] or {} for row in
                    self.store.iter_all(kind, include=("metadatas",), where={"source": source})}
        new_ids = [c.id for c in chunks]
        if set(existing) == set(new_ids) and all(m.get("doc_hash") == doc_hash for m in existing.values()):
            self.report.unchanged_files += 1
            self.report.chunks_kept += len(chunks)
            return None
        plan = _Plan(source, kind, [], [], [], [], [], [], [i for i in existing if i not in set(new_ids)])
        for index, chunk in enumerate(chunks):
            meta = chunk_metadata(doc, chunk, source, kind, doc_hash, index)
            if chunk.id in existing:
                if existing[chunk.id] != meta:
                    plan.keep_ids.append(chunk.id)
                    plan.keep_meta.append(meta)
                self.report.chunks_kept += 1
            else:
                plan.add_ids.append(chunk.id)
                plan.add_docs.append(chunk.text)
                plan.add_embed.append(chunk.embed_text)
                plan.add_meta.append(meta)
        return plan

    def add(self, doc: LoadedDocument, source: str, kind: str) -> None:
        """Queue one loaded document; written when enough chunks are pending (or at :meth:`flush`)."""
        self.report.files += 1
        self.report.chars += len(doc.text)
        self.report.sources.append(source)
        self.report.warnings.extend(doc.warnings)
        plan = self.plan(doc, source, kind)
        if plan is None:
            return
        self._pending.append(plan)
        if sum(len(p.add_ids) for p in self._pending) >= self.store.settings.kb_batch_size:
            self.flush()

    def add_file(self, path: Path, kind: str | None = None, patient: str | None = None,
                 strict: bool = False) -> str | None:
        """Load and queue one file; returns its source, or None when it failed (recorded in the report)."""
        try:
            doc = load_file(path, self.store.settings, kind)
            doc_kind = _resolve_kind(doc, kind, path)
            if patient:
                doc.meta["patient"] = patient
            if doc_kind == "report" and not doc.meta.get("patient"):
                message = f"{path.name}: no patient key; the report will not be found by patient"
                doc.warnings.append(message)
                log.warning(message)
            source = source_name(path, doc_kind)
            self.add(doc, source, doc_kind)
            log.info("queued %s (%s)", source, doc_kind)
            return source
        except RadconsultError as exc:
            if strict:
                raise
            self.report.failed[str(path)] = str(exc)
            log.warning("%s", exc)
            return None

    def _embed(self, texts: list[str]) -> Any:
        """Embed, with a progress bar over slices when there are many texts (a long document)."""
        if len(texts) <= 512 or self.progress is False:
            return self.store.embedder.embed(texts)
        import numpy as np
        from tqdm import tqdm

        step = 256
        parts = [self.store.embedder.embed(texts[i:i + step])
                 for i in tqdm(range(0, len(texts), step), desc="embedding", unit="batch",
                               disable=None if self.progress is None else False, leave=False)]
        return np.concatenate(parts)

    def flush(self) -> None:
        """Embed every pending chunk in one call, then write source by source: upsert new chunks,
        refresh kept chunks' metadata, and delete stale chunks last."""
        plans, self._pending = self._pending, []
        texts = [t for p in plans for t in p.add_embed]
        vectors = self._embed(texts) if texts else None
        offset = 0
        touched: set[str] = set()
        for p in plans:
            col = self.store.collection(p.kind)
            n = len(p.add_ids)
            try:
                if n:
                    assert vectors is not None
                    col.upsert(ids=p.add_ids, documents=p.add_docs, metadatas=p.add_meta,
                               embeddings=vectors[offset:offset + n])
                if p.keep_ids:
                    col.update(ids=p.keep_ids, metadatas=p.keep_meta)
                if p.stale_ids:
                    col.delete(ids=p.stale_ids)
            except RadconsultError:
                raise
            except Exception as exc:
                raise RadconsultError(f"writing {p.source} to the knowledge base failed: {exc}") from exc
            offset += n
            self.report.chunks_added += n
            self.report.chunks_removed += len(p.stale_ids)
            touched.add(p.kind)
        for kind in touched:
            self.store.bump(kind)
        if plans:
            log.info("wrote %d new chunks from %d sources", offset, len(plans))

    def delete_source(self, source: str, kinds: Sequence[str] = KINDS) -> int:
        """Remove every chunk of ``source``; returns how many were removed."""
        removed = 0
        for kind in kinds:
            ids = [row["id"] for row in self.store.iter_all(kind, include=(), where={"source": source})]
            if ids:
                self.store.collection(kind).delete(ids=ids)
                self.store.bump(kind)
                removed += len(ids)
        self.report.chunks_removed += removed
        return removed


def _resolve_kind(doc: LoadedDocument, kind: str | None, path: Path) -> str:
    declared = doc.meta.get("kind")
    if kind is None:
        if declared in KINDS:
            return str(declared)
        if doc.fmt in ("dicom-sr", "fhir"):
            return "report"
        raise InputError(f"{path.name}: say whether it is a guideline or a report (--kind)")
    if declared in KINDS and declared != kind:
        log.warning("%s declares kind %s but is ingested as %s", path.name, declared, kind)
    return kind


def ingest_paths(paths: Sequence[Path], settings: Settings, kind: str | None = None,
                 patient: str | None = None, store: KnowledgeStore | None = None,
                 progress: bool | None = None, strict: bool = False) -> IngestReport:
    """Ingest files (directories are walked). ``kind`` is "guideline" or "report" (None: from the front
    matter, or report for DICOM SR and FHIR). ``patient`` is an already-pseudonymous key that
    overrides the document's. A bad file is recorded in ``report.failed`` and the rest go on, unless
    ``strict``. Holds the single-writer lock throughout."""
    from tqdm import tqdm

    if kind is not None:
        collection_name(kind)
    store = store or KnowledgeStore(settings)
    files = expand_paths(paths)
    if not files:
        raise InputError("nothing to ingest: no supported files under the given paths")
    started = time.perf_counter()
    with store.writing():
        store.open()
        ingestor = Ingestor(store, progress)
        disable = True if progress is False or len(files) < 2 else (None if progress is None else False)
        for path in tqdm(files, desc="ingesting", unit="file", disable=disable, leave=False):
            ingestor.add_file(path, kind, patient, strict)
        ingestor.flush()
    report = ingestor.report
    report.seconds = time.perf_counter() - started
    return report


def ingest_documents(docs: Sequence[tuple[LoadedDocument, str, str]], store: KnowledgeStore) -> IngestReport:
    """Ingest in-memory documents: ``(document, source, kind)`` triples (benchmarks, the bundled corpus)."""
    started = time.perf_counter()
    with store.writing():
        store.open()
        ingestor = Ingestor(store, progress=False)
        for doc, source, kind in docs:
            ingestor.add(doc, source, kind)
        ingestor.flush()
    ingestor.report.seconds = time.perf_counter() - started
    return ingestor.report


def delete_source(source: str, settings: Settings, store: KnowledgeStore | None = None) -> int:
    """Remove one source (its stored name, or the path it was ingested from). Returns chunks removed."""
    store = store or KnowledgeStore(settings)
    candidates = [source]
    path = Path(source)
    if path.exists():
        candidates += [source_name(path, k) for k in KINDS]
    with store.writing():
        store.open()
        ingestor = Ingestor(store, progress=False)
        return sum(ingestor.delete_source(c) for c in dict.fromkeys(candidates))
