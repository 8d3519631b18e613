"""The Chroma store behind the knowledge base: two collections, ``guidelines`` and ``reports``.

Embedded by default (a Chroma PersistentClient in ``settings.kb_dir``); a Chroma server when
``settings.chroma_url`` is set (``http://host:port``), so several UI instances share one store.
Every collection gets our own offline embedding function, never Chroma's default (it downloads).

One writer at a time for the embedded store: writers take an exclusive, non-blocking lock on
``kb_dir/write.lock`` and a second writer gets a clear :class:`StoreError`. Readers never wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from tools.errors import StoreError

if TYPE_CHECKING:
    from agent.settings import Settings
    from knowledge.embeddings import Embedder

log = logging.getLogger(__name__)

Kind = Literal["guideline", "report"]
KINDS: tuple[Kind, ...] = ("guideline", "report")
COLLECTIONS: dict[str, str] = {"guideline": "guidelines", "report": "reports"}
PAGE = 5000  # rows per get() page when reading a whole collection

_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_ef_warning() -> Iterator[None]:
    """Chroma warns that it cannot rebuild our embedding function from its stored config; we always
    pass it in, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not reconstruct embedding function")
        yield


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


def _make_client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StoreError(f"RADCONSULT_CHROMA_URL must look like http://host:port, got {settings.chroma_url!r}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(host=url.hostname, port=port, ssl=url.scheme == "https",
                                         settings=chroma_settings)
            client.heartbeat()
        except Exception as exc:
            raise StoreError(f"cannot reach the Chroma server at {settings.chroma_url}: {exc}"
                             f"{failure_hint(exc, settings.kb_dir, settings.chroma_url)}") from None
        return client
    path = settings.kb_dir
    _check_dir(path)
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:
        raise StoreError(f"cannot open the knowledge base in {path}: {exc}"
                         f"{failure_hint(exc, path, None)}") from None


class KnowledgeStore:
    """The two Chroma collections and the writer lock. Cheap to construct; connects on first use."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._collections: dict[str, Any] = {}
        self._client: Any = None

    # --- connection ---------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the store lives: the server URL or the embedded directory."""
        return self.settings.chroma_url or str(self.settings.kb_dir)

    def _hint(self, exc: BaseException) -> str:
        return failure_hint(exc, self.settings.kb_dir, self.settings.chroma_url)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from knowledge.embeddings import get_embedder

            self._embedder = get_embedder(self.settings)
        return self._embedder

    @property
    def client(self) -> Any:
        if self._client is None:
            key = self.settings.chroma_url or str(self.settings.kb_dir.resolve())
            with _CLIENTS_LOCK:
                client = _CLIENTS.get(key)
                if client is None:
                    client = _CLIENTS[key] = _make_client(self.settings)
                elif not self.settings.chroma_url:
                    _check_dir(self.settings.kb_dir)
            self._client = client
        return self._client

    def open(self) -> KnowledgeStore:
        """Connect and create both collections now, so a bad directory or server fails at start-up."""
        for kind in KINDS:
            self.collection(kind)
        return self

    def collection(self, kind: str) -> Any:
        name = collection_name(kind)
        col = self._collections.get(name)
        if col is None:
            from knowledge.embeddings import chroma_embedding_function

            try:
                with _quiet_ef_warning():
                    col = self.client.get_or_create_collection(
                        name=name, embedding_function=chroma_embedding_function(self.embedder),
                        configuration={"hnsw": {"space": "cosine"}},
                        metadata={"radconsult": "1"})
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"cannot open collection {name!r} in {self.location}: {exc}"
                                 f"{self._hint(exc)}") from None
            self._collections[name] = col
        return col

    # --- writer lock --------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the single-writer lock (embedded store only; a Chroma server serialises writers).
        ``wait_s``: how long to wait for another writer to finish before giving up, seconds."""
        if self.settings.chroma_url:
            yield
            return
        _check_dir(self.settings.kb_dir)
        lock_path = self.settings.kb_dir / "write.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {lock_path}: {exc.strerror}; make the data directory "
                             "writable, or set RADCONSULT_DATA_DIR to a writable place") from None
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.2)
                        continue
                    other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                    raise StoreError(f"the knowledge base in {self.settings.kb_dir} is being written by another "
                                     f"process (pid {other}); try again when it has finished") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # --- versioning: lets readers cache derived indexes (BM25) until a write happens ------------
    def version(self, kind: str) -> str:
        """A token that changes whenever the collection is written (count + write counter)."""
        col = self.collection(kind)
        try:
            fresh = self._fresh(col)
            meta = fresh.metadata or {}
            return f"{fresh.count()}:{meta.get('writes', 0)}"
        except Exception as exc:
            raise StoreError(f"cannot read collection {col.name!r}: {exc}{self._hint(exc)}") from None

    def _fresh(self, col: Any) -> Any:
        """The collection re-read from the store (metadata and count as of now)."""
        with _quiet_ef_warning():
            return self.client.get_collection(col.name, embedding_function=col._embedding_function)

    def bump(self, kind: str, **extra: str | int) -> None:
        """Record a write in the collection's metadata (merging, never dropping, existing keys)."""
        col = self.collection(kind)
        fresh = self._fresh(col)
        meta = dict(fresh.metadata or {})
        meta["writes"] = int(meta.get("writes", 0)) + 1
        meta.update(extra)
        fresh.modify(metadata=meta)
        self._collections[col.name] = fresh

    def meta(self, kind: str) -> dict[str, Any]:
        col = self.collection(kind)
        fresh = self._fresh(col)
        return dict(fresh.metadata or {})

    # --- bulk reads ---------------------------------------------------------------------------
    def iter_all(self, kind: str, include: tuple[str, ...] = ("documents", "metadatas"),
                 where: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a collection, page by page: dicts with ``id`` and the included fields."""
        col = self.collection(kind)
        offset = 0
        while True:
            try:
                page = col.get(include=list(include), limit=PAGE, offset=offset, where=where)
            except Exception as exc:
                raise StoreError(f"cannot read collection {col.name!r}: {exc}{self._hint(exc)}") from None
            ids = page["ids"]
            if not ids:
                return
            for i, cid in enumerate(ids):
                row: dict[str, Any] = {"id": cid}
                for field in include:
                    values = page.get(field)
                    row[field] = values[i] if values is not None else None
                yield row
            if len(ids) < PAGE:
                return
            offset += len(ids)
