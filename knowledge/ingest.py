"""Ingestion: files -> loaders -> heading-aware chunks (:mod:`knowledge.chunking`) -> embeddings -> store.

Throughput at thousands of files comes from doing each fixed cost once per run, not once per file:

* what the store already holds is read in one pass at the start of a run (:class:`StoreIndex`), not
  with one query per file;
* an unchanged file is recognised from a fingerprint of its bytes (and the ingest options) stored
  with its chunks, so a second run over the same folder reads and hashes each file but parses,
  chunks and embeds nothing;
* new chunks from many files are embedded together (``config.batch_size`` at a time, identical
  passages once) and written with one upsert per collection and batch.

Writing is idempotent and crash-safe: new chunks are upserted first, changed metadata refreshed, and
stale chunks deleted last, so a run killed at any point is completed by running it again (an
interrupted file never looks unchanged: every one of its chunks must carry the new fingerprint and
the count must match). Readers see the run's chunks when it commits (:meth:`KnowledgeStore.commit`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from knowledge import question_types
from knowledge.chunking import MAX_CHARS, MIN_CHARS, Chunk, chunk_spans, make_chunks, section_label
from knowledge.headings import encode_vector, heading_text
from knowledge.loaders import SUFFIXES, LoadedDocument, load_bytes, read_bytes
from knowledge.store import KINDS, KnowledgeStore, collection_name
from tools.errors import InputError, RadconsultError, StoreError

__all__ = ["CHUNKER_VERSION", "CORPUS_PREFIX", "MAX_CHARS", "MIN_CHARS", "Chunk", "IngestReport", "Ingestor",
           "StoreIndex", "chunk_spans", "corpus_dir", "delete_source", "expand_paths", "ingest_documents",
           "ingest_paths", "make_chunks", "section_label", "source_name"]

log = logging.getLogger(__name__)

CHUNKER_VERSION = "2"  # part of every fingerprint: a new chunker re-plans (never silently keeps) old chunks
CORPUS_PREFIX = "corpus/"
WRITE_SLICE = 1000  # rows per Chroma call (well under its batch limit; bounded request size for a server)


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
        if self.unchanged_files:
            text += f"; {self.unchanged_files} unchanged document(s) skipped"
        if self.failed:
            text += f"; {len(self.failed)} file(s) failed"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "chunks": self.chunks, "chunks_added": self.chunks_added,
                "chunks_kept": self.chunks_kept, "chunks_removed": self.chunks_removed,
                "unchanged_files": self.unchanged_files, "chars": self.chars,
                "seconds": round(self.seconds, 3), "failed": self.failed, "warnings": self.warnings}


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


def file_fingerprint(data: bytes, kind: str | None, patient: str | None) -> str:
    """What decides whether a file must be read again: its bytes, the options and the chunker."""
    digest = hashlib.sha256(f"{CHUNKER_VERSION}\x00{kind or ''}\x00{patient or ''}\x00".encode())
    digest.update(data)
    return digest.hexdigest()[:24]


def doc_fingerprint(doc: LoadedDocument, kind: str) -> str:
    meta_json = json.dumps(doc.meta, sort_keys=True, default=str)
    return hashlib.sha256(f"{CHUNKER_VERSION}\x00{kind}\x00{meta_json}\x00{doc.text}".encode(
        "utf-8", "surrogatepass")).hexdigest()[:16]


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
        "types": question_types.encode(question_types.passage_types(chunk.section, chunk.text)),
    }


# --- what the store holds ------------------------------------------------------------------------------
class _Row(NamedTuple):
    source: str
    file: str
    file_sha: str
    doc_hash: str
    n_chunks: int  # chunks of its source
    n_parts: int  # sources of its file
    gen: int  # the generation that wrote it


class StoreIndex:
    """One collection's chunks as fingerprints, read in one pass: enough to tell unchanged files and
    documents from changed ones without a query per file. Kept current by the run that reads it."""

    def __init__(self, store: KnowledgeStore, kind: str) -> None:
        self.by_source: dict[str, dict[str, _Row]] = {}
        self.by_file: dict[str, set[str]] = {}
        for row in store.iter_all(kind, include=("metadatas",)):
            m = row["metadatas"] or {}
            source = str(m.get("source", ""))
            self.put(row["id"], _Row(source, str(m.get("file", "") or source), str(m.get("file_sha", "")),
                                     str(m.get("doc_hash", "")), int(m.get("n_chunks", 0) or 0),
                                     int(m.get("n_parts", 1) or 1), int(m.get("gen", 0) or 0)))

    def put(self, cid: str, row: _Row) -> None:
        self.by_source.setdefault(row.source, {})[cid] = row
        self.by_file.setdefault(row.file, set()).add(row.source)

    def drop(self, cid: str, source: str) -> None:
        rows = self.by_source.get(source)
        if rows is None or cid not in rows:
            return
        row = rows.pop(cid)
        if not rows:
            del self.by_source[source]
            sources = self.by_file.get(row.file)
            if sources is not None:
                sources.discard(source)
                if not sources:
                    del self.by_file[row.file]

    def unchanged_file(self, file: str, file_sha: str) -> int | None:
        """How many chunks the file has when every one of them is stored from exactly these bytes
        (complete: every part, every chunk); None when it must be read."""
        sources = self.by_file.get(file)
        if not sources:
            return None
        total = 0
        for source in sources:
            rows = self.by_source.get(source, {})
            if not rows or any(r.file_sha != file_sha for r in rows.values()):
                return None
            first = next(iter(rows.values()))
            if len(rows) != first.n_chunks or len(sources) != first.n_parts:
                return None
            total += len(rows)
        return total


@dataclass
class _Plan:
    source: str
    kind: str
    add_ids: list[str] = field(default_factory=list)
    add_docs: list[str] = field(default_factory=list)
    add_embed: list[str] = field(default_factory=list)
    add_meta: list[dict[str, Any]] = field(default_factory=list)
    keep_ids: list[str] = field(default_factory=list)
    keep_meta: list[dict[str, Any]] = field(default_factory=list)
    stale: list[tuple[str, str]] = field(default_factory=list)  # (chunk id, its source)


class Ingestor:
    """Writes documents into the store, embedding new chunks from many files together
    (``config.batch_size`` at a time). The caller holds the single-writer lock
    (:meth:`KnowledgeStore.writing`) and calls :meth:`commit` at the end (which flushes)."""

    def __init__(self, store: KnowledgeStore, progress: bool | None = None,
                 indexes: dict[str, StoreIndex] | None = None) -> None:
        """``indexes``: fingerprints kept from an earlier run by the same writer (a watcher), read
        from the store for any kind missing; the dict is updated in place."""
        self.store = store
        self.progress = progress
        self.report = IngestReport()
        self._pending: list[_Plan] = []
        self._pending_chunks = 0
        self._index: dict[str, StoreIndex] = {} if indexes is None else indexes
        self._gen: dict[str, int] = {}
        self._touched: set[str] = set()
        self._heading_vectors: dict[str, str] = {}  # heading path -> its stored vector, this run

    def index(self, kind: str) -> StoreIndex:
        """The collection's fingerprints, read on first use."""
        if kind not in self._gen:
            collection_name(kind)
            self._gen[kind] = self.store.version(kind) + 1
        if kind not in self._index:
            self._index[kind] = StoreIndex(self.store, kind)
        return self._index[kind]

    # --- planning ---------------------------------------------------------------------------------
    def plan(self, doc: LoadedDocument, source: str, kind: str, file: str | None = None,
             file_sha: str = "", n_parts: int = 1) -> _Plan | None:
        """Compare a document's chunks with what the store holds for ``source``; None if unchanged."""
        index = self.index(kind)
        chunks = make_chunks(doc, source)
        doc_hash = doc_fingerprint(doc, kind)
        existing = index.by_source.get(source, {})
        new_ids = {c.id for c in chunks}
        if set(existing) == new_ids and all(r.doc_hash == doc_hash and r.file_sha == file_sha
                                            and r.n_parts == n_parts for r in existing.values()):
            self.report.unchanged_files += 1
            self.report.chunks_kept += len(chunks)
            return None
        plan = _Plan(source, kind, stale=[(i, source) for i in existing if i not in new_ids])
        extra = {"file": file or source, "file_sha": file_sha, "n_chunks": len(chunks), "n_parts": n_parts}
        for index_no, chunk in enumerate(chunks):
            meta = chunk_metadata(doc, chunk, source, kind, doc_hash, index_no) | extra
            old = existing.get(chunk.id)
            if old is not None:  # same passage: keep its vector, refresh what is around it
                plan.keep_ids.append(chunk.id)
                plan.keep_meta.append(meta | {"gen": old.gen})
                self.report.chunks_kept += 1
            else:
                plan.add_ids.append(chunk.id)
                plan.add_docs.append(chunk.text)
                plan.add_embed.append(chunk.embed_text)
                plan.add_meta.append(meta | {"gen": self._gen[kind]})
        return plan

    def add(self, doc: LoadedDocument, source: str, kind: str, file: str | None = None,
            file_sha: str = "", n_parts: int = 1) -> None:
        """Queue one loaded document; written when enough chunks are pending (or at :meth:`flush`)."""
        self.report.chars += len(doc.text)
        self.report.sources.append(source)
        self.report.warnings.extend(doc.warnings)
        plan = self.plan(doc, source, kind, file, file_sha, n_parts)
        if plan is None:
            return
        self._pending.append(plan)
        self._pending_chunks += len(plan.add_ids)
        if self._pending_chunks >= self.store.config.batch_size:
            self.flush()

    def add_file(self, path: Path, kind: str | None = None, patient: str | None = None,
                 strict: bool = False) -> list[str] | None:
        """Load and queue one file; returns its sources (several for a FHIR Bundle), [] when it is
        unchanged since it was last ingested, or None when it failed (recorded in the report)."""
        self.report.files += 1
        try:
            data = read_bytes(path, self.store.config.max_ingest_bytes)
            file_sha = file_fingerprint(data, kind, patient)
            for candidate in KINDS if kind is None else (kind,):
                kept = self.index(candidate).unchanged_file(source_name(path, candidate), file_sha)
                if kept is not None:
                    self.report.unchanged_files += 1
                    self.report.chunks_kept += kept
                    return []
            docs = load_bytes(data, path, self.store.config, kind)
            kinds = [_resolve_kind(doc, kind, path) for doc in docs]
            sources: list[str] = []
            for doc, doc_kind in zip(docs, kinds, strict=True):
                if patient:
                    doc.meta["patient"] = patient
                if doc_kind == "report" and not doc.meta.get("patient"):
                    message = f"{path.name}: no patient key; the report will not be found by patient"
                    doc.warnings.append(message)
                    log.warning(message)
                file = source_name(path, doc_kind)
                source = f"{file}#{doc.part}" if doc.part else file
                self.add(doc, source, doc_kind, file, file_sha, len(docs))
                sources.append(source)
            for doc_kind in set(kinds):  # parts the file no longer holds (a Bundle that lost a report)
                file = source_name(path, doc_kind)
                for gone in sorted(self.index(doc_kind).by_file.get(file, set()) - set(sources)):
                    self._queue_removal(gone, doc_kind)
            log.info("queued %s (%s)", ", ".join(sources), "/".join(sorted(set(kinds))))
            return sources
        except RadconsultError as exc:
            if strict:
                raise
            self.report.failed[str(path)] = str(exc)
            log.warning("%s", exc)
            return None

    def _queue_removal(self, source: str, kind: str) -> None:
        rows = self.index(kind).by_source.get(source, {})
        if rows:
            self._pending.append(_Plan(source, kind, stale=[(i, source) for i in rows]))

    # --- writing ----------------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> Any:
        """Embed each distinct text once (identical passages recur in real corpora), with a progress
        bar over slices when there are many."""
        import numpy as np

        unique = list(dict.fromkeys(texts))
        if len(unique) <= 512 or self.progress is False:
            vectors = self.store.embedder.embed(unique)
        else:
            from tqdm import tqdm

            step = 256
            vectors = np.concatenate([self.store.embedder.embed(unique[i:i + step]) for i in tqdm(
                range(0, len(unique), step), desc="embedding", unit="batch",
                disable=None if self.progress is None else False, leave=False)])
        if len(unique) == len(texts):
            return vectors
        where = {t: i for i, t in enumerate(unique)}
        return vectors[[where[t] for t in texts]]

    def flush(self) -> None:
        """Embed every pending new chunk, then write each collection in a few large calls: upsert the
        new chunks, refresh kept chunks' metadata, and delete stale chunks last."""
        plans, self._pending, self._pending_chunks = self._pending, [], 0
        if not plans:
            return
        texts = [t for p in plans for t in p.add_embed]
        # each distinct heading path embedded once per run, beside the passages (knowledge.headings)
        heads = [heading_text(m) for p in plans for m in (*p.add_meta, *p.keep_meta)]
        new_heads = [h for h in dict.fromkeys(heads) if h and h not in self._heading_vectors]
        vectors = self._embed(texts + new_heads) if texts or new_heads else None
        if new_heads:
            assert vectors is not None
            for h, v in zip(new_heads, vectors[len(texts):], strict=True):
                self._heading_vectors[h] = encode_vector(v)
            vectors = vectors[:len(texts)]
        for p in plans:
            for m in (*p.add_meta, *p.keep_meta):
                hvec = self._heading_vectors.get(heading_text(m))
                if hvec:
                    m["hvec"] = hvec
        offset = 0
        for kind in dict.fromkeys(p.kind for p in plans):
            mine = [p for p in plans if p.kind == kind]
            col = self.store.writable(kind)
            ids = [i for p in mine for i in p.add_ids]
            start = offset
            offset += len(ids)
            try:
                if ids:
                    assert vectors is not None
                    docs = [d for p in mine for d in p.add_docs]
                    metas = [m for p in mine for m in p.add_meta]
                    for i in range(0, len(ids), WRITE_SLICE):
                        col.upsert(ids=ids[i:i + WRITE_SLICE], documents=docs[i:i + WRITE_SLICE],
                                   metadatas=metas[i:i + WRITE_SLICE],
                                   embeddings=vectors[start + i:start + min(i + WRITE_SLICE, len(ids))])
                keep_ids = [i for p in mine for i in p.keep_ids]
                keep_meta = [m for p in mine for m in p.keep_meta]
                for i in range(0, len(keep_ids), WRITE_SLICE):
                    col.update(ids=keep_ids[i:i + WRITE_SLICE], metadatas=keep_meta[i:i + WRITE_SLICE])
                stale = [i for p in mine for i, _ in p.stale]
                for i in range(0, len(stale), WRITE_SLICE):
                    col.delete(ids=stale[i:i + WRITE_SLICE])
            except RadconsultError:
                raise
            except Exception as exc:
                raise StoreError(f"writing to the knowledge base failed ({len(mine)} documents, first "
                                 f"{mine[0].source}): {exc}") from exc
            self._touched.add(kind)
            self.report.chunks_added += len(ids)
            self.report.chunks_removed += len(stale)
            index = self.index(kind)
            for p in mine:
                for cid, source in p.stale:
                    index.drop(cid, source)
                for cid, meta in zip([*p.add_ids, *p.keep_ids], [*p.add_meta, *p.keep_meta], strict=True):
                    index.put(cid, _Row(p.source, str(meta["file"]), str(meta["file_sha"]), str(meta["doc_hash"]),
                                        int(meta["n_chunks"]), int(meta["n_parts"]), int(meta["gen"])))
        log.info("wrote %d new chunks from %d documents", offset, len(plans))

    def commit(self, **extra: str | int) -> None:
        """Flush, then publish what this run wrote to readers (one commit per written collection;
        ``extra`` goes into the guideline collection's metadata, e.g. the bundled-corpus fingerprint)."""
        self.flush()
        kinds = set(self._touched) | ({"guideline"} if extra else set())
        for kind in sorted(kinds):
            self._gen[kind] = self.store.commit(kind, **(extra if kind == "guideline" else {})) + 1
        self._touched.clear()

    def delete_source(self, source: str, kinds: Sequence[str] = KINDS) -> int:
        """Queue the removal of every chunk of ``source`` (a stored source, or a file's source, which
        covers each of its parts); returns how many chunks will go at the next flush."""
        removed = 0
        for kind in kinds:
            index = self.index(kind)
            for each in sorted({source} | index.by_file.get(source, set())):
                rows = index.by_source.get(each, {})
                removed += len(rows)
                self._queue_removal(each, kind)
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


