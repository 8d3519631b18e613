"""Retrieval benchmarks for the knowledge base, each against a baseline run in the same process.

1. MedQuAD (../shared/data/medquad): every answer is a document ("# Focus" + answer), every question
   a query; a hit is a passage from the question's own answer. recall@1, recall@5, MRR@10 for
   ours (heading-aware chunks, title-prefixed embeddings, hybrid dense + BM25 with RRF, section
   dedupe) and ablations, against the naive pipeline: LangChain RecursiveCharacterTextSplitter
   1000/200 + Chroma dense similarity with the same embedding model.
2. IU chest X-ray reports (../shared/data/reports/iu_xray_reports.tgz, read in place): reports are
   ingested as prior reports; queries are MeSH terms; precision@10 over distinct reports, judged by
   each report's own MeSH tags.
3. Scale: p50/p95 query latency at 5k, 50k and 100k chunks. Texts are real passages (MedQuAD, NCI PDQ,
   IU) reused round-robin; embeddings are *synthetic but realistic*: real MiniLM vectors of real
   chunks plus Gaussian noise, renormalised (embedding 100k chunks would take hours on 2 cores).
   Baselines: Chroma dense search alone on the same collection, and rank-bm25 for the lexical side.
4. Ingest throughput (characters of source text per second), ours vs the naive pipeline.
5. ``--scale``: the knowledge base at hospital scale (:mod:`bench.kb_scale`): 5,500 documents built
   from ../shared/data/medquad (every answer, topped up with IU reports as distractors), both
   pipelines ingesting in this process (seconds, chars/s, the ratio, CPU time, peak memory, the
   unchanged re-run), then recall@1/@5, MRR@10 and query p50/p95 on the held-out and the tuning
   subsets of the questions.

Run:  nice python bench/retrieval.py                 (subsets: a few minutes on 2 cores)
      nice python bench/retrieval.py --full          (all MedQuAD files, 3,955 reports, 10k+100k)
      nice python bench/retrieval.py --scale         (5,500 documents: about an hour on 2 busy cores)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge.config import KnowledgeConfig  # noqa: E402
from knowledge.embeddings import Embedder, chroma_embedding_function, get_embedder  # noqa: E402
from knowledge.headings import encode_vector  # noqa: E402
from knowledge.ingest import ingest_documents  # noqa: E402
from knowledge.loaders import load_text_document  # noqa: E402
from knowledge.question_types import encode as encode_types  # noqa: E402
from knowledge.question_types import passage_types  # noqa: E402
from knowledge.retrieve import hybrid_search  # noqa: E402
from knowledge.snapshot import snapshot  # noqa: E402
from knowledge.store import KnowledgeStore  # noqa: E402

log = logging.getLogger("bench.retrieval")
IU_TERMS = {"cardiomegaly": "cardiomegaly", "effusion": "pleural effusion", "opacity": "lung opacity",
            "atelectasis": "atelectasis", "normal": "normal chest, no acute cardiopulmonary abnormality"}


def shared_data() -> Path:
    return Path(os.environ.get("RADCONSULT_SHARED", ROOT.parent / "shared")) / "data"


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([f"\n### {title}\n", line, sep, *body])


# --- naive baseline ----------------------------------------------------------------------------------
class Naive:
    """RecursiveCharacterTextSplitter(1000, 200) + Chroma dense similarity, same embedding model run
    by sentence-transformers (torch), as LangChain's HuggingFaceEmbeddings would."""

    def __init__(self, path: Path, embedder: Embedder, name: str = "naive") -> None:
        import chromadb
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.client = chromadb.PersistentClient(path=str(path))
        self.col = self.client.get_or_create_collection(
            name, embedding_function=chroma_embedding_function(embedder))
        self.embedder = embedder
        self.splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)

    def ingest(self, docs: list[tuple[str, str]]) -> float:
        """docs: (source, text). Returns seconds. Embeds like LangChain's HuggingFaceEmbeddings
        (batches of 32, in one call per add)."""
        started = time.perf_counter()
        ids, texts, metas = [], [], []
        for source, text in docs:
            for n, chunk in enumerate(self.splitter.split_text(text)):
                ids.append(f"{source}#{n}")
                texts.append(chunk)
                metas.append({"source": source})
        for i in range(0, len(ids), 4000):
            vectors = self.embedder.embed(texts[i:i + 4000], batch_size=32)
            self.col.add(ids=ids[i:i + 4000], documents=texts[i:i + 4000], metadatas=metas[i:i + 4000],
                         embeddings=vectors)
        return time.perf_counter() - started

    def search(self, query: str, k: int) -> list[str]:
        vec = self.embedder.embed([query])[0]
        res = self.col.query(query_embeddings=[vec.tolist()], n_results=k, include=["metadatas"])
        return [m["source"] for m in res["metadatas"][0]]


