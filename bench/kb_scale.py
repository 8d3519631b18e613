"""The knowledge base at hospital scale, against the naive pipeline, both in one process.

Corpus: every MedQuAD answer in ../shared/data/medquad (4,602 in the six subsets there) as one
Markdown file each ("# Focus" + the answer), the five NCI PDQ summaries (long, with real section
headings) and real IU chest X-ray reports as distractor documents until ``--scale-docs`` (default
5,500). Queries: the MedQuAD questions as asked, and each once rephrased (bench/paraphrase.py:
template dropped, shorthand, lay words, abbreviations, typos), split by subset: the retrieval
settings were tuned on the *dev* subsets (NIDDK, NINDS, CDC; bench/kb_tune.py); the *test* subsets
(CancerGov, SeniorHealth, NHLBI) are reported and were never used for tuning. A hit is any document
whose answer text is the question's own answer (MedQuAD repeats some answers under several questions).

Ours: ``KnowledgeBase.ingest(folder)``, the path ``radconsult kb ingest DIR`` takes (files read,
loaded, chunked, embedded with the default backend, written to the embedded Chroma store on disk,
committed), with the program's default settings. Naive: LangChain's RecursiveCharacterTextSplitter
(1000/200), the same MiniLM model run by sentence-transformers, an in-memory Chroma collection,
added in batches of 512 chunks; its search is Chroma's dense top-k (what ``similarity_search``
returns). Memory: peak resident set size of the process while each pipeline ingests (VmHWM, reset
before each). The incremental run is ours again over the unchanged folder.
"""

from __future__ import annotations

import contextlib
import random
import re
import resource
import statistics
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEV = ("5_NIDDK_QA", "6_NINDS_QA", "9_CDC_QA")
TEST = ("1_CancerGov_QA", "7_SeniorHealth_QA", "8_NHLBI_QA_XML")


@dataclass
class Corpus:
    """Documents as (name, Markdown text) and queries as (question, split, relevant names)."""

    docs: list[tuple[str, str]] = field(default_factory=list)
    queries: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)
    about: list[tuple[str, str, str]] = field(default_factory=list)  # per query: (MedQuAD qtype, focus, subset)
    medquad_docs: int = 0

    @property
    def chars(self) -> int:
        return sum(len(t) for _, t in self.docs)


def build_corpus(shared: Path, n_docs: int, iu_reports: Callable[[], list[tuple[str, str]]],
                 seed: int = 7) -> Corpus:
    """All MedQuAD answers, then IU reports (as distractors) until ``n_docs`` documents (fewer
    documents than MedQuAD answers: a seeded sample of the answers, no distractors)."""
    corpus = Corpus()
    answer_key: dict[str, str] = {}
    own: list[tuple[str, str, str]] = []
    for folder in (*TEST, *DEV):
        for path in sorted((shared / "medquad" / folder).glob("*.xml")):
            root = ET.parse(path).getroot()
            focus = " ".join((root.findtext("Focus") or path.stem).split())
            for pair in root.iter("QAPair"):
                question = " ".join((pair.findtext("Question") or "").split())
                answer = (pair.findtext("Answer") or "").strip()
                if not question or len(answer) < 40:
                    continue
                name = f"{folder[:12]}-{path.stem}-{pair.get('pid')}"
                body = re.sub(r"[ \t]+", " ", answer)
                corpus.docs.append((name, f"# {focus}\n\n{body}\n"))
                answer_key[name] = " ".join(answer.lower().split())
                qtype = (pair.find("Question").get("qtype") or "") if pair.find("Question") is not None else ""
                own.append((question, "test" if folder in TEST else "dev", name, qtype, focus, folder))
    if n_docs < len(corpus.docs):  # a smaller run (smoke tests): a seeded sample of the answers
        keep = set(random.Random(seed).sample(range(len(corpus.docs)), n_docs))
        corpus.docs = [d for i, d in enumerate(corpus.docs) if i in keep]
        own = [o for i, o in enumerate(own) if i in keep]
        answer_key = {name: answer_key[name] for name, _ in corpus.docs}
    corpus.medquad_docs = len(corpus.docs)
    same: dict[str, set[str]] = {}
    for name, key in answer_key.items():
        same.setdefault(key, set()).add(name)
    corpus.queries = [(q, split, frozenset(same[answer_key[name]])) for q, split, name, *_ in own]
    corpus.about = [(qtype, focus, folder) for *_, qtype, focus, folder in own]
    for name, text in iu_reports():
        if len(corpus.docs) >= n_docs:
            break
        corpus.docs.append((name, f"# Chest radiograph report\n\n{text}"))
    return corpus


def pdq_documents(shared: Path) -> list[tuple[str, str]]:
    """The NCI PDQ summaries (../shared/data/guidelines/nci_pdq) as (name, Markdown text): long documents
    with real section headings, in the corpus beside the MedQuAD answers."""
    return [(f"pdq-{p.stem}", p.read_text(encoding="utf-8"))
            for p in sorted((shared / "guidelines" / "nci_pdq").glob("*.md"))]


