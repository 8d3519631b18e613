"""Hybrid retrieval with exact citations.

A query runs twice over the same chunks: dense (cosine similarity in Chroma, MiniLM embeddings)
and lexical (BM25, :mod:`knowledge.bm25`, catches exact terms such as "Lung-RADS 4X" or "6 mm").
The two rankings are fused by reciprocal rank fusion (score = sum of 1 / (60 + rank)), filtered by
collection, patient key, modality and study-date range, and deduplicated by section (one passage
per source section). Each result is a :class:`Citation` whose ``quote`` is the stored passage,
identical to ``original_text[span[0]:span[1]]``.

Reports are indexed negation-aware ("no effusion" does not match "effusion"; see
:func:`knowledge.bm25.tokenize_negated`). The BM25 index is built from the collection on first use and cached per process; it is rebuilt
when the collection's write counter changes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from knowledge.bm25 import BM25Index, tokenize, tokenize_negated
from knowledge.store import KINDS, KnowledgeStore, collection_name
from tools.errors import InputError, StoreError

log = logging.getLogger(__name__)

RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)
CANDIDATES = 30  # results taken from each ranking before fusion (at least 4 k)


@dataclass(frozen=True)
class Citation:
    """One retrieved passage with its provenance. ``section`` is the heading path ("A > B"), ``page``
    is 1-based or None, ``span`` the character span of ``quote`` in the ingested text, ``score`` the
    fused RRF score (higher is better; at most 2 / 61)."""

    chunk_id: str
    source: str
    title: str
    organisation: str
    year: int | None
    section: str
    page: int | None
    url: str
    quote: str
    score: float
    kind: str
    patient: str | None = None
    study_date: str | None = None
    modality: str | None = None
    span: tuple[int, int] = (0, 0)
    reference: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["span"] = list(self.span)
        return out

    def label(self) -> str:
        """A short human reference: "Title (Organisation, Year), Section, p. N"."""
        who = ", ".join(x for x in (self.organisation, str(self.year) if self.year else "") if x)
        parts = [f"{self.title} ({who})" if who else self.title]
        if self.study_date:
            parts.append(self.study_date)
        if self.section:
            parts.append(self.section)
        return ", ".join(parts)


def to_citation(chunk_id: str, document: str, meta: dict[str, Any], score: float) -> Citation:
    page = int(meta.get("page", 0) or 0)
    year = int(meta.get("year", 0) or 0)
    return Citation(
        chunk_id=chunk_id, source=str(meta.get("source", "")), title=str(meta.get("title", "")),
        organisation=str(meta.get("organisation", "")), year=year or None,
        section=str(meta.get("section", "")), page=page or None, url=str(meta.get("url", "")),
        quote=document, score=round(float(score), 6), kind=str(meta.get("kind", "")),
        patient=str(meta.get("patient", "")) or None, study_date=str(meta.get("study_date", "")) or None,
        modality=str(meta.get("modality", "")) or None,
        span=(int(meta.get("start", 0)), int(meta.get("end", 0))), reference=str(meta.get("reference", "")))


# --- the cached lexical side --------------------------------------------------------------------
@dataclass
class _Lexical:
    version: int
    ids: list[str]
    documents: list[str]
    metas: list[dict[str, Any]]
    index: BM25Index
    patient: np.ndarray
    modality: np.ndarray
    study_day: np.ndarray
    position: dict[str, int]


_LEXICAL: dict[tuple[str, str], _Lexical] = {}
_BUILDING: set[tuple[str, str]] = set()
_LEXICAL_LOCK = threading.Lock()


def _embed_text(document: str, meta: dict[str, Any]) -> str:
    section = str(meta.get("section", ""))
    heading = " > ".join(x for x in (str(meta.get("title", "")), section) if x)
    return f"{heading}\n{document}" if heading else document


def _build_lexical(store: KnowledgeStore, kind: str, version: int) -> _Lexical:
    """Read the collection's committed chunks (generation <= ``version``) and index them."""
    ids: list[str] = []
    docs: list[str] = []
    metas: list[dict[str, Any]] = []
    for row in store.iter_all(kind):
        meta = row["metadatas"] or {}
        if int(meta.get("gen", 0) or 0) > version:
            continue  # written by a run that has not committed yet
        ids.append(row["id"])
        docs.append(row["documents"] or "")
        metas.append(meta)
    tokenizer = tokenize_negated if kind == "report" else tokenize
    index = BM25Index([_embed_text(d, m) for d, m in zip(docs, metas, strict=True)], tokenizer=tokenizer)
    return _Lexical(
        version, ids, docs, metas, index,
        np.asarray([str(m.get("patient", "")) for m in metas], dtype=object),
        np.asarray([str(m.get("modality", "")).upper() for m in metas], dtype=object),
        np.asarray([int(m.get("study_day", 0) or 0) for m in metas], dtype=np.int64),
        {cid: i for i, cid in enumerate(ids)})


