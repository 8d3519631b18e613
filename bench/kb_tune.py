"""Choose the retrieval weights on the *tuning* split only (bench/kb_scale.py: MedQuAD's NIDDK, NINDS and
CDC subsets), in memory: the same corpus as ``bench/retrieval.py --scale`` (MedQuAD answers, NCI PDQ
summaries, IU reports as distractors) chunked like ``kb ingest``, embedded once (cached in --cache),
searched through :func:`knowledge.retrieve.rank_snapshot` with each candidate setting. The reported
split is never searched here.

Run:  nice python bench/kb_tune.py --cache /tmp/kb_tune.npz       (first run embeds ~9k chunks)
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kb_scale import build_corpus, pdq_documents  # noqa: E402
from bench.paraphrase import paraphrase  # noqa: E402
from knowledge.chunking import make_chunks  # noqa: E402
from knowledge.config import KnowledgeConfig  # noqa: E402
from knowledge.embeddings import get_embedder  # noqa: E402
from knowledge.loaders import load_text_document  # noqa: E402
from knowledge.question_types import question_types  # noqa: E402
from knowledge.retrieve import FUSION, Filters, _exact, query_terms  # noqa: E402
from knowledge.snapshot import FIELDS, FieldWeights, from_rows  # noqa: E402


def shared_data() -> Path:
    return Path(os.environ.get("RADCONSULT_SHARED", ROOT.parent / "shared")) / "data"


class CachedEmbed:
    def __init__(self, path: Path, embed: Any) -> None:
        self.path, self.embed = path, embed
        self.cache: dict[str, np.ndarray] = {}
        if path.exists():
            data = np.load(path)
            self.cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self.cache))
        if missing:
            for i in range(0, len(missing), 512):
                part = missing[i:i + 512]
                for t, v in zip(part, self.embed(part), strict=True):
                    self.cache[hashlib.sha1(t.encode()).hexdigest()] = v
                print(f"  embedded {min(i + 512, len(missing))}/{len(missing)}", file=sys.stderr, flush=True)
            self.save()
        return np.stack([self.cache[k] for k in keys])

    def save(self) -> None:
        keys = list(self.cache)
        np.savez(self.path, keys=np.asarray(keys), vectors=np.stack([self.cache[k] for k in keys]))


def metrics(ranked: list[list[str]], relevant: list[frozenset[str]]) -> tuple[float, float]:
    r5 = mrr = 0.0
    for names, rel in zip(ranked, relevant, strict=True):
        for i, name in enumerate(names[:10], start=1):
            if name in rel:
                r5 += i <= 5
                mrr += 1.0 / i
                break
    return r5 / len(ranked), mrr / len(ranked)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/kb_tune.npz"))
    parser.add_argument("--docs", type=int, default=5500)
    parser.add_argument("--grid", default="small", help="small | fields | none")
    args = parser.parse_args()
    corpus = build_corpus(shared_data(), args.docs, lambda: [], 7)
    dev_docs = {n for q in corpus.queries if q[1] == "dev" for n in q[2]}
    docs = [d for d in corpus.docs if d[0] in dev_docs] + pdq_documents(shared_data())  # the tuning split's own
    embed = CachedEmbed(args.cache, get_embedder(KnowledgeConfig.under(Path("/tmp/kb_tune"))).embed)
    ids, texts, metas, embed_texts = [], [], [], []
    for name, text in docs:
        doc = load_text_document(text, name, "guideline", "markdown")
        for c in make_chunks(doc, name):
            ids.append(c.id)
            texts.append(c.text)
            embed_texts.append(c.embed_text)
            metas.append({"source": name, "title": doc.meta.get("title", ""), "section": c.section})
    t0 = time.perf_counter()
    vectors = embed(embed_texts)
    print(f"{len(ids)} chunks from {len(docs)} documents ({time.perf_counter() - t0:.0f} s to embed)", flush=True)
    dev = [i for i, q in enumerate(corpus.queries) if q[1] == "dev"]
    questions = [corpus.queries[i][0] for i in dev]
    para = [paraphrase(corpus.queries[i][0], corpus.about[i][0], corpus.about[i][1]) for i in dev]
    keep = [j for j, p in enumerate(para) if p]
    sets = {"dev": (questions, [corpus.queries[i][2] for i in dev]),
            "dev paraphrased": ([para[j] for j in keep], [corpus.queries[dev[j]][2] for j in keep])}
    qvec = {name: embed(list(qs)) for name, (qs, _) in sets.items()}

    features = ("dense", "heading", "lexical", "types", "subject", "coverage")

    def collect(fields: FieldWeights) -> dict[str, list[tuple[np.ndarray, np.ndarray, frozenset[str]]]]:
        """Per question: its candidates' sources and evidence (one column per feature), computed once."""
        snap = from_rows(1, ids, texts, metas, vectors, "guideline", fields, embed=embed, model="m")
        out: dict[str, list[tuple[np.ndarray, np.ndarray, frozenset[str]]]] = {}
        for name, (qs, rel) in sets.items():
            out[name] = []
            for q, v, r in zip(qs, qvec[name], rel, strict=True):
                terms = query_terms(q, snap, "guideline", FUSION.expansion)
                lex = snap.index.top(terms, FUSION.candidates)
                dense = _exact(snap, v, FUSION.candidates, Filters())
                rows = np.asarray(list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in lex])), dtype=np.int64)
                best = lex[0][1] if lex else 1.0
                lx = dict(lex)
                head, anywhere = snap.index.coverage(terms, rows)
                x = np.stack([snap.vectors[rows] @ v, snap.heading_vectors[snap.heading_row[rows]] @ v,
                              np.asarray([lx.get(i, 0.0) / best for i in rows]),
                              snap.types[rows] @ question_types(q), head, anywhere], axis=1)
                out[name].append((np.asarray([snap.metas[i]["source"] for i in rows]), x, r))
        return out

    def score(data: dict[str, list[tuple[np.ndarray, np.ndarray, frozenset[str]]]], w: np.ndarray) -> list[float]:
        row = []
        for name in sets:
            ranked = []
            for sources, x, _ in data[name]:
                order = np.argsort(-(x @ w), kind="stable")
                ranked.append(list(dict.fromkeys(sources[order].tolist()))[:10])
            row += list(metrics(ranked, [r for *_, r in data[name]]))
        return row

    def show(label: str, w: np.ndarray, row: list[float]) -> None:
        print(f"{label:34} " + " ".join(f"{f}={x:g}" for f, x in zip(features, w, strict=True)) + " | "
              + " | ".join(f"{n}: r@5 {row[2 * i]:.3f} mrr {row[2 * i + 1]:.3f}" for i, n in enumerate(sets)),
              flush=True)

    start = np.asarray([FUSION.dense, FUSION.heading, FUSION.lexical, FUSION.types, FUSION.subject, FUSION.coverage])
    if args.grid == "fields":
        for h, hb in itertools.product((1.0, 2.0, 4.0), (0.0, 0.3, 0.75)):
            data = collect(replace(FIELDS, heading=h, heading_b=hb))
            show(f"heading={h} heading_b={hb}", start, score(data, start))
        return 0
    data = collect(FIELDS)
    show("naive-like: dense only", np.asarray([1.0, 0, 0, 0, 0, 0]), score(data, np.asarray([1.0, 0, 0, 0, 0, 0])))
    show("current defaults", start, score(data, start))
    if args.grid == "none":
        return 0
    # coordinate ascent on the mean MRR@10 of the tuning questions as asked and rephrased
    w = start.copy()
    best = float(np.mean(score(data, w)[1::2]))
    steps = {1: (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.3, 1.6), 2: (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
             3: (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7), 4: (0.0, 0.1, 0.2, 0.3, 0.5), 5: (0.0, 0.05, 0.1, 0.2, 0.3)}
    for _round in range(2):
        for j, values in steps.items():
            for value in values:
                trial = w.copy()
                trial[j] = value
                m = float(np.mean(score(data, trial)[1::2]))
                if m > best + 1e-4:
                    best, w = m, trial
            show(f"after {features[j]}", w, score(data, w))
    return 0


if __name__ == "__main__":
    sys.exit(main())
