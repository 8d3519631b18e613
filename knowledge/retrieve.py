"""Hybrid retrieval with exact citations.

A query runs twice over the same committed chunks (:mod:`knowledge.snapshot`): dense (cosine
similarity of MiniLM embeddings) and lexical (BM25, :mod:`knowledge.bm25`, catches exact terms such
as "Lung-RADS 4X" or "6 mm").
The two rankings are fused by reciprocal rank fusion (score = sum of 1 / (60 + rank)), filtered by
collection, patient key, modality and study-date range, and deduplicated by section (one passage
per source section). Each result is a :class:`Citation` whose ``quote`` is the stored passage,
identical to ``original_text[span[0]:span[1]]``.

Reports are indexed negation-aware ("no effusion" does not match "effusion"; see
:func:`knowledge.bm25.tokenize_negated`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from knowledge.bm25 import tokenize, tokenize_negated, words
from knowledge.snapshot import Snapshot, snapshot
from knowledge.store import KINDS, KnowledgeStore, collection_name
from knowledge.terms import written_words
from tools.errors import InputError, StoreError

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Fusion:
    """How the two rankings are combined: weighted reciprocal rank fusion (Cormack et al. 2009),
    ``dense / (rrf_k + dense rank) + lexical / (rrf_k + lexical rank)``, over the ``candidates`` best of
    each side (at least 4 k). ``expansion``: weight of the query words added for abbreviations
    (0 switches expansion off). ``near_duplicate``: word-set overlap (Jaccard, 0-1) above which a
    passage repeats one already returned and is left out (1 keeps every passage)."""

    rrf_k: int = 60
    dense: float = 1.0
    lexical: float = 1.0
    candidates: int = 30
    expansion: float = 0.5
    near_duplicate: float = 0.9


FUSION = Fusion()


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

    def to_dict(self) -> dict[str, Any]:
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

    def mask(self, lex: Snapshot) -> np.ndarray | None:
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


def _exact(snap: Snapshot, vector: np.ndarray, n: int, filters: Filters) -> list[tuple[int, float]]:
    """The ``n`` nearest committed chunks as (snapshot row, cosine similarity): exact search over the
    snapshot's vectors (milliseconds at 100k chunks)."""
    if snap.vectors is None or not len(snap.ids) or snap.vectors.shape[1] != vector.shape[0]:
        return []
    sims = snap.vectors @ vector
    mask = filters.mask(snap)
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
    n = min(n, int(np.count_nonzero(np.isfinite(sims))))
    if n <= 0:
        return []
    top = np.argpartition(-sims, n - 1)[:n]
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(int(i), float(sims[i])) for i in top]


def _server_dense(store: KnowledgeStore, kind: str, snap: Snapshot, vector: np.ndarray, n: int,
                  filters: Filters) -> list[tuple[int, float]]:
    """The Chroma server's nearest neighbours that are part of the committed state (tried again after a
    short pause when a request fails)."""
    for attempt in range(3):
        try:
            result = store.collection(kind).query(query_embeddings=[vector.tolist()], n_results=n,
                                                  where=filters.where(), include=["distances"])
            break
        except Exception as exc:
            if attempt == 2:
                raise StoreError(f"dense search in {collection_name(kind)!r} failed: {exc}") from None
            log.info("dense search in %s failed (%s); trying again", collection_name(kind), exc)
            time.sleep(0.1 * (attempt + 1))
    out = []
    for cid, distance in zip(result["ids"][0], result["distances"][0], strict=True):
        pos = snap.position.get(cid)
        if pos is not None:  # written by a run that has not committed yet: not part of the state
            out.append((pos, 1.0 - float(distance)))
    return out


def query_terms(query: str, snap: Snapshot, kind: str, expansion: float) -> dict[str, float]:
    """The query's index terms with their weights: each word once per use, plus the words of the
    long forms of its abbreviations (and the abbreviations of long forms) at ``expansion``."""
    tokenizer = tokenize_negated if kind == "report" else tokenize
    terms: dict[str, float] = {}
    for t in tokenizer(query):
        terms[t] = terms.get(t, 0.0) + 1.0
    if expansion > 0:
        for extra in snap.abbreviations.expand(written_words(query)):
            for t in tokenize(extra):
                terms.setdefault(t, expansion)
    return terms