def lexical_index(store: KnowledgeStore, kind: str) -> _Lexical:
    """The collection's last committed state as a BM25 index, cached per process and rebuilt when a
    writer commits. While one thread rebuilds it, other searches use the previous state instead of
    waiting."""
    key = (store.location, collection_name(kind))
    version = store.version(kind)
    with _LEXICAL_LOCK:
        cached = _LEXICAL.get(key)
        if cached is not None and (cached.version == version or key in _BUILDING):
            return cached
        _BUILDING.add(key)
    try:
        built = _build_lexical(store, kind, version)
    finally:
        with _LEXICAL_LOCK:
            _BUILDING.discard(key)
    with _LEXICAL_LOCK:
        current = _LEXICAL.get(key)
        if current is None or current.version <= built.version:
            _LEXICAL[key] = built
    log.info("BM25 index for %s: %d chunks (generation %d)", key[1], len(built.ids), version)
    return built


# --- filters ---------------------------------------------------------------------------------------
def _day(value: str | _dt.date | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, _dt.date):
        return int(value.strftime("%Y%m%d"))
    try:
        return int(_dt.date.fromisoformat(str(value)[:10]).strftime("%Y%m%d"))
    except ValueError:
        raise InputError(f"{name} must be a date as YYYY-MM-DD, got {value!r}") from None


@dataclass(frozen=True)
class Filters:
    patient: str | None = None
    modality: str | None = None
    day_from: int | None = None
    day_to: int | None = None

    def where(self) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        if self.patient:
            clauses.append({"patient": self.patient})
        if self.modality:
            clauses.append({"modality": self.modality})
        if self.day_from is not None:
            clauses.append({"study_day": {"$gte": self.day_from}})
        if self.day_to is not None:
            clauses.append({"study_day": {"$lte": self.day_to}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def mask(self, lex: _Lexical) -> np.ndarray | None:
        if not any((self.patient, self.modality, self.day_from is not None, self.day_to is not None)):
            return None
        mask = np.ones(len(lex.ids), dtype=bool)
        if self.patient:
            mask &= lex.patient == self.patient
        if self.modality:
            mask &= lex.modality == self.modality
        if self.day_from is not None:
            mask &= lex.study_day >= self.day_from
        if self.day_to is not None:
            mask &= lex.study_day <= self.day_to
        return mask


def clean_query(query: str, max_chars: int) -> str:
    """Strip, refuse an empty query, and truncate one over ``max_chars`` characters (warning)."""
    if not isinstance(query, str) or not query.strip():
        raise InputError("the query is empty")
    query = " ".join(query.split())
    if len(query) > max_chars:
        log.warning("query of %d characters truncated to %d (RADCONSULT_MAX_QUERY_CHARS)", len(query), max_chars)
        query = query[:max_chars]
    return query


def hybrid_search(store: KnowledgeStore, query: str, kind: str = "guideline", patient: str | None = None,
                  k: int = 5, modality: str | None = None, date_from: str | _dt.date | None = None,
                  date_to: str | _dt.date | None = None, dense: bool = True, lexical: bool = True,
                  dedupe: bool = True) -> list[Citation]:
    """The ``k`` best passages for ``query`` from the ``kind`` collection ("guideline", "report" or
    "all"), fused from the dense and BM25 rankings. ``dense``/``lexical`` switch a side off (ablations)."""
    if not 1 <= k <= 100:
        raise InputError(f"k must be between 1 and 100, got {k}")
    query = clean_query(query, store.config.max_query_chars)
    kinds = list(KINDS) if kind == "all" else [kind]
    for each in kinds:
        collection_name(each)
    filters = Filters(patient or None, modality.upper() if modality else None,
                      _day(date_from, "date_from"), _day(date_to, "date_to"))
    n_cand = max(CANDIDATES, 4 * k)
    fused: dict[tuple[str, str], float] = {}
    tie: dict[tuple[str, str], float] = {}
    rows: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    query_vec = store.embedder.embed([query])[0] if dense else None
    for each in kinds:
        lex = lexical_index(store, each)
        if not lex.ids:
            continue
        if lexical:
            top = lex.index.top(query, n_cand, filters.mask(lex))
            best = top[0][1] if top else 1.0
            for rank, (i, raw) in enumerate(top, start=1):
                key = (each, lex.ids[i])
                fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
                tie[key] = tie.get(key, 0.0) + raw / best
                rows[key] = (lex.documents[i], lex.metas[i])
        if query_vec is not None:
            try:
                result = store.collection(each).query(
                    query_embeddings=[query_vec.tolist()], n_results=min(n_cand, len(lex.ids)),
                    where=filters.where(), include=["distances"])
                distances = result["distances"][0]
            except Exception as exc:
                raise StoreError(f"dense search in {collection_name(each)!r} failed: {exc}") from None
            for rank, cid in enumerate(result["ids"][0], start=1):
                pos = lex.position.get(cid)
                if pos is None:  # written after the index was built: next query rebuilds it
                    continue
                key = (each, cid)
                fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
                tie[key] = tie.get(key, 0.0) + 1.0 - float(distances[rank - 1])
                rows[key] = (lex.documents[pos], lex.metas[pos])
    # equal fused ranks (one list's first is the other's second) are broken by the raw scores
    ranked = sorted(fused.items(), key=lambda item: (-round(item[1], 9), -tie[item[0]], item[0][1]))
    out: list[Citation] = []
    seen: set[tuple[str, str]] = set()
    for (each, cid), score in ranked:
        document, meta = rows[(each, cid)]
        section_key = (str(meta.get("source", "")), str(meta.get("section", "")))
        if dedupe and section_key in seen:
            continue
        seen.add(section_key)
        out.append(to_citation(cid, document, meta, score))
        if len(out) == k:
            break
    return out