def ingest_paths(paths: Sequence[Path], store: KnowledgeStore, kind: str | None = None,
                 patient: str | None = None, progress: bool | None = None, strict: bool = False) -> IngestReport:
    """Ingest files (directories are walked). ``kind`` is "guideline" or "report" (None: from the front
    matter, or report for DICOM SR and FHIR). ``patient`` is an already-pseudonymous key that
    overrides the document's. A bad file is recorded in ``report.failed`` and the rest go on, unless
    ``strict``. Holds the single-writer lock throughout (a second writer is refused at once) and
    commits once at the end."""
    from tqdm import tqdm

    if kind is not None:
        collection_name(kind)
    files = expand_paths(paths)
    if not files:
        raise InputError("nothing to ingest: no supported files under the given paths")
    started = time.perf_counter()
    with store.writing():
        store.open()
        ingestor = Ingestor(store, progress)
        disable = True if progress is False or len(files) < 2 else (None if progress is None else False)
        for path in tqdm(files, desc="ingesting", unit="file", disable=disable, leave=False, mininterval=0.5):
            ingestor.add_file(path, kind, patient, strict)
        ingestor.commit()
    report = ingestor.report
    report.seconds = time.perf_counter() - started
    return report


def ingest_documents(docs: Sequence[tuple[LoadedDocument, str, str]], store: KnowledgeStore) -> IngestReport:
    """Ingest in-memory documents: ``(document, source, kind)`` triples (benchmarks, the API)."""
    started = time.perf_counter()
    with store.writing():
        store.open()
        ingestor = Ingestor(store, progress=False)
        for doc, source, kind in docs:
            ingestor.report.files += 1
            ingestor.add(doc, source, kind)
        ingestor.commit()
    ingestor.report.seconds = time.perf_counter() - started
    return ingestor.report


def delete_source(source: str, store: KnowledgeStore) -> int:
    """Remove one source (its stored name, or the path it was ingested from). Returns chunks removed."""
    candidates = [source]
    if not source.startswith(("report:", CORPUS_PREFIX)):  # a path, even of a file deleted since
        candidates += [source_name(Path(source), k) for k in KINDS]
    with store.writing():
        store.open()
        ingestor = Ingestor(store, progress=False)
        for candidate in dict.fromkeys(candidates):
            ingestor.delete_source(candidate)
        ingestor.commit()
        return ingestor.report.chunks_removed
