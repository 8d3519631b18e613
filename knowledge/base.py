"""``KnowledgeBase``: the one object the agent, the UI and the CLI use for the knowledge base."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knowledge.bootstrap import ensure_bundled
from knowledge.config import KnowledgeConfig
from knowledge.ingest import IngestReport, delete_source, ingest_paths
from knowledge.retrieve import Citation, hybrid_search
from knowledge.store import KINDS, KnowledgeStore, WriterBusyError
from knowledge.watch import Watcher

log = logging.getLogger(__name__)
RETRY_BUNDLED_S = 10.0  # while another process builds the bundled corpus, check again this often


class KnowledgeBase:
    """Guidelines and prior reports: the object a process opens once and holds.

    Cheap to construct: the store connects and the embedding model loads on first use. Searches are
    thread-safe and never wait for a writer: they see the last committed state of the store. Writes
    (ingest, delete, the bundled build) take the single-writer lock; a second writer gets a
    :class:`~knowledge.store.WriterBusyError` at once."""

    def __init__(self, config: KnowledgeConfig, store: KnowledgeStore | None = None) -> None:
        self.config = config
        self.store = store or KnowledgeStore(config)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._next_try = 0.0

    def open(self) -> KnowledgeBase:
        """Connect now (a bad directory or an unreachable server fails here, at start-up)."""
        self.store.open()
        return self

    def ensure_bundled(self, force: bool = False) -> IngestReport | None:
        """Build the bundled corpus if the store lacks it (first run) or it changed. Raises
        :class:`~knowledge.store.WriterBusyError` at once when another process is writing."""
        report = ensure_bundled(self.store, force=force)
        self._ready = True
        return report

    def ready(self) -> KnowledgeBase:
        """Open the store and make sure the bundled corpus is in it, once per object. When another
        process is building it, return at once: searches see what is committed, and a later call
        checks again (every few seconds at most)."""
        if self._ready or time.monotonic() < self._next_try:
            return self
        with self._ready_lock:
            if not self._ready and time.monotonic() >= self._next_try:
                self.open()
                try:
                    self.ensure_bundled()
                except WriterBusyError as exc:
                    self._next_try = time.monotonic() + RETRY_BUNDLED_S
                    log.info("bundled knowledge base not checked: %s; searching what is committed", exc)
        return self

    def search(self, query: str, kind: str = "guideline", patient: str | None = None, k: int = 5,
               modality: str | None = None, date_from: str | _dt.date | None = None,
               date_to: str | _dt.date | None = None) -> list[Citation]:
        """Hybrid search; ``kind`` is "guideline", "report" or "all"; ``patient`` a pseudonymous key."""
        return hybrid_search(self.store, query, kind, patient, k, modality, date_from, date_to)

    def ingest(self, paths: Sequence[Path | str], kind: str | None = None, patient: str | None = None,
               progress: bool | None = False) -> IngestReport:
        return ingest_paths([Path(p) for p in paths], self.store, kind, patient, progress)

    def watcher(self, directory: Path | str, kind: str | None = None, patient: str | None = None,
                interval: float = 2.0) -> Watcher:
        """A :class:`~knowledge.watch.Watcher` that ingests files arriving in ``directory``."""
        return Watcher(self.store, Path(directory), kind, patient, interval)

    def delete(self, source: str) -> int:
        return delete_source(source, self.store)

    def prior_reports(self, patient: str) -> list[dict[str, Any]]:
        """One entry per stored report of ``patient`` (source, title, study_date, modality, body_part),
        newest first."""
        reports: dict[str, dict[str, Any]] = {}
        for row in self.store.iter_all("report", include=("metadatas",), where={"patient": patient}):
            meta = row["metadatas"] or {}
            source = str(meta.get("source", ""))
            reports.setdefault(source, {k: meta.get(k, "") for k in
                                        ("source", "title", "study_date", "modality", "body_part")})
        return sorted(reports.values(), key=lambda r: str(r["study_date"]), reverse=True)

    def stats(self) -> dict[str, Any]:
        """Chunks, sources and patients per collection, and where the store lives."""
        out: dict[str, Any] = {"location": self.store.location,
                               "mode": "server" if self.config.chroma_url else "embedded",
                               "embedding_model": self.config.embedding_model, "collections": {}}
        for kind in KINDS:
            sources: set[str] = set()
            patients: set[str] = set()
            chunks = 0
            for row in self.store.iter_all(kind, include=("metadatas",)):
                meta = row["metadatas"] or {}
                chunks += 1
                sources.add(str(meta.get("source", "")))
                if meta.get("patient"):
                    patients.add(str(meta["patient"]))
            entry: dict[str, Any] = {"chunks": chunks, "sources": len(sources)}
            if kind == "report":
                entry["patients"] = len(patients)
            out["collections"][kind] = entry
        out["bundled"] = bool(self.store.meta("guideline").get("bundled"))
        return out
