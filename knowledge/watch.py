"""Watch a folder and ingest reports (or guidelines) as they arrive: ``radconsult kb watch DIR``.

The folder is scanned every ``interval`` seconds (polling works on every file system, network
shares included). A file is taken once it has *settled*: its size and modification time did not
change between two scans, so a file still being copied is never read half-written. New and
changed files go through the same loaders, de-identification and redaction as ``kb ingest``, in one
writer run per scan that commits at its end, so readers see each batch complete.

Idempotent across restarts: the first scan after a start reads and hashes every file, and a file
whose chunks are already stored from the same bytes is skipped without being parsed or embedded.
A file that fails is reported once and tried again only when it changes. While another process
holds the writer lock, the batch waits for the next scan. Files removed from the folder keep their
chunks (a report stream is often archived after delivery): use ``kb delete`` to remove one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.ingest import Ingestor, IngestReport, StoreIndex, expand_paths
from knowledge.store import KINDS, KnowledgeStore, WriterBusyError, collection_name
from tools.errors import InputError, StoreError

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    stat: tuple[int, int]  # (size, mtime in ns) at the last scan
    done: bool = False  # ingested (or failed) in this state


@dataclass
class Watcher:
    """Ingests the supported files under ``directory`` as they arrive; ``kind`` and ``patient`` as for
    ``kb ingest``. ``interval``: seconds between scans (0.2-3600)."""

    store: KnowledgeStore
    directory: Path
    kind: str | None = None
    patient: str | None = None
    interval: float = 2.0
    _seen: dict[Path, _Seen] = field(default_factory=dict, init=False, repr=False)
    _index: dict[str, StoreIndex] = field(default_factory=dict, init=False, repr=False)
    _versions: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.directory.is_dir():
            raise InputError(f"{self.directory}: not a directory to watch")
        if not 0.2 <= self.interval <= 3600:
            raise InputError(f"the watch interval must be between 0.2 and 3600 seconds, got {self.interval}")
        if self.kind is not None:
            collection_name(self.kind)

    def ready_files(self) -> list[Path]:
        """Files that settled since the last scan and are not ingested in their current state."""
        ready: list[Path] = []
        present: set[Path] = set()
        for path in expand_paths([self.directory]):
            try:
                st = path.stat()
            except OSError:
                continue  # removed between listing and stat
            stat = (st.st_size, st.st_mtime_ns)
            present.add(path)
            seen = self._seen.get(path)
            if seen is None or seen.stat != stat:
                self._seen[path] = _Seen(stat)  # new or still changing: wait for it to settle
            elif not seen.done:
                ready.append(path)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return ready

    def _indexes(self) -> dict[str, StoreIndex]:
        """The store's fingerprints, read again only when another writer committed since."""
        for kind in KINDS:
            version = self.store.version(kind)
            if self._versions.get(kind) != version:
                self._index.pop(kind, None)
                self._versions[kind] = version
        return self._index

    def scan_once(self) -> IngestReport | None:
        """One scan: ingest the settled new or changed files. Returns what was done, or None when
        nothing was ready (or another writer holds the lock: the files wait for the next scan)."""
        ready = self.ready_files()
        if not ready:
            return None
        started = time.perf_counter()
        try:
            with self.store.writing():
                self.store.open()
                ingestor = Ingestor(self.store, progress=False, indexes=self._indexes())
                for path in ready:
                    ingestor.add_file(path, self.kind, self.patient)
                ingestor.commit()
                for kind in KINDS:
                    self._versions[kind] = self.store.version(kind)
        except WriterBusyError as exc:
            log.info("watch: %d file(s) wait for the next scan: %s", len(ready), exc)
            return None
        for path in ready:
            self._seen[path].done = True
        report = ingestor.report
        report.seconds = time.perf_counter() - started
        return report

    def run(self, stop: threading.Event, on_report: Callable[[IngestReport], None] | None = None,
            once: bool = False) -> None:
        """Scan until ``stop`` is set (a batch in progress is finished first), or, with ``once``, until
        the files present at the start have settled and been ingested. A store that fails (a server
        restarting, a full disk) is reported and tried again at the next scan; nothing is lost."""
        while not stop.is_set():
            try:
                report = self.scan_once()
            except StoreError as exc:
                log.warning("watch: %s; trying again in %.0f s", exc, self.interval)
                self._index.clear()
                self._versions.clear()
                report = None
            if report is not None:
                log.info("watch: %s", report.summary())
                if on_report is not None:
                    on_report(report)
            if once and all(seen.done for seen in self._seen.values()):
                return
            stop.wait(self.interval)
