"""Scale-out: the knowledge base on a Chroma server (``chroma run``) shared by several processes,
against the embedded store, in one run.

For each store (a Chroma server started here on a free loopback port, then the embedded store on disk),
with the program's default settings:

1. a first half of the documents is ingested by a ``radconsult kb ingest`` process alone;
2. two query processes (each like a UI instance: one ``KnowledgeBase`` opened once, guideline searches
   with k=3, one after another) run alone for ``--idle-s`` seconds: the baseline latency;
3. the same two query processes keep querying while a third process ingests the second half.

Printed: ingest seconds and characters per second (alone and under query load), query p50/p95 and
queries per second (idle and during the ingest), and every error. Documents: MedQuAD answers as for
``bench/retrieval.py --scale`` (a seeded sample); queries: their questions.

Run:  nice python bench/kb_scaleout.py                    (800 documents: about 20 minutes on 2 busy cores)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shared_data() -> Path:
    return Path(os.environ.get("RADCONSULT_SHARED", ROOT.parent / "shared")) / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_chroma(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        exe = Path(shutil.which("chroma") or "")
    if not exe.is_file():
        raise SystemExit("the `chroma` command is missing (it comes with `pip install chromadb`)")
    port = free_port()
    proc = subprocess.Popen([str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        if proc.poll() is not None:
            raise SystemExit("chroma run exited at start-up")
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("chroma run did not open its port within 120 s")


# --- the query worker (a separate process, like one UI instance) ---------------------------------------
def worker(questions: Path, out: Path, stop: Path, seed: int) -> int:
    from agent.settings import load_settings
    from agent.wiring import knowledge_config
    from knowledge.base import KnowledgeBase

    kb = KnowledgeBase(knowledge_config(load_settings())).open()
    qs = json.loads(questions.read_text())
    random.Random(seed).shuffle(qs)
    kb.search("warm up", k=3)
    marks: list[tuple[float, float]] = []  # (wall clock, latency ms)
    errors: list[str] = []
    n = 0
    while not stop.exists():
        q = qs[n % len(qs)]
        n += 1
        t0 = time.perf_counter()
        try:
            kb.search(q, "guideline", k=3)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
        marks.append((time.time(), (time.perf_counter() - t0) * 1000))
        out.write_text(json.dumps({"marks": marks, "errors": errors}))
    return 0


def _ingest(folder: Path, env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "kb", "ingest", str(folder), "--kind", "guideline",
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=7200)
    seconds = time.perf_counter() - t0
    err = proc.stderr.strip().splitlines()[-1] if proc.returncode else ""
    return seconds, proc.returncode, err


def _window(marks: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [ms for t, ms in marks if start <= t <= end]


def run_store(label: str, env: dict[str, str], base: Path, stream: Path, chars: tuple[int, int],
              questions: Path, work: Path, idle_s: float) -> list[list[Any]]:
    rows: list[list[Any]] = []
    seconds, rc, err = _ingest(base, env)
    rows.append([label, "ingest alone (1 writer)", f"{seconds:.1f} s, {chars[0] / seconds:,.0f} chars/s",
                 "", "", "", "ok" if rc == 0 else f"exit {rc}: {err}"])
    stop = work / f"stop-{label}"
    outs = [work / f"q-{label}-{i}.json" for i in (1, 2)]
    workers = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(questions),
                                 str(out), str(stop), str(i)], cwd=ROOT, env=env)
               for i, out in enumerate(outs)]
    try:
        deadline = time.monotonic() + 300
        while not all(o.exists() for o in outs) and time.monotonic() < deadline:
            time.sleep(0.5)  # each worker has loaded the model and answered its first query
        idle_start = time.time()
        time.sleep(idle_s)
        idle_end = ingest_start = time.time()
        seconds, rc, err = _ingest(stream, env)
        ingest_end = time.time()
    finally:
        stop.write_text("stop")
        for w in workers:
            try:
                w.wait(timeout=120)
            except subprocess.TimeoutExpired:
                w.kill()
    results = [json.loads(o.read_text()) if o.exists() else {"marks": [], "errors": ["no output"]} for o in outs]
    marks = [m for r in results for m in r["marks"]]
    errors = [e for r in results for e in r["errors"]]
    for phase, (a, b) in (("2 readers, idle", (idle_start, idle_end)),
                          ("2 readers + 1 writer", (ingest_start, ingest_end))):
        ms = _window(marks, a, b)
        rows.append([label, phase, "" if phase.endswith("idle") else
                     f"{seconds:.1f} s, {chars[1] / seconds:,.0f} chars/s" + ("" if rc == 0 else f" (exit {rc})"),
                     len(ms), f"{np.percentile(ms, 50):.0f}" if ms else "-",
                     f"{np.percentile(ms, 95):.0f}" if ms else "-", f"{len(errors)} errors" if errors else "no error"])
    for e in sorted(set(errors))[:5]:
        print(f"  {label} error: {e}", file=sys.stderr)
    if rc:
        print(f"  {label} ingest failed: {err}", file=sys.stderr)
    return rows


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
    from bench.kb_scale import build_corpus
    from bench.retrieval import table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=800, help="documents (half ingested first, half under load)")
    parser.add_argument("--idle-s", type=float, default=60.0, help="seconds of queries without a writer")
    parser.add_argument("--stores", default="server,embedded", help="which stores to run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not shared_data().is_dir():
        print(f"shared data not found at {shared_data()} (set RADCONSULT_SHARED)", file=sys.stderr)
        return 1
    corpus = build_corpus(shared_data(), args.docs, lambda: [], args.seed)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="radconsult-scaleout-") as tmp:
        work = Path(tmp)
        half = len(corpus.docs) // 2
        folders = (work / "base", work / "stream")
        chars = (sum(len(t) for _, t in corpus.docs[:half]), sum(len(t) for _, t in corpus.docs[half:]))
        for folder, docs in zip(folders, (corpus.docs[:half], corpus.docs[half:]), strict=True):
            folder.mkdir()
            for name, text in docs:
                (folder / f"{name}.md").write_text(text, encoding="utf-8")
        questions = work / "questions.json"
        questions.write_text(json.dumps([q for q, _, _ in corpus.queries]))
        for label in args.stores.split(","):
            env = {**os.environ, "RADCONSULT_DATA_DIR": str(work / f"data-{label}"),
                   "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
                   "PYTHONPATH": str(ROOT)}
            env.pop("RADCONSULT_CHROMA_URL", None)
            server = None
            if label == "server":
                server, url = start_chroma(work / "chroma-server")
                env["RADCONSULT_CHROMA_URL"] = url
            try:
                rows += run_store(label, env, folders[0], folders[1], chars, questions, work, args.idle_s)
            finally:
                if server is not None:
                    server.terminate()
                    server.wait(timeout=30)
    text = table(f"Scale-out: {len(corpus.docs)} MedQuAD documents ({corpus.chars:,} characters), half ingested "
                 f"first, half while two query processes run",
                 ["store", "phase", "ingest", "queries", "p50 ms", "p95 ms", "errors"], rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
