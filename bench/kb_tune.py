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
from knowledge.retrieve import FUSION, Filters, Fusion, rank_snapshot  # noqa: E402
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

    def evaluate(fields: FieldWeights, fusions: list[Fusion]) -> None:
        snap = from_rows(1, ids, texts, metas, vectors, "guideline", fields, embed=embed, model="m")
        for fusion in fusions:
            row = []
            for name, (qs, rel) in sets.items():
                ranked = []
                for q, v in zip(qs, qvec[name], strict=True):
                    rows = rank_snapshot(snap, q, v, "guideline", fusion.candidates, Filters(), fusion)
                    seen: list[str] = []
                    for r, _ in rows:
                        src = snap.metas[r]["source"]
                        if src not in seen:
                            seen.append(src)
                        if len(seen) == 10:
                            break
                    ranked.append(seen)
                row.append(metrics(ranked, rel))
            print(f"{fields} {fusion.dense} {fusion.heading} {fusion.lexical} {fusion.types} {fusion.expansion} | "
                  + " | ".join(f"r@5 {a:.3f} mrr {b:.3f}" for a, b in row), flush=True)

    if args.grid == "none":
        evaluate(FIELDS, [FUSION, replace(FUSION, heading=0, lexical=0, types=0)])
    elif args.grid == "fields":
        for h, hb in itertools.product((1.0, 2.0, 4.0), (0.0, 0.3, 0.75)):
            evaluate(replace(FIELDS, heading=h, heading_b=hb), [FUSION])
    else:
        grid = [replace(FUSION, dense=1.0, heading=h, lexical=lx, types=t)
                for h, lx, t in itertools.product((0.0, 0.3, 0.6), (0.0, 0.2, 0.4, 0.7), (0.0, 0.1, 0.2))]
        evaluate(FIELDS, grid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
