"""The bundled knowledge base: ``knowledge/corpus/`` built into the store on first run, offline.

``guidelines/*.md`` go to the guidelines collection and ``demo_reports/*.md`` (synthetic, with
pseudonymous ``DEMO-`` patient keys) to the reports collection. A fingerprint of the corpus files,
the chunker and the embedding model is kept in the guidelines collection's metadata: the build
runs again only when one of them changed, and then only changed files are re-embedded; corpus
files that disappeared are removed from the store.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from knowledge.ingest import CHUNKER_VERSION, CORPUS_PREFIX, Ingestor, IngestReport, corpus_dir, source_name
from knowledge.store import KINDS, KnowledgeStore

log = logging.getLogger(__name__)

CORPUS_FOLDERS = {"guidelines": "guideline", "demo_reports": "report"}


def corpus_files(root: Path | None = None) -> list[tuple[Path, str]]:
    """Every bundled file with the collection it belongs to (sorted, README files skipped)."""
    root = root or corpus_dir()
    out: list[tuple[Path, str]] = []
    for folder, kind in CORPUS_FOLDERS.items():
        base = root / folder
        if base.is_dir():
            out.extend((p, kind) for p in sorted(base.glob("*.md")) if p.name.lower() != "readme.md")
    return out


def corpus_fingerprint(files: list[tuple[Path, str]], model_name: str) -> str:
    digest = hashlib.sha256(f"{CHUNKER_VERSION}\x00{model_name}".encode())
    for path, kind in files:
        digest.update(f"\x00{path.name}\x00{kind}\x00".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_bundled(store: KnowledgeStore, force: bool = False,
                   progress: bool | None = False) -> IngestReport | None:
    """Build (or update) the bundled corpus in the store when it is missing or changed.

    Returns what was ingested, or None when the store was already up to date. When another process
    is writing, raises :class:`~knowledge.store.WriterBusyError` at once (it never waits): readers go
    on with the last committed state, and the caller may try again later."""
    store.open()
    files = corpus_files()
    fingerprint = corpus_fingerprint(files, store.embedder.name)
    if not force and store.meta("guideline").get("bundled") == fingerprint:
        return None
    started = time.perf_counter()
    with store.writing():
        if not force and store.meta("guideline").get("bundled") == fingerprint:
            return None  # another process built it just now
        log.info("building the bundled knowledge base from %d corpus files", len(files))
        ingestor = Ingestor(store, progress)
        for path, kind in files:
            ingestor.add_file(path, kind)
        present = {path for path, _ in files}
        for kind in KINDS:
            stale = {f for f in ingestor.index(kind).by_file if f.startswith(CORPUS_PREFIX)}
            for file in sorted(stale - {source_name(p, kind) for p in present}):
                ingestor.delete_source(file, (kind,))
        ingestor.commit(bundled=fingerprint)
    report = ingestor.report
    report.seconds = time.perf_counter() - started
    log.info("%s", report.summary())
    return report
