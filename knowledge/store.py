"""The Chroma store behind the knowledge base: two collections, ``guidelines`` and ``reports``.

Embedded by default (a Chroma PersistentClient in ``config.kb_dir``); a Chroma server when
``config.chroma_url`` is set (``http://host:port``), so several UI instances share one store.
Every collection gets our own offline embedding function, never Chroma's default (it downloads).

One writer at a time for the embedded store: writers take an exclusive, non-blocking lock on
``kb_dir/write.lock`` and a second writer gets a clear :class:`WriterBusyError` at once.

Readers never wait, and they see the last *committed* state: a writer stamps the chunks it adds with
the generation it is writing (``gen``, the collection's commit counter + 1) and bumps the counter
when its run is complete (:meth:`KnowledgeStore.commit`). Readers cache their derived index (BM25)
per commit and leave out chunks of a generation that is not committed yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from tools.errors import StoreError

if TYPE_CHECKING:
    from knowledge.config import KnowledgeConfig
    from knowledge.embeddings import Embedder

log = logging.getLogger(__name__)

Kind = Literal["guideline", "report"]
KINDS: tuple[Kind, ...] = ("guideline", "report")
COLLECTIONS: dict[str, str] = {"guideline": "guidelines", "report": "reports"}
PAGE = 5000  # rows per get() page when reading a whole collection
# Embedded store: the HNSW index is written to disk after every applied record. Chroma's default (every
# 1,000) leaves a small collection's index only in the writer's memory and log, and another process
# that opened the collection while it was empty then fails to query it ("Nothing found on disk").
# Measured: no cost in CPU at 6,000 records (bench notes in the README).
EMBEDDED_HNSW = {"batch_size": 1, "sync_threshold": 1}

_CLIENTS: dict[str, tuple[Any, int]] = {}  # location -> (Chroma client, its epoch); one per process
_CLIENTS_LOCK = threading.Lock()
_EPOCHS = itertools.count(1)
_OWN_COMMITS: dict[tuple[str, str], int] = {}  # (location, collection) -> last generation this process committed


@contextlib.contextmanager
def _quiet_ef_warning() -> Iterator[None]:
    """Chroma warns that it cannot rebuild our embedding function from its stored config; we always
    pass it in, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not reconstruct embedding function")
        yield


class WriterBusyError(StoreError):
    """Another process holds the knowledge base's writer lock (a second writer is refused at once)."""


def collection_name(kind: str) -> str:
    try:
        return COLLECTIONS[kind]
    except KeyError:
        raise StoreError(f"unknown knowledge kind {kind!r}; use one of: {', '.join(KINDS)}") from None


