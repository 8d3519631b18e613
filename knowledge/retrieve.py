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

from knowledge.snapshot import Snapshot, snapshot
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


def _dense(store: KnowledgeStore, kind: str, snap: Snapshot, vector: np.ndarray, n: int,
           filters: Filters) -> list[tuple[int, float]]:
    """The ``n`` nearest committed chunks as (snapshot row, cosine similarity). Exact search over the
    snapshot's vectors for the embedded store; the server's index for a Chroma server (tried again
    after a short pause when a request fails)."""
    if snap.vectors is not None:
        if not len(snap.ids) or snap.vectors.shape[1] != vector.shape[0]:
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
        lex = snapshot(store, each)
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
            for rank, (pos, sim) in enumerate(_dense(store, each, lex, query_vec, n_cand, filters), start=1):
                key = (each, lex.ids[pos])
                fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
                tie[key] = tie.get(key, 0.0) + sim
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