# --- measuring -----------------------------------------------------------------------------------------
def reset_peak_rss() -> None:
    """Reset the process's peak resident set size (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    peak_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


def measured(fn: Callable[[], Any]) -> tuple[Run, Any]:
    reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return Run(time.perf_counter() - t0, time.process_time() - c0, peak_rss_mb()), out


# --- the naive pipeline ------------------------------------------------------------------------------
class Naive:
    """LangChain RecursiveCharacterTextSplitter(1000, 200) + in-memory Chroma, the same MiniLM model run
    by sentence-transformers, chunks added in batches of 512."""

    BATCH = 512

    def __init__(self, embed: Callable[[list[str]], np.ndarray], name: str = "naive") -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
        self.col = self.client.get_or_create_collection(name, configuration={"hnsw": {"space": "cosine"}},
                                                        embedding_function=None)
        self.embed = embed
        self.splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)

    def ingest(self, docs: list[tuple[str, str]]) -> int:
        def batches() -> Iterator[tuple[list[str], list[str], list[dict[str, str]]]]:
            ids: list[str] = []
            texts: list[str] = []
            metas: list[dict[str, str]] = []
            for name, text in docs:
                for n, chunk in enumerate(self.splitter.split_text(text)):
                    ids.append(f"{name}#{n}")
                    texts.append(chunk)
                    metas.append({"source": name})
                    if len(ids) == self.BATCH:
                        yield ids, texts, metas
                        ids, texts, metas = [], [], []
            if ids:
                yield ids, texts, metas

        for ids, texts, metas in batches():
            self.col.add(ids=ids, documents=texts, metadatas=metas, embeddings=self.embed(texts))
        return self.col.count()

    def search(self, query: str, k: int) -> list[str]:
        vec = self.embed([query])
        res = self.col.query(query_embeddings=vec, n_results=k, include=["metadatas"])
        return [str(m["source"]) for m in res["metadatas"][0]]


# --- retrieval metrics ---------------------------------------------------------------------------------
def rank_metrics(ranked: list[list[str]], relevant: list[frozenset[str]]) -> dict[str, float]:
    """recall@1, recall@5 and MRR@10 of ranked document names (a name may repeat: naive chunks)."""
    r1 = r5 = mrr = 0.0
    for names, rel in zip(ranked, relevant, strict=True):
        for i, name in enumerate(names[:10], start=1):
            if name in rel:
                r1 += i == 1
                r5 += i <= 5
                mrr += 1.0 / i
                break
    n = max(len(ranked), 1)
    return {"recall@1": r1 / n, "recall@5": r5 / n, "mrr@10": mrr / n}


def timed_queries(search: Callable[[str], list[str]], queries: list[str]) -> tuple[list[list[str]], list[float]]:
    out, ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(search(q))
        ms.append((time.perf_counter() - t0) * 1000)
    return out, ms


def bench_scale(args: Any, shared: Path, iu_reports: Callable[[], list[tuple[str, str]]],
                table: Callable[[str, list[str], list[list[Any]]], str]) -> tuple[str, dict[str, Any]]:
    from agent.settings import Settings
    from agent.wiring import knowledge_config
    from bench.paraphrase import paraphrase
    from knowledge.base import KnowledgeBase
    from knowledge.embeddings import get_embedder

    corpus = build_corpus(shared, args.scale_docs, iu_reports, args.seed)
    pdq = pdq_documents(shared)
    corpus.docs = corpus.docs[:max(len(corpus.docs) - len(pdq), corpus.medquad_docs)] + pdq
    rng = random.Random(args.seed)
    picked = list(range(len(corpus.queries)))
    if args.scale_queries and len(picked) > args.scale_queries:
        picked = sorted(rng.sample(picked, args.scale_queries))
    # every question as asked, and once rephrased (bench/paraphrase.py); subset = MedQuAD folder
    queries: list[tuple[str, str, frozenset[str], str, str]] = []
    for i in picked:
        q, split, rel = corpus.queries[i]
        qtype, focus, folder = corpus.about[i]
        queries.append((q, split, rel, folder, "as asked"))
        other = paraphrase(q, qtype, focus, args.seed)
        if other:
            queries.append((other, split, rel, folder, "rephrased"))
    out: dict[str, Any] = {"documents": len(corpus.docs), "medquad_documents": corpus.medquad_docs,
                           "characters": corpus.chars, "queries": {s: sum(q[1] == s for q in queries)
                                                                   for s in ("dev", "test")}}
    with tempfile.TemporaryDirectory(prefix="radconsult-scale-") as tmp:
        work = Path(tmp)
        folder = work / "corpus"
        folder.mkdir()
        for name, text in corpus.docs:
            (folder / f"{name}.md").write_text(text, encoding="utf-8")
        config = knowledge_config(Settings(data_dir=work / "ours"))
        kb = KnowledgeBase(config).open()
        kb.store.embedder.embed(["warm up"])  # both models loaded before the clock starts
        naive_model = get_embedder(config.replace(embedding_backend="torch"))
        naive_model.embed(["warm up"])
        naive = Naive(lambda texts: naive_model.embed(texts, batch_size=32))

        runs: dict[str, Run] = {}
        order = ("ours", "naive") if args.seed % 2 else ("naive", "ours")
        for name in order:
            if name == "ours":
                runs["ours"], report = measured(lambda: kb.ingest([folder], kind="guideline", progress=False))
                runs["ours"].extra = {"chunks": report.chunks, "failed": len(report.failed)}
            else:
                runs["naive"], chunks = measured(lambda: naive.ingest(corpus.docs))
                runs["naive"].extra = {"chunks": chunks}
        runs["ours, unchanged re-run"], again = measured(lambda: kb.ingest([folder], kind="guideline",
                                                                             progress=False))
        runs["ours, unchanged re-run"].extra = {"chunks": again.chunks, "new": again.chunks_added,
                                                "unchanged_files": again.unchanged_files}

        kb.search("warm up", k=5)  # the snapshot is built once, outside the timed queries
        naive.search("warm up", 5)
        names = {name for name, _ in corpus.docs}
        ours_ranked, ours_ms = timed_queries(lambda q: [Path(c.source).stem for c in kb.search(q, k=10)
                                                        if Path(c.source).stem in names], [q for q, *_ in queries])
        naive_ranked, naive_ms = timed_queries(lambda q: naive.search(q, 10), [q for q, *_ in queries])

    corpus_mb = sum(len(t.encode("utf-8")) for _, t in corpus.docs) / 1e6
    rows: list[list[Any]] = []
    for name in ("naive", "ours", "ours, unchanged re-run"):
        r = runs[name]
        rows.append([name, len(corpus.docs), r.extra["chunks"], round(r.seconds, 1),
                     round(len(corpus.docs) / r.seconds, 1), round(corpus_mb / r.seconds, 4),
                     f"{runs['naive'].seconds / r.seconds:.2f}x", round(r.cpu_seconds, 1), round(r.peak_mb)])
        out[name] = {"seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "peak_rss_mb": r.peak_mb,
                     "chars_per_s": corpus.chars / r.seconds, **r.extra}
    text = table(f"Ingest at scale: {len(corpus.docs):,} documents ({corpus.medquad_docs:,} MedQuAD answers + "
                 f"{len(corpus.docs) - corpus.medquad_docs:,} IU reports), {corpus.chars:,} characters",
                 ["pipeline", "documents", "chunks", "ingest s", "docs/s", "MB/s", "throughput vs naive",
                  "CPU s", "peak RSS MiB"], rows)
    rows = []
    groups: list[tuple[str, str, str]] = [(split, "all", form) for split in ("test", "dev")
                                          for form in ("as asked", "rephrased")]
    groups += [(split, folder, form) for split, folders in (("test", TEST), ("dev", DEV)) for folder in folders
               for form in ("as asked", "rephrased")]
    for split, folder, form in groups:
        idx = [i for i, q in enumerate(queries) if q[1] == split and q[4] == form and folder in ("all", q[3])]
        if not idx:
            continue
        rel = [queries[i][2] for i in idx]
        cells: list[Any] = [f"{split} ({'reported' if split == 'test' else 'tuning'})", folder, form, len(idx)]
        for name, ranked, ms in (("naive", naive_ranked, naive_ms), ("ours", ours_ranked, ours_ms)):
            m = rank_metrics([ranked[i] for i in idx], rel)
            lat = [ms[i] for i in idx]
            cells += [m["recall@5"], m["mrr@10"]]
            out.setdefault("retrieval", {}).setdefault(f"{split}/{folder}/{form}", {})[name] = {
                **m, "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95))}
        rows.append(cells)
    text += "\n" + table("Retrieval at scale (MedQuAD questions as asked and rephrased; a hit is the question's own "
                         "answer)", ["split", "subset", "questions", "n", "naive recall@5", "naive MRR@10",
                                     "ours recall@5", "ours MRR@10"], rows)
    lat_rows = [[name, float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), len(ms)]
                for name, ms in (("naive", naive_ms), ("ours", ours_ms))]
    text += "\n" + table(f"Query latency at {out['ours']['chunks']:,} chunks (ms)", ["pipeline", "p50", "p95", "n"],
                         lat_rows)
    ratio = runs["naive"].seconds / runs["ours"].seconds
    text += (f"\n\ningest: ours {corpus.chars / runs['ours'].seconds:,.0f} chars/s, naive "
             f"{corpus.chars / runs['naive'].seconds:,.0f} chars/s: {ratio:.2f}x; CPU time ratio "
             f"{runs['naive'].cpu_seconds / runs['ours'].cpu_seconds:.2f}x; unchanged re-run "
             f"{runs['ours, unchanged re-run'].seconds:.1f} s; median query ms ours "
             f"{statistics.median(ours_ms):.1f}, naive {statistics.median(naive_ms):.1f}")
    out["ratio"] = ratio
    return text, out