def _check_dir(path: Path) -> None:
    """Create the embedded store's directory, or fail now with a message that says why."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the knowledge base directory {path}: {exc.strerror or exc}; make the "
                         "data directory writable, or set RADCONSULT_DATA_DIR to a writable place") from None
    if not path.is_dir():
        raise StoreError(f"knowledge base path {path} exists but is not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StoreError(f"the knowledge base directory {path} is not writable; fix its permissions or "
                         f"set RADCONSULT_DATA_DIR to a writable place")


def failure_hint(exc: BaseException, kb_dir: Path, chroma_url: str | None) -> str:
    """What to do about a store failure, as a suffix for its message ("" when there is nothing to add):
    damaged SQLite files of the embedded store, or a Chroma server that stopped answering."""
    text = str(exc).lower()
    if chroma_url:
        if any(w in text for w in ("connect", "refused", "unreachable", "timed out", "disconnected")):
            return (f"; start the Chroma server (`chroma run --path DIR --port {urlparse(chroma_url).port or 8000}`), "
                    "or unset RADCONSULT_CHROMA_URL to use the embedded store")
        return ""
    if any(w in text for w in ("malformed", "not a database", "disk i/o error", "database corrupt", "file is encrypted")):
        return (f"; the knowledge base files in {kb_dir} are damaged: run `radconsult kb build --rebuild` (moves "
                "them aside and rebuilds the bundled guidelines and demo reports); documents added with "
                "`radconsult kb ingest`, such as patients' prior reports, must then be ingested again")
    return ""


def _make_client(config: KnowledgeConfig) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if config.chroma_url:
        url = urlparse(config.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StoreError(f"RADCONSULT_CHROMA_URL must look like http://host:port, got {config.chroma_url!r}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(host=url.hostname, port=port, ssl=url.scheme == "https",
                                         settings=chroma_settings)
            client.heartbeat()
        except Exception as exc:
            raise StoreError(f"cannot reach the Chroma server at {config.chroma_url}: {exc}"
                             f"{failure_hint(exc, config.kb_dir, config.chroma_url)}") from None
        return client
    path = config.kb_dir
    _check_dir(path)
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:
        raise StoreError(f"cannot open the knowledge base in {path}: {exc}"
                         f"{failure_hint(exc, path, None)}") from None


class KnowledgeStore:
    """The two Chroma collections and the writer lock. Cheap to construct; connects on first use."""

    def __init__(self, config: KnowledgeConfig, embedder: Embedder | None = None) -> None:
        self.config = config
        self._embedder = embedder
        self._collections: dict[str, Any] = {}
        self._writable: set[str] = set()
        self._client: Any = None
        self._epoch = 0

    # --- connection ---------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the store lives: the server URL or the embedded directory."""
        return self.config.chroma_url or str(self.config.kb_dir)

    def _hint(self, exc: BaseException) -> str:
        return failure_hint(exc, self.config.kb_dir, self.config.chroma_url)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from knowledge.embeddings import get_embedder

            self._embedder = get_embedder(self.config)
        return self._embedder

    @property
    def _key(self) -> str:
        return self.config.chroma_url or str(self.config.kb_dir.resolve())

    @property
    def client(self) -> Any:
        with _CLIENTS_LOCK:
            entry = _CLIENTS.get(self._key)
            if entry is None:
                entry = _CLIENTS[self._key] = (_make_client(self.config), next(_EPOCHS))
            elif not self.config.chroma_url and self._client is None:
                _check_dir(self.config.kb_dir)
        if self._epoch != entry[1]:  # first use, or another store object reconnected
            self._client, self._epoch = entry
            self._collections.clear()
            self._writable.clear()
        return self._client

    def reconnect(self) -> None:
        """Drop this process's connection to the embedded store, so the next read loads what is on disk.
        Chroma's embedded client keeps its own view of the index in memory, which another process's
        writes leave behind; a reader reconnects when another process has committed."""
        if self.config.chroma_url:
            return
        with _CLIENTS_LOCK:
            entry = _CLIENTS.pop(self._key, None)
        if entry is not None:
            try:
                entry[0].close()
            except Exception as exc:  # noqa: BLE001 - a failed close loses nothing
                log.debug("closing the Chroma client failed: %s", exc)

    def committed_here(self, kind: str, version: int) -> bool:
        """True when this process wrote generation ``version`` of ``kind`` (its view is current)."""
        return _OWN_COMMITS.get((self._key, collection_name(kind))) == version

    def open(self) -> KnowledgeStore:
        """Connect and create both collections now, so a bad directory or server fails at start-up."""
        for kind in KINDS:
            self.collection(kind)
        return self

    def collection(self, kind: str) -> Any:
        name = collection_name(kind)
        client = self.client  # a reconnect elsewhere in the process drops the cached collections
        col = self._collections.get(name)
        if col is None:
            from knowledge.embeddings import chroma_embedding_function

            hnsw: dict[str, Any] = {"space": "cosine"} | ({} if self.config.chroma_url else EMBEDDED_HNSW)
            try:
                with _quiet_ef_warning():
                    col = client.get_or_create_collection(
                        name=name, embedding_function=chroma_embedding_function(self.embedder),
                        configuration={"hnsw": hnsw}, metadata={"radconsult": "1"})
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"cannot open collection {name!r} in {self.location}: {exc}"
                                 f"{self._hint(exc)}") from None
            self._collections[name] = col
        return col

    def writable(self, kind: str) -> Any:
        """The collection for writing: a store created before the HNSW sync setting gets it now."""
        col = self.collection(kind)
        if not self.config.chroma_url and col.name not in self._writable:
            current = (col.configuration or {}).get("hnsw") or {}
            if current.get("sync_threshold") != EMBEDDED_HNSW["sync_threshold"]:
                try:
                    col.modify(configuration={"hnsw": dict(EMBEDDED_HNSW)})
                except Exception as exc:
                    raise StoreError(f"cannot update collection {col.name!r}: {exc}") from None
            self._writable.add(col.name)
        return col

    # --- writer lock --------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the single-writer lock (embedded store only; a Chroma server serialises writes itself).
        Never waits: a second writer gets :class:`WriterBusyError` at once, naming the holder's pid."""
        if self.config.chroma_url:
            yield
            return
        _check_dir(self.config.kb_dir)
        lock_path = self.config.kb_dir / "write.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {lock_path}: {exc.strerror}; make the data directory "
                             "writable, or set RADCONSULT_DATA_DIR to a writable place") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise WriterBusyError(f"the knowledge base in {self.config.kb_dir} is being written by another "
                                      f"process (pid {other}); try again when it has finished (searches "
                                      f"meanwhile see the last committed state)") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # --- versioning: readers cache derived indexes (BM25) per committed generation ----------------
    def version(self, kind: str) -> int:
        """The collection's committed generation: it changes only when a writer commits a run."""
        return int(self.meta(kind).get("commit", 0) or 0)

    def _fresh(self, col: Any) -> Any:
        """The collection re-read from the store (metadata as of now)."""
        with _quiet_ef_warning():
            return self.client.get_collection(col.name, embedding_function=col._embedding_function)

    def commit(self, kind: str, **extra: str | int) -> int:
        """Publish everything written to ``kind`` so far to readers (merging, never dropping, existing
        metadata keys). Returns the new committed generation."""
        col = self.collection(kind)
        try:
            fresh = self._fresh(col)
            meta = dict(fresh.metadata or {})
            meta["commit"] = int(meta.get("commit", 0) or 0) + 1
            meta.update(extra)
            fresh.modify(metadata=meta)
        except Exception as exc:
            raise StoreError(f"cannot commit to collection {col.name!r}: {exc}") from None
        self._collections[col.name] = fresh
        _OWN_COMMITS[(self._key, col.name)] = int(meta["commit"])
        return int(meta["commit"])

    def meta(self, kind: str) -> dict[str, Any]:
        """The collection's metadata as stored now (commit counter, bundled-corpus fingerprint). Read
        again once through a new connection when it fails (another thread may have reconnected)."""
        for attempt in (1, 2):
            col = self.collection(kind)
            try:
                return dict(self._fresh(col).metadata or {})
            except Exception as exc:
                if attempt == 2:
                    raise StoreError(f"cannot read collection {col.name!r}: {exc}") from None
                self._epoch = 0  # take the current client (and fresh collections) on the next try
        raise AssertionError("unreachable")

    # --- bulk reads ---------------------------------------------------------------------------
    def iter_all(self, kind: str, include: tuple[str, ...] = ("documents", "metadatas"),
                 where: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a collection (or those matching ``where``): dicts with ``id`` and the included
        fields. The ids are listed first and the rows then read by id, page by page, so that a writer
        adding or deleting rows meanwhile cannot make the pages skip any."""
        col = self.collection(kind)
        try:
            ids = list(col.get(include=[], where=where)["ids"])
        except Exception as exc:
            raise StoreError(f"cannot read collection {col.name!r}: {exc}") from None
        for start in range(0, len(ids), PAGE):
            if not include:
                yield from ({"id": cid} for cid in ids[start:start + PAGE])
                continue
            try:
                page = col.get(ids=ids[start:start + PAGE], include=list(include))
            except Exception as exc:
                raise StoreError(f"cannot read collection {col.name!r}: {exc}") from None
            for i, cid in enumerate(page["ids"]):
                row: dict[str, Any] = {"id": cid}
                for field in include:
                    values = page.get(field)
                    row[field] = values[i] if values is not None else None
                yield row