def fuse(lexical_hits: list[tuple[int, float]], dense_hits: list[tuple[int, float]],
         fusion: Fusion) -> list[tuple[int, float]]:
    """Snapshot rows ranked by weighted RRF, equal fused scores broken by the raw scores."""
    fused: dict[int, float] = {}
    tie: dict[int, float] = {}
    best = lexical_hits[0][1] if lexical_hits else 1.0
    for weight, hits, scale in ((fusion.lexical, lexical_hits, best), (fusion.dense, dense_hits, 1.0)):
        if weight <= 0:
            continue
        for rank, (row, raw) in enumerate(hits, start=1):
            fused[row] = fused.get(row, 0.0) + weight / (fusion.rrf_k + rank)
            tie[row] = tie.get(row, 0.0) + raw / scale
    return sorted(fused.items(), key=lambda item: (-round(item[1], 9), -tie[item[0]], item[0]))


def rank_snapshot(snap: Snapshot, query: str, query_vec: np.ndarray | None, kind: str, n: int,
                  filters: Filters, fusion: Fusion = FUSION, lexical: bool = True,
                  dense_hits: list[tuple[int, float]] | None = None) -> list[tuple[int, float]]:
    """(row, fused score) of the best committed chunks of one collection for ``query``. The dense side
    is exact search over the snapshot's vectors unless ``dense_hits`` come from elsewhere (a server)."""
    lexical_hits = snap.index.top(query_terms(query, snap, kind, fusion.expansion), n, filters.mask(snap)) \
        if lexical else []
    if dense_hits is None:
        dense_hits = _exact(snap, query_vec, n, filters) if query_vec is not None else []
    return fuse(lexical_hits, dense_hits, fusion)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(words(text))


def near_duplicate(a: frozenset[str], b: frozenset[str], threshold: float) -> bool:
    """True when two passages' word sets overlap at least ``threshold`` (Jaccard)."""
    if threshold >= 1.0 or not a or not b:
        return False
    return len(a & b) >= threshold * len(a | b)


def hybrid_search(store: KnowledgeStore, query: str, kind: str = "guideline", patient: str | None = None,
                  k: int = 5, modality: str | None = None, date_from: str | _dt.date | None = None,
                  date_to: str | _dt.date | None = None, dense: bool = True, lexical: bool = True,
                  dedupe: bool = True, fusion: Fusion = FUSION) -> list[Citation]:
    """The ``k`` best passages for ``query`` from the ``kind`` collection ("guideline", "report" or
    "all"), fused from the dense and BM25 rankings of its last committed state. With ``dedupe`` (the
    default) one passage per source section, and no passage that nearly repeats one already returned.
    ``dense``/``lexical`` switch a side off (ablations)."""
    if not 1 <= k <= 100:
        raise InputError(f"k must be between 1 and 100, got {k}")
    query = clean_query(query, store.config.max_query_chars)
    kinds = list(KINDS) if kind == "all" else [kind]
    for each in kinds:
        collection_name(each)
    filters = Filters(patient or None, modality.upper() if modality else None,
                      _day(date_from, "date_from"), _day(date_to, "date_to"))
    n_cand = max(fusion.candidates, 4 * k)
    query_vec = store.embedder.embed([query])[0] if dense else None
    ranked: list[tuple[float, str, str, dict[str, Any]]] = []
    for each in kinds:
        snap = snapshot(store, each)
        if not snap.ids:
            continue
        dense_hits = None
        if query_vec is not None and snap.vectors is None:  # a Chroma server answers the dense side
            dense_hits = _server_dense(store, each, snap, query_vec, n_cand, filters)
        rows = rank_snapshot(snap, query, query_vec if dense else None, each, n_cand, filters, fusion,
                             lexical, dense_hits)
        ranked += [(score, snap.ids[row], snap.documents[row], snap.metas[row]) for row, score in rows]
    ranked.sort(key=lambda r: -round(r[0], 9))  # stable: ties keep each collection's own order
    out: list[Citation] = []
    seen: set[tuple[str, str]] = set()
    kept: list[frozenset[str]] = []
    for score, cid, document, meta in ranked:
        section_key = (str(meta.get("source", "")), str(meta.get("section", "")))
        if dedupe:
            if section_key in seen:
                continue
            word_set = _word_set(document)
            if any(near_duplicate(word_set, other, fusion.near_duplicate) for other in kept):
                continue
            kept.append(word_set)
        seen.add(section_key)
        out.append(to_citation(cid, document, meta, score))
        if len(out) == k:
            break
    return out
