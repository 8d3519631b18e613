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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from knowledge.bm25 import BM25FIndex, tokenize, tokenize_negated
from knowledge.headings import decode_vector, heading_text
from knowledge.question_types import decode, passage_types
from knowledge.store import KnowledgeStore, collection_name
from knowledge.terms import Abbreviations

EmbedFn = Callable[[list[str]], np.ndarray]

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """One collection's committed chunks. Row ``i`` of every array is chunk ``ids[i]``."""

    version: int
    ids: list[str]
    documents: list[str]
    metas: list[dict[str, Any]]
    index: BM25FIndex
    vectors: np.ndarray | None  # (n, dim) float32, L2-normalised; None with a Chroma server
    abbreviations: Abbreviations  # built-in ones and those the committed texts define
    patient: np.ndarray
    modality: np.ndarray
    study_day: np.ndarray
    position: dict[str, int]
    headings: list[str]  # distinct heading paths ("Title > Section")
    heading_row: np.ndarray  # (n,) int: chunk row -> its heading in ``headings``
    heading_vectors: np.ndarray | None  # (len(headings), dim) float32; None when nothing embeds them
    types: np.ndarray  # (n, len(TYPES)) float32: what each chunk is about (knowledge.question_types)


_SNAPSHOTS: dict[tuple[str, str], Snapshot] = {}
_BUILDING: set[tuple[str, str]] = set()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class FieldWeights:
    """BM25F weights of a chunk's two fields: its heading path (title and section) and its passage;
    ``*_b`` are the fields' length normalisations (0-1). Chosen on the tuning split (bench/kb_tune.py)."""

    heading: float = 2.0
    body: float = 1.0
    heading_b: float = 0.3
    body_b: float = 0.75
    k1: float = 1.2


FIELDS = FieldWeights()
_HEADING_VECTORS: dict[tuple[str, str], np.ndarray] = {}  # (model, heading) -> vector, kept across commits
_HEADING_LOCK = threading.Lock()


def heading_vectors(headings: list[str], stored: dict[str, np.ndarray], embed: EmbedFn | None,
                    model: str) -> np.ndarray | None:
    """Vectors of the distinct headings: as their writer stored them, else embedded here once per
    process (stores written before heading vectors were stored)."""
    if not headings:
        return None
    missing = [h for h in headings if h not in stored]
    if missing:
        if embed is None:
            return None
        with _HEADING_LOCK:
            todo = [h for h in missing if (model, h) not in _HEADING_VECTORS]
        if todo:
            log.info("embedding %d headings stored without their vectors", len(todo))
            for h, v in zip(todo, embed(todo), strict=True):
                with _HEADING_LOCK:
                    _HEADING_VECTORS[(model, h)] = v
        with _HEADING_LOCK:
            stored = {**stored, **{h: _HEADING_VECTORS[(model, h)] for h in missing}}
    return np.stack([stored[h] for h in headings]).astype(np.float32)


def chunk_types(meta: dict[str, Any], document: str) -> np.ndarray:
    """What a chunk is about (:mod:`knowledge.question_types`): as its writer stored it, or read now."""
    stored = decode(meta.get("types"))
    return stored if stored is not None else passage_types(str(meta.get("section", "")), document)


def from_rows(version: int, ids: list[str], docs: list[str], metas: list[dict[str, Any]],
              vectors: np.ndarray | None, kind: str, fields: FieldWeights = FIELDS,
              embed: EmbedFn | None = None, model: str = "") -> Snapshot:
    """A snapshot of the given chunks (row ``i`` of ``vectors`` is chunk ``ids[i]``); ``embed`` embeds
    the distinct heading paths (None: no heading vectors)."""
    tokenizer = tokenize_negated if kind == "report" else tokenize
    heads = [heading_text(m) for m in metas]
    index = BM25FIndex([heads, docs], (fields.heading, fields.body), (fields.heading_b, fields.body_b),
                                  fields.k1, tokenizer=tokenizer)
    distinct = list(dict.fromkeys(heads))
    where = {h: i for i, h in enumerate(distinct)}
    dim = vectors.shape[1] if vectors is not None and vectors.ndim == 2 and vectors.shape[0] else None
    stored: dict[str, np.ndarray] = {}
    for h, m in zip(heads, metas, strict=True):
        if h not in stored:
            vec = decode_vector(m.get("hvec"), dim)
            if vec is not None:
                stored[h] = vec
    types = np.stack([chunk_types(m, d) for m, d in zip(metas, docs, strict=True)]) \
        if docs else np.zeros((0, 0), dtype=np.float32)
    return Snapshot(
        version, ids, docs, metas, index, vectors, Abbreviations.learn(docs),
        np.asarray([str(m.get("patient", "")) for m in metas], dtype=object),
        np.asarray([str(m.get("modality", "")).upper() for m in metas], dtype=object),
        np.asarray([int(m.get("study_day", 0) or 0) for m in metas], dtype=np.int64),
        {cid: i for i, cid in enumerate(ids)}, distinct,
        np.asarray([where[h] for h in heads], dtype=np.int64), heading_vectors(distinct, stored, embed, model), types)


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
    embedder = store.embedder
    return from_rows(version, ids, docs, metas, matrix, kind, embed=embedder.embed, model=embedder.name)


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
