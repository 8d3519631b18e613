"""A BM25 (Okapi) index as a sparse term-by-document weight matrix.

All of BM25's per-(term, document) arithmetic is done once at build time, so a query is a sum of a
few sparse rows: milliseconds at 100k chunks, where rank-bm25 rescans every document per query.
Scores equal rank-bm25's ``BM25Okapi`` up to its epsilon floor for negative idf (we use the
non-negative Lucene idf, ``log(1 + (N - df + 0.5) / (df + 0.5))``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import sparse

from knowledge.terms import spelling
from knowledge.terms import stem as _stem

_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i if in
into is it its may might more most no not of on or our should so such than that the their them then there these
they this those to was were what when where which who whom why will with would you your about also any each
other some""".split()  # noqa: SIM905
)


def stem(token: str) -> str:
    """A token's index form: American spelling, then plural and verb endings stripped
    (:mod:`knowledge.terms`): oedemas -> edema, opacities -> opacity, treated -> treat."""
    return _stem(spelling(token))


def words(text: str) -> list[str]:
    """Lower-cased word and number tokens, stop words included, not stemmed."""
    return _TOKEN.findall(text.lower())


def tokenize(text: str) -> list[str]:
    """Lower-cased word and number tokens, stop words dropped, in their index form (:func:`stem`)."""
    return [stem(t) for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


_CLAUSE = re.compile(r"[.;:!?\n]|\b(?:but|however|except|although)\b")
_NEG_TOKEN = re.compile(r"negative for|free of|absence of|no evidence of|[a-z0-9]+(?:\.[0-9]+)?")
_NEG_TRIGGERS = frozenset({"no", "not", "without", "negative for", "free of", "absence of", "no evidence of",
                           "neither", "nor", "resolved", "excluded"})


def tokenize_negated(text: str) -> list[str]:
    """Like :func:`tokenize`, but a finding inside a negated clause ("No pleural effusion or
    pneumothorax.") becomes ``no_effusion``, ``no_pneumothorax``: a report that denies a finding no
    longer matches a query for it. The scope runs from the trigger to the end of the clause
    (sentence punctuation, "but", "however"). Used for reports, where negation is the rule."""
    out: list[str] = []
    for clause in _CLAUSE.split(text.lower()):
        negated = False
        for m in _NEG_TOKEN.finditer(clause):
            token = m.group(0)
            if token in _NEG_TRIGGERS:
                negated = True
                continue
            if token in STOPWORDS:
                continue
            out.append(("no_" if negated else "") + stem(token))
    return out


class BM25Index:
    """BM25 over a fixed list of texts. ``k1`` (term-frequency saturation, 1.2-2.0) and ``b``
    (length normalisation, 0-1) are the usual Okapi parameters."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75,
                 tokenizer: Callable[[str], list[str]] = tokenize) -> None:
        self.tokenizer = tokenizer
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        data: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.float64)
        for j, text in enumerate(texts):
            counts = Counter(tokenizer(text))
            lengths[j] = sum(counts.values())
            for term, tf in counts.items():
                rows.append(vocab.setdefault(term, len(vocab)))
                cols.append(j)
                data.append(tf)
        self.vocab = vocab
        self.n_docs = len(texts)
        n_terms = max(len(vocab), 1)
        tf = sparse.csr_matrix((np.asarray(data, dtype=np.float32), (rows, cols)),
                               shape=(n_terms, max(self.n_docs, 1)))
        if self.n_docs == 0:
            self.weights = tf
            return
        df = np.diff(tf.indptr).astype(np.float64)
        idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))
        avgdl = float(lengths.mean()) or 1.0
        coo = tf.tocoo()
        norm = k1 * (1.0 - b + b * lengths[coo.col] / avgdl)
        weights = idf[coo.row] * coo.data * (k1 + 1.0) / (coo.data + norm)
        self.weights = sparse.csr_matrix((weights.astype(np.float32), (coo.row, coo.col)), shape=tf.shape)

    def scores(self, query: str | Mapping[str, float]) -> np.ndarray:
        """BM25 score of every document for ``query``: a text (tokenized like the documents) or index
        terms with their weights (zeros when no query term is known)."""
        counts: Mapping[str, float] = Counter(self.tokenizer(query)) if isinstance(query, str) else query
        known = [t for t in counts if t in self.vocab]
        if not known or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        qtf = np.asarray([counts[t] for t in known], dtype=np.float32)
        rows = self.weights[[self.vocab[t] for t in known]]
        return np.asarray(rows.T @ qtf).ravel()[: self.n_docs]

    def top(self, query: str | Mapping[str, float], n: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``n`` best documents with a positive score, optionally only where ``mask`` is True."""
        scores = self.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        positive = int(np.count_nonzero(scores > 0))
        n = min(n, positive)
        if n <= 0:
            return []
        idx = np.argpartition(-scores, n - 1)[:n]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return [(int(i), float(scores[i])) for i in idx]


class BM25FIndex(BM25Index):
    """BM25F (Robertson, Zaragoza and Taylor 2004): one document made of fields (here a chunk's heading
    path and its passage), each with its own weight and length normalisation. A term's pseudo
    frequency is ``sum_f weight_f * tf_f / (1 - b_f + b_f * len_f / avglen_f)``, saturated once with
    ``k1``, so a word in the title counts ``weight`` times one in the body without a long title or
    a repeated word taking over. The query side is :class:`BM25Index`'s (same ``scores``/``top``).

    ``fields``: one sequence of texts per field, each as long as the corpus; ``weights`` and ``bs``
    (0-1) per field."""

    def __init__(self, fields: Sequence[Sequence[str]], weights: Sequence[float], bs: Sequence[float],
                 k1: float = 1.2, tokenizer: Callable[[str], list[str]] = tokenize) -> None:
        self.tokenizer = tokenizer
        n_docs = len(fields[0]) if fields else 0
        vocab: dict[str, int] = {}
        token_cache: dict[str, list[str]] = {}  # headings repeat across a document's chunks
        per_field: list[tuple[list[int], list[int], list[float], np.ndarray]] = []
        for texts in fields:
            rows: list[int] = []
            cols: list[int] = []
            data: list[float] = []
            lengths = np.zeros(n_docs, dtype=np.float64)
            for j, text in enumerate(texts):
                tokens = token_cache.get(text)
                if tokens is None:
                    tokens = tokenizer(text)
                    if len(text) < 300:
                        token_cache[text] = tokens
                counts = Counter(tokens)
                lengths[j] = len(tokens)
                for term, tf in counts.items():
                    rows.append(vocab.setdefault(term, len(vocab)))
                    cols.append(j)
                    data.append(float(tf))
            per_field.append((rows, cols, data, lengths))
        self.vocab = vocab
        self.n_docs = n_docs
        shape = (max(len(vocab), 1), max(n_docs, 1))
        if n_docs == 0:
            self.weights = sparse.csr_matrix(shape, dtype=np.float32)
            self.first_field = self.weights
            self.idf = np.zeros(shape[0], dtype=np.float32)
            return
        pseudo = sparse.csr_matrix(shape, dtype=np.float64)
        for (rows, cols, data, lengths), weight, b in zip(per_field, weights, bs, strict=True):
            if not rows or weight <= 0:
                continue
            avg = float(lengths.mean()) or 1.0
            norm = 1.0 - b + b * lengths / avg
            cols_a = np.asarray(cols)
            values = weight * np.asarray(data) / np.maximum(norm[cols_a], 1e-9)
            pseudo = pseudo + sparse.csr_matrix((values, (rows, cols_a)), shape=shape)
        pseudo = pseudo.tocsr()
        df = np.diff(pseudo.indptr).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        self.idf = idf.astype(np.float32)
        rows, cols, _, _ = per_field[0]
        # which terms each document's first field (the heading path) holds: the reranker's subject match
        self.first_field = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
        self.first_field.data[:] = 1.0
        coo = pseudo.tocoo()
        values = idf[coo.row] * coo.data * (k1 + 1.0) / (coo.data + k1)
        self.weights = sparse.csr_matrix((values.astype(np.float32), (coo.row, coo.col)), shape=shape)

    def coverage(self, query: Mapping[str, float], docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``docs``: the idf-weighted share of the query's terms found in its first field
        (the heading path) and in any field, each in [0, 1]."""
        known = [t for t in query if t in self.vocab]
        if not known or not len(docs):
            return np.zeros(len(docs), dtype=np.float32), np.zeros(len(docs), dtype=np.float32)
        rows = [self.vocab[t] for t in known]
        w = self.idf[rows] * np.asarray([query[t] for t in known], dtype=np.float32)
        total = float(w.sum()) or 1.0
        heading = np.asarray(self.first_field[rows][:, docs].T @ w).ravel() / total
        anywhere = np.asarray((self.weights[rows][:, docs] > 0).astype(np.float32).T @ w).ravel() / total
        return heading.astype(np.float32), anywhere.astype(np.float32)
