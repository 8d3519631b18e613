"""Hybrid retrieval with exact citations.

A query is scored against the same committed chunks (:mod:`knowledge.snapshot`) on four kinds of
evidence: the cosine of its MiniLM vector with the passage's vector (embedded with its heading path)
and with the heading path's own vector (what the section is about); BM25F over two fields, the heading
path weighted above the passage (:class:`knowledge.bm25.BM25FIndex`, catches exact terms such as
"Lung-RADS 4X" or "6 mm", and abbreviations expanded from the product's vocabulary); and the agreement
of the question's type (treatment, symptoms, follow-up interval ...) with what the chunk is about
(:mod:`knowledge.question_types`). The candidates (best of the dense and the lexical side) are ranked
by a weighted sum of that evidence (:class:`Fusion`, weights chosen on a tuning split), filtered by
collection, patient key, modality and study-date range, and deduplicated by section (one passage per
source section). Each result is a :class:`Citation` whose ``quote`` is the stored passage, identical
to ``original_text[span[0]:span[1]]``.

Reports are indexed negation-aware ("no effusion" does not match "effusion"; see
:func:`knowledge.bm25.tokenize_negated`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from knowledge.bm25 import tokenize, tokenize_negated, words
from knowledge.question_types import question_types
from knowledge.snapshot import Snapshot, snapshot
from knowledge.store import KINDS, KnowledgeStore, collection_name
from knowledge.terms import written_words
from tools.errors import InputError, StoreError

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Fusion:
    """How a chunk's evidence is combined into one score (a weighted sum, chosen on the tuning split by
    ``bench/kb_tune.py``, never on the reported one):

    ``dense`` x cosine of the query and the passage vector, ``heading`` x cosine of the query and the
    heading-path vector (what the section is about), ``lexical`` x BM25F score / the best BM25F score of
    the query, ``types`` x agreement of the question's type with the chunk's (:mod:`knowledge.question_types`).
    Candidates: the ``candidates`` best of the dense and of the lexical side (at least 4 k).
    Reranking (:func:`rerank`), over the ``rerank`` best: plus ``subject`` x the idf-weighted share of the
    query's words in the chunk's heading path and ``coverage`` x their share anywhere in the chunk.
    ``expansion``: weight of the query words added for abbreviations (0 switches expansion off).
    ``near_duplicate``: word-set overlap (Jaccard, 0-1) above which a passage repeats one already
    returned and is left out (1 keeps every passage)."""

    dense: float = 1.0  # chosen by coordinate ascent on MRR@10 of the tuning split (bench/kb_tune.py)
    heading: float = 0.8
    lexical: float = 0.3  # tuned 0.1; 0.3 costs <0.01 there and keeps a rare exact term (a code, a drug) on top
    types: float = 0.3
    subject: float = 0.2
    coverage: float = 0.05
    rerank: int = 50
    candidates: int = 50
    expansion: float = 0.5
    near_duplicate: float = 0.9


FUSION = Fusion()


@dataclass(frozen=True)
class Citation:
    """One retrieved passage with its provenance. ``section`` is the heading path ("A > B"), ``page``
    is 1-based or None, ``span`` the character span of ``quote`` in the ingested text, ``score`` the
    fused score (higher is better; comparable within one search only)."""

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


def fuse(snap: Snapshot, query_vec: np.ndarray | None, qtypes: np.ndarray, lexical_hits: list[tuple[int, float]],
         dense_hits: list[tuple[int, float]], fusion: Fusion) -> list[tuple[int, float]]:
    """Snapshot rows of the candidates (both sides' hits) ranked by the weighted sum of their evidence
    (:class:`Fusion`); equal scores keep the lower row first."""
    rows = list(dict.fromkeys([r for r, _ in dense_hits] + [r for r, _ in lexical_hits]))
    if not rows:
        return []
    idx = np.asarray(rows, dtype=np.int64)
    score = np.zeros(len(rows), dtype=np.float64)
    if fusion.dense and dense_hits:
        if snap.vectors is not None and query_vec is not None and snap.vectors.shape[1:] == query_vec.shape:
            score += fusion.dense * (snap.vectors[idx] @ query_vec)
        else:  # a server answered: candidates it did not return count as its last one
            known = dict(dense_hits)
            floor = min(known.values())
            score += fusion.dense * np.asarray([known.get(r, floor) for r in rows])
    if fusion.heading and query_vec is not None and snap.heading_vectors is not None \
            and snap.heading_vectors.shape[1:] == query_vec.shape:
        score += fusion.heading * (snap.heading_vectors[snap.heading_row[idx]] @ query_vec)
    if fusion.lexical and lexical_hits:
        best = lexical_hits[0][1] or 1.0
        lex = dict(lexical_hits)
        score += fusion.lexical * np.asarray([lex.get(r, 0.0) / best for r in rows])
    if fusion.types and qtypes.any() and snap.types.size:
        score += fusion.types * (snap.types[idx] @ qtypes)
    order = np.lexsort((idx, -np.round(score, 9)))
    return [(rows[i], float(score[i])) for i in order]


def rerank(snap: Snapshot, terms: dict[str, float], ranked: list[tuple[int, float]],
           fusion: Fusion) -> list[tuple[int, float]]:
    """The second stage, over the ``fusion.rerank`` best of ``ranked``: adds how much of the query the
    chunk's heading path and the whole chunk cover (idf-weighted: a rare word of the subject counts more
    than "treatment"); the rest keep their order below."""
    if not ranked or (fusion.subject <= 0 and fusion.coverage <= 0):
        return ranked
    head, tail = ranked[:fusion.rerank], ranked[fusion.rerank:]
    docs = np.asarray([r for r, _ in head], dtype=np.int64)
    in_heading, anywhere = snap.index.coverage(terms, docs)
    score = np.asarray([s for _, s in head]) + fusion.subject * in_heading + fusion.coverage * anywhere
    order = np.lexsort((docs, -np.round(score, 9)))
    floor = float(score.min()) if len(score) else 0.0
    return [(int(docs[i]), float(score[i])) for i in order] + [(r, min(s, floor)) for r, s in tail]


def rank_snapshot(snap: Snapshot, query: str, query_vec: np.ndarray | None, kind: str, n: int,
                  filters: Filters, fusion: Fusion = FUSION, lexical: bool = True,
                  dense_hits: list[tuple[int, float]] | None = None) -> list[tuple[int, float]]:
    """(row, score) of the best committed chunks of one collection for ``query``. The dense side
    is exact search over the snapshot's vectors unless ``dense_hits`` come from elsewhere (a server)."""
    terms = query_terms(query, snap, kind, fusion.expansion)
    lexical_hits = snap.index.top(terms, n, filters.mask(snap)) if lexical else []
    if dense_hits is None:
        dense_hits = _exact(snap, query_vec, n, filters) if query_vec is not None else []
    if query_vec is None:
        fusion = replace(fusion, dense=0.0, heading=0.0)
    if not lexical:
        fusion = replace(fusion, lexical=0.0)
    ranked = fuse(snap, query_vec, question_types(query), lexical_hits, dense_hits, fusion)
    return rerank(snap, terms, ranked, fusion)


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
