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
from typing import TYPE_CHECKING

from knowledge.ingest import CHUNKER_VERSION, CORPUS_PREFIX, Ingestor, IngestReport, corpus_dir
from knowledge.store import KINDS, KnowledgeStore

if TYPE_CHECKING:
    from agent.settings import Settings

log = logging.getLogger(__name__)

CORPUS_FOLDERS = {"guidelines": "guideline", "demo_reports": "report"}
LOCK_WAIT_S = 600.0  # a second process starting on first run waits for the first one's build


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


def ensure_bundled(settings: Settings, store: KnowledgeStore | None = None, force: bool = False,
                   progress: bool | None = False) -> IngestReport | None:
    """Build (or update) the bundled corpus in the store when it is missing or changed.

    Returns what was ingested, or None when the store was already up to date. Waits for another
    process that is building it (up to 10 minutes) instead of failing."""
    store = store or KnowledgeStore(settings)
    store.open()
    files = corpus_files()
    fingerprint = corpus_fingerprint(files, store.embedder.name)
    if not force and store.meta("guideline").get("bundled") == fingerprint:
        return None
    started = time.perf_counter()
    with store.writing(wait_s=LOCK_WAIT_S):
        if not force and store.meta("guideline").get("bundled") == fingerprint:
            return None  # another process built it while we waited
        log.info("building the bundled knowledge base from %d corpus files", len(files))
        ingestor = Ingestor(store, progress)
        for path, kind in files:
            ingestor.add_file(path, kind)
        ingestor.flush()
        present = set(ingestor.report.sources)
        for kind in KINDS:
            stale = {str((row["metadatas"] or {}).get("source", "")) for row in
                     store.iter_all(kind, include=("metadatas",))}
            for source in sorted(s for s in stale if s.startswith(CORPUS_PREFIX) and s not in present):
                ingestor.delete_source(source, (kind,))
        store.bump("guideline", bundled=fingerprint)
    report = ingestor.report
    report.seconds = time.perf_counter() - started
    log.info("%s", report.summary())
    return report
