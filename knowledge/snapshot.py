"""What readers search: a collection's last committed state, held in memory per process.

A snapshot is built from the store when a writer commits (the collection's generation changes) and
holds the committed chunks' texts, metadata, a BM25 index and, for the embedded store, their
vectors, so that both sides of a search see exactly the same committed state and a search never
touches the store while another process writes it. Chunks of a generation that is not committed
yet are left out. When the commit came from another process, the Chroma client reconnects first
(its in-memory index would be behind what that process wrote).

With a Chroma server, the server answers the dense side itself (it is one process and always
current); the snapshot then holds no vectors and dense hits outside it are ignored.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from knowledge.bm25 import BM25Index, tokenize, tokenize_negated
from knowledge.store import KnowledgeStore, collection_name
from knowledge.terms import Abbreviations

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """One collection's committed chunks. Row ``i`` of every array is chunk ``ids[i]``."""

    version: int
    ids: list[str]
    documents: list[str]
    metas: list[dict[str, Any]]
    index: BM25Index
    vectors: np.ndarray | None  # (n, dim) float32, L2-normalised; None with a Chroma server
    abbreviations: Abbreviations  # built-in ones and those the committed texts define
    patient: np.ndarray
    modality: np.ndarray
    study_day: np.ndarray
    position: dict[str, int]


_SNAPSHOTS: dict[tuple[str, str], Snapshot] = {}
_BUILDING: set[tuple[str, str]] = set()
_LOCK = threading.Lock()


TITLE_REPEAT = 1  # times a chunk's title is indexed (a field boost: the title names what the passage is about)


def index_text(document: str, meta: dict[str, Any], title_repeat: int = TITLE_REPEAT) -> str:
    """What BM25 indexes for a chunk: its title (``title_repeat`` times) and section path, then its text."""
    title = str(meta.get("title", ""))
    section = str(meta.get("section", ""))
    heading = " > ".join(x for x in ([title] * max(title_repeat, 0) + [section]) if x)
    return f"{heading}\n{document}" if heading else document


def from_rows(version: int, ids: list[str], docs: list[str], metas: list[dict[str, Any]],
              vectors: np.ndarray | None, kind: str, title_repeat: int = TITLE_REPEAT) -> Snapshot:
    """A snapshot of the given chunks (row ``i`` of ``vectors`` is chunk ``ids[i]``)."""
    tokenizer = tokenize_negated if kind == "report" else tokenize
    index = BM25Index([index_text(d, m, title_repeat) for d, m in zip(docs, metas, strict=True)],
                      tokenizer=tokenizer)
    return Snapshot(
        version, ids, docs, metas, index, vectors, Abbreviations.learn(docs),
        np.asarray([str(m.get("patient", "")) for m in metas], dtype=object),
        np.asarray([str(m.get("modality", "")).upper() for m in metas], dtype=object),
        np.asarray([int(m.get("study_day", 0) or 0) for m in metas], dtype=np.int64),
        {cid: i for i, cid in enumerate(ids)})


def build(store: KnowledgeStore, kind: str, version: int) -> Snapshot:
    """Read the collection's committed chunks (generation <= ``version``) and index them."""
    with_vectors = not store.config.chroma_url
    include = ("documents", "metadatas", "embeddings") if with_vectors else ("documents", "metadatas")
    ids: list[str] = []
    docs: list[str] = []
    metas: list[dict[str, Any]] = []
    vectors: list[Any] = []
    for row in store.iter_all(kind, include=include):
        meta = row["metadatas"] or {}
        if int(meta.get("gen", 0) or 0) > version:
            continue  # written by a run that has not committed yet
        ids.append(row["id"])
        docs.append(row["documents"] or "")
        metas.append(meta)
        if with_vectors:
            vectors.append(row["embeddings"])
    matrix = None
    if with_vectors:
        matrix = np.asarray(vectors, dtype=np.float32) if vectors else np.zeros((0, 0), dtype=np.float32)
    return from_rows(version, ids, docs, metas, matrix, kind)


def snapshot(store: KnowledgeStore, kind: str) -> Snapshot:
    """The collection's last committed state, cached per process and rebuilt when a writer commits.
    While one thread rebuilds it, other searches use the previous state instead of waiting."""
    key = (store.location, collection_name(kind))
    version = store.version(kind)
    with _LOCK:
        cached = _SNAPSHOTS.get(key)
        if cached is not None and (cached.version == version or key in _BUILDING):
            return cached
        _BUILDING.add(key)
    try:
        if not store.committed_here(kind, version):
            store.reconnect()  # another process may have written: load what is on disk
            version = store.version(kind)
        built = build(store, kind, version)
    finally:
        with _LOCK:
            _BUILDING.discard(key)
    with _LOCK:
        current = _SNAPSHOTS.get(key)
        if current is None or current.version <= built.version:
            _SNAPSHOTS[key] = built
    log.info("snapshot of %s: %d chunks (generation %d)", key[1], len(built.ids), version)
    return built