def ranks_to_metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {"recall@1": sum(1 for r in ranks if r is not None and r <= 1) / n,
            "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
            "mrr@10": sum(1.0 / r for r in ranks if r is not None and r <= 10) / n}


def first_rank(sources: list[str], target: str) -> int | None:
    for i, s in enumerate(sources, start=1):
        if s == target:
            return i
    return None


# --- MedQuAD ---------------------------------------------------------------------------------------
def load_medquad(n_files: int | None, seed: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(source, focus, markdown) documents and (question, source) queries from a spread of files."""
    folders = sorted(p for p in (shared_data() / "medquad").iterdir() if p.is_dir())
    files = [f for d in folders for f in sorted(d.glob("*.xml"))]
    rng = random.Random(seed)
    if n_files and n_files < len(files):
        files = sorted(rng.sample(files, n_files))
    docs, queries = [], []
    for f in files:
        root = ET.parse(f).getroot()
        focus = (root.findtext("Focus") or f.stem).strip()
        for pair in root.iter("QAPair"):
            q = (pair.findtext("Question") or "").strip()
            a = (pair.findtext("Answer") or "").strip()
            if not q or len(a) < 40:
                continue
            source = f"{f.parent.name}/{f.stem}#{pair.get('pid')}"
            text = re.sub(r"[ \t]+", " ", a)
            docs.append((source, focus, f"# {focus}\n\n{text}\n"))
            queries.append((q, source))
    return docs, queries


def bench_medquad(args: argparse.Namespace, embedder: Embedder, work: Path) -> tuple[str, dict[str, Any]]:
    docs, queries = load_medquad(args.medquad_files, args.seed)
    rng = random.Random(args.seed)
    if args.medquad_queries and len(queries) > args.medquad_queries:
        queries = rng.sample(queries, args.medquad_queries)
    settings = KnowledgeConfig.under(work / "medquad", batch_size=512)
    store = KnowledgeStore(settings, embedder)
    loaded = [(load_text_document(text, src, "guideline", "markdown"), src, "guideline")
              for src, _focus, text in docs]
    report = ingest_documents(loaded, store)
    naive = Naive(work / "medquad-naive", get_embedder(KnowledgeConfig.under(work / "x", embedding_backend="torch")))
    naive_s = naive.ingest([(src, text) for src, _f, text in docs])
    snapshot(store, "guideline")  # build the BM25 index outside the timed queries

    results: dict[str, list[int | None]] = {"naive": [], "ours: hybrid": [], "ours: dense only": [],
                                            "ours: BM25 only": []}
    for q, target in queries:
        results["naive"].append(first_rank(naive.search(q, 10), target))
        for name, dense, lexical in (("ours: hybrid", True, True), ("ours: dense only", True, False),
                                     ("ours: BM25 only", False, True)):
            hits = hybrid_search(store, q, "guideline", k=10, dense=dense, lexical=lexical)
            results[name].append(first_rank([h.source for h in hits], target))
    for backend in [b for b in args.recall_backends.split(",") if b]:
        b_settings = KnowledgeConfig.under(work / f"medquad-{backend}", batch_size=512, embedding_backend=backend)
        b_store = KnowledgeStore(b_settings, get_embedder(b_settings))
        ingest_documents([(load_text_document(text, src, "guideline", "markdown"), src, "guideline")
                          for src, _focus, text in docs], b_store)
        name = f"ours: hybrid ({backend} embeddings)"
        results[name] = [first_rank([h.source for h in hybrid_search(b_store, q, "guideline", k=10)], target)
                         for q, target in queries]
    rows, out = [], {}
    base = ranks_to_metrics(results["naive"])
    for name, ranks in results.items():
        m = ranks_to_metrics(ranks)
        out[name] = m
        rows.append([name, m["recall@1"], m["recall@5"], m["mrr@10"],
                     f"{m['recall@5'] / base['recall@5']:.2f}x" if base["recall@5"] else "-"])
    title = (f"MedQuAD: {len(docs)} answers as documents ({report.chunks} chunks ours, "
             f"{naive.col.count()} naive), {len(queries)} questions")
    out["ingest_s"] = {"ours": report.seconds, "naive": naive_s}
    return table(title, ["retrieval", "recall@1", "recall@5", "MRR@10", "recall@5 vs naive"], rows), out


# --- IU X-ray ----------------------------------------------------------------------------------------
def load_iu(n_reports: int | None, seed: int) -> list[tuple[str, str, set[str]]]:
    """(source, report text, MeSH major terms lower-cased) read from the tarball in place."""
    path = shared_data() / "reports" / "iu_xray_reports.tgz"
    out = []
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".xml"):
                continue
            root = ET.parse(tar.extractfile(member)).getroot()  # type: ignore[arg-type]
            parts = {el.get("Label"): (el.text or "").strip() for el in root.iter("AbstractText")}
            findings, impression = parts.get("FINDINGS", ""), parts.get("IMPRESSION", "")
            if not findings and not impression:
                continue
            mesh = {(m.text or "").strip().lower() for m in root.iter("major")}
            text = f"FINDINGS: {findings}\nIMPRESSION: {impression}\n"
            out.append((f"iu/{Path(member.name).stem}", text, mesh))
    out.sort(key=lambda r: int(r[0].split("/")[1]))
    if n_reports and n_reports < len(out):
        out = random.Random(seed).sample(out, n_reports)
    return out


def relevant(mesh: set[str], term: str) -> bool:
    if term == "normal":
        return mesh == {"normal"}
    return any(term in m.split("/")[0] for m in mesh)


def distinct(sources: list[str], k: int) -> list[str]:
    return list(dict.fromkeys(sources))[:k]


def bench_iu(args: argparse.Namespace, embedder: Embedder, work: Path) -> tuple[str, dict[str, Any]]:
    reports = load_iu(args.iu_reports, args.seed)
    tags = {src: mesh for src, _t, mesh in reports}
    settings = KnowledgeConfig.under(work / "iu", batch_size=512)
    store = KnowledgeStore(settings, embedder)
    loaded = []
    for src, text, _mesh in reports:
        doc = load_text_document(text, src, "report", "text")
        doc.meta.update({"title": "Chest radiograph report", "modality": "CR", "patient": "IU-" + src[3:]})
        loaded.append((doc, src, "report"))
    report = ingest_documents(loaded, store)
    naive = Naive(work / "iu-naive", get_embedder(KnowledgeConfig.under(work / "x", embedding_backend="torch")))
    naive.ingest([(src, text) for src, text, _m in reports])
    rows, out = [], {}
    for term, query in IU_TERMS.items():
        prevalence = sum(relevant(m, term) for m in tags.values()) / len(tags)
        ours = distinct([h.source for h in hybrid_search(store, query, "report", k=30, dedupe=False)], 10)
        base = distinct(naive.search(query, 30), 10)
        p_ours = sum(relevant(tags[s], term) for s in ours) / 10
        p_base = sum(relevant(tags[s], term) for s in base) / 10
        out[term] = {"ours": p_ours, "naive": p_base, "prevalence": prevalence}
        rows.append([term, f"{query}", prevalence, p_base, p_ours])
    mean_ours = statistics.mean(v["ours"] for v in out.values())
    mean_base = statistics.mean(v["naive"] for v in out.values())
    rows.append(["mean", "", "", mean_base, mean_ours])
    title = f"IU X-ray: {len(reports)} reports ({report.chunks} chunks), precision@10 by MeSH tags"
    return table(title, ["MeSH term", "query", "prevalence", "naive P@10", "ours P@10"], rows), out


# --- scale ---------------------------------------------------------------------------------------------
def passage_pool(limit: int) -> list[str]:
    """Real passages: MedQuAD answers, NCI PDQ paragraphs and IU reports, cut to <= 800 characters."""
    pool: list[str] = []
    for path in sorted((shared_data() / "guidelines" / "nci_pdq").glob("*.md")):
        pool += [p.strip()[:800] for p in path.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 80]
    docs, _ = load_medquad(None, 0)
    for _src, _f, text in docs:
        pool += [text[i:i + 800] for i in range(0, len(text), 800) if len(text[i:i + 800]) > 80]
        if len(pool) > limit:
            break
    return pool


def bench_scale(args: argparse.Namespace, embedder: Embedder, work: Path) -> tuple[str, dict[str, Any]]:
    from rank_bm25 import BM25Okapi

    from knowledge.bm25 import tokenize

    sizes = [int(s) for s in args.latency_sizes.split(",") if s]
    pool = passage_pool(max(sizes))
    rng = np.random.default_rng(args.seed)
    base_n = min(args.real_vectors, len(pool))
    base_vecs = embedder.embed(pool[:base_n])
    queries = [q for q, _ in load_medquad(60, args.seed + 1)[1]][: args.latency_queries]
    rows, out = [], {}
    torch_embedder = get_embedder(KnowledgeConfig.under(work / "x", embedding_backend="torch"))
    for size in sizes:
        settings = KnowledgeConfig.under(work / f"scale{size}", embedding_backend="torch")
        store = KnowledgeStore(settings, torch_embedder).open()
        col = store.collection("guideline")
        t0 = time.perf_counter()
        for start in range(0, size, 5000):
            n = min(5000, size - start)
            idx = np.arange(start, start + n)
            vecs = base_vecs[idx % base_n] + rng.normal(0, 0.03, (n, base_vecs.shape[1])).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            # what the writer stores with each chunk (knowledge.ingest): its types and its heading's vector
            heads = {i: vecs[i - start - (i % 10)] for i in idx}  # one per section of ten chunks
            col.add(ids=[f"c{i}" for i in idx], embeddings=vecs,
                    documents=[pool[i % len(pool)] for i in idx],
                    metadatas=[{"source": f"s{i // 10}", "section": f"section {i % 10}",
                                "title": f"document {i // 50}", "kind": "guideline",
                                "types": encode_types(passage_types(f"section {i % 10}", pool[i % len(pool)])),
                                "hvec": encode_vector(heads[i])} for i in idx])
        store.commit("guideline")
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        snapshot(store, "guideline")
        index_s = time.perf_counter() - t0
        fast = KnowledgeStore(settings.replace(embedding_backend="auto"))
        fast.embedder.embed(["warm up"])
        timings: dict[str, list[float]] = {"embed query (torch)": [], "dense (Chroma) only": [],
                                           "BM25 (ours) only": [], "hybrid (ours, torch query embedding)": [],
                                           "embed query (default)": [], "hybrid (ours, default)": []}
        for q in queries:
            t = time.perf_counter()
            vec = torch_embedder.embed([q])[0]
            timings["embed query (torch)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            col.query(query_embeddings=[vec.tolist()], n_results=30, include=["distances"])
            timings["dense (Chroma) only"].append(time.perf_counter() - t)
            t = time.perf_counter()
            hybrid_search(store, q, k=5, dense=False)
            timings["BM25 (ours) only"].append(time.perf_counter() - t)
            t = time.perf_counter()
            hybrid_search(store, q, k=5)
            timings["hybrid (ours, torch query embedding)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            fast.embedder.embed([q])
            timings["embed query (default)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            hybrid_search(fast, q, k=5)
            timings["hybrid (ours, default)"].append(time.perf_counter() - t)
        # baseline for the lexical side: rank-bm25 over the same texts (few queries: it is slow)
        texts = [pool[i % len(pool)] for i in range(size)]
        ref = BM25Okapi([tokenize(t) for t in texts])
        rb = []
        for q in queries[:5]:
            t = time.perf_counter()
            ref.get_scores(tokenize(q))
            rb.append(time.perf_counter() - t)
        timings["BM25 (rank-bm25) only"] = rb
        out[size] = {}
        for name, values in timings.items():
            ms = np.asarray(values) * 1000
            p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
            out[size][name] = {"p50_ms": p50, "p95_ms": p95}
            rows.append([f"{size:,}", name, p50, p95, len(values)])
        out[size]["load_s"], out[size]["bm25_build_s"] = load_s, index_s
        del ref
    title = (f"Query latency (ms; embeddings: {base_n} real MiniLM vectors + noise; texts: real passages; "
             f"hybrid includes embedding the query)")
    return table(title, ["chunks", "step", "p50 ms", "p95 ms", "queries"], rows), out


# --- ingest throughput -----------------------------------------------------------------------------------
def bench_ingest(args: argparse.Namespace, work: Path, backends: list[str]) -> tuple[str, dict[str, Any]]:
    """Each pipeline runs ``--ingest-repeats`` times, interleaved with the others, into a fresh store;
    the fastest run of each counts (this machine is shared, so the minimum is the fairest figure)."""
    texts = []
    total = 0
    for path in sorted((shared_data() / "guidelines" / "nci_pdq").glob("*.md")):
        text = path.read_text(encoding="utf-8")[: args.ingest_chars // 2]
        texts.append((path.name, text))
        total += len(text)
        if total >= args.ingest_chars:
            break
    chars = sum(len(t) for _, t in texts)
    base = get_embedder(KnowledgeConfig.under(work / "x", embedding_backend="torch"))  # what LangChain would use
    base.embed(["warm"])
    embedders = {}
    for backend in backends:
        settings = KnowledgeConfig.under(work / "ingest-cache", embedding_backend=backend)
        embedders[backend] = get_embedder(settings)
        embedders[backend].embed(["warm"])
    best: dict[str, float] = {}
    for rep in range(args.ingest_repeats):
        naive = Naive(work / f"ingest-naive-{rep}", base, "naive_ingest")
        best["naive"] = min(best.get("naive", float("inf")), naive.ingest(texts))
        for backend in backends:
            settings = KnowledgeConfig.under(work / f"ingest-{backend}-{rep}", batch_size=512,
                                embedding_backend=backend)
            store = KnowledgeStore(settings, embedders[backend])
            docs = [(load_text_document(t, n, "guideline", "markdown"), n, "guideline") for n, t in texts]
            best[backend] = min(best.get(backend, float("inf")), ingest_documents(docs, store).seconds)
    rows = [["naive (1000/200 splitter, batch 32, torch)", chars, best["naive"], chars / best["naive"], "1.00x"]]
    rows += [[f"ours ({b})", chars, best[b], chars / best[b], f"{best['naive'] / best[b]:.2f}x"] for b in backends]
    out = {name: chars / seconds for name, seconds in best.items()}
    return table(f"Ingest throughput (NCI PDQ text; chunk, embed, write; best of {args.ingest_repeats})",
                 ["pipeline", "chars", "seconds", "chars/s", "vs naive"], rows), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full sizes (slow: an hour or more on 2 cores)")
    parser.add_argument("--only", default="medquad,iu,scale,ingest", help="comma-separated parts to run")
    parser.add_argument("--medquad-files", type=int, default=30, help="MedQuAD XML files (0: all)")
    parser.add_argument("--medquad-queries", type=int, default=200, help="questions asked (0: all)")
    parser.add_argument("--iu-reports", type=int, default=500, help="IU reports ingested (0: all 3,955)")
    parser.add_argument("--scale", action="store_true",
                        help="only the hospital-scale benchmark (bench/kb_scale.py): both pipelines at 5,500 docs")
    parser.add_argument("--scale-docs", type=int, default=5500, help="documents in the --scale corpus")
    parser.add_argument("--scale-queries", type=int, default=0, help="questions asked in --scale (0: all)")
    parser.add_argument("--latency-sizes", default="5000,50000,100000", help="chunk counts for the latency test")
    parser.add_argument("--real-vectors", type=int, default=400, help="real embeddings behind the scale test")
    parser.add_argument("--latency-queries", type=int, default=40)
    parser.add_argument("--ingest-chars", type=int, default=60_000)
    parser.add_argument("--ingest-repeats", type=int, default=2)
    parser.add_argument("--backends", default="torch,onnx,onnx-int8", help="embedding backends for the ingest test")
    parser.add_argument("--recall-backends", default="onnx-int8",
                        help="extra embedding backends whose MedQuAD recall is measured")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if args.full:
        args.medquad_files, args.medquad_queries, args.iu_reports = 0, 0, 0
        args.real_vectors, args.latency_queries, args.ingest_chars = 2000, 200, 300_000
    logging.basicConfig(level=logging.WARNING)
    if not (shared_data()).is_dir():
        print(f"shared data not found at {shared_data()} (set RADCONSULT_SHARED)", file=sys.stderr)
        return 1
    parts = {"kb_scale"} if args.scale else set(args.only.split(","))
    results: dict[str, Any] = {}
    if "kb_scale" in parts:
        from bench.kb_scale import bench_scale as bench_kb_scale

        def iu_reports() -> list[tuple[str, str]]:
            return [(src.replace("/", "-"), text) for src, text, _ in load_iu(None, args.seed)]

        t0 = time.perf_counter()
        text, numbers = bench_kb_scale(args, shared_data(), iu_reports, table)
        print(text)
        print(f"\n(scale: {time.perf_counter() - t0:.0f} s)", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"kb_scale": numbers}, indent=2, default=str))
        return 0
    with tempfile.TemporaryDirectory(prefix="radconsult-bench-") as tmp:
        work = Path(tmp)
        embedder = get_embedder(KnowledgeConfig.under(work / "x"))
        embedder.embed(["warm up"])
        for name, fn in (("medquad", lambda: bench_medquad(args, embedder, work)),
                         ("iu", lambda: bench_iu(args, embedder, work)),
                         ("scale", lambda: bench_scale(args, embedder, work)),
                         ("ingest", lambda: bench_ingest(args, work, args.backends.split(",")))):
            if name not in parts:
                continue
            t0 = time.perf_counter()
            text, numbers = fn()
            results[name] = numbers
            print(text)
            print(f"\n({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
