"""A cold `radconsult ask`: one process per question, as a clinician's shell runs it, against the same turn in a
warm process (the baseline, in the same run). Prints where the cold time goes: interpreter and imports, the
model's load, the prompt prefix (restored from disk), and the turn itself.

    python bench/cold_ask.py [--runs 5] [--llm gguf:qwen2.5-coder-1.5b]

Two kinds of question: one the rules read fully (answered by the calculator with no LLM call, so the process
never loads the model, torch or the knowledge base) and one that needs the model (its frame draft, retrieval,
its prose). Target (issue 20): a rule-read cold `ask` p50 <= 6 s on this 2-core CPU. Each run asks a new
wording, so no run finds its question in a KV cache. The knowledge base and the prompt prefix are prepared
once, untimed, first.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = [
    ("rule-read", "{size}x{short} mm solid nodule, never smoker, {age}F, f/u?"),  # the class 8 shorthand
    ("model", "Why is low-dose CT used for lung cancer screening instead of chest X-ray? (ref {age}-{size})"),
]
WORDINGS = [(7, 58), (6, 61), (8, 49), (7, 66), (6, 52), (8, 70), (7, 45), (6, 63)]


def cold(question: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "agent.cli", "-v", "ask", question, "--json"], env=env,
                         capture_output=True, text=True, timeout=900)
    total = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        raise SystemExit(f"ask failed: {out.stderr[-500:]}")
    parts = {}
    m = re.search(r"loaded \S+ in ([\d.]+) s", out.stderr)
    if m:
        parts["model load"] = float(m.group(1))
    m = re.search(r'"total_ms": ([\d.]+)', out.stdout)
    if m:
        parts["turn"] = float(m.group(1)) / 1000
    return total, parts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--llm", default=None)
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    env = dict(os.environ, **({"RADCONSULT_LLM": args.llm} if args.llm else {}))
    wordings = iter(WORDINGS * 4)

    from agent.consultation import Consultation
    from agent.settings import load_settings

    settings = load_settings(**({"llm": args.llm} if args.llm else {}))
    warm = Consultation(settings, checkpoint_path=settings.data_dir / f"bench-{uuid.uuid4().hex[:6]}.sqlite")
    warm.warm_up()  # the knowledge base and the prompt prefix exist before anything is timed
    t0 = time.perf_counter()
    import_s = float(subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import agent.cli, "
                                     "agent.consultation, agent.graph; print(time.perf_counter()-t)"],
                                    capture_output=True, text=True, env=env).stdout.strip() or "nan")
    rows: dict[str, dict[str, list[float]]] = {}
    for kind, template in QUESTIONS:
        for _ in range(args.runs):
            size, age = next(wordings)
            q = template.format(size=size, short=size - 2, age=age)
            total, parts = cold(q, env)
            r = rows.setdefault(kind, {"cold": [], "model load": [], "turn": [], "warm": []})
            r["cold"].append(total)
            for k, v in parts.items():
                r[k].append(v)
            size, age = next(wordings)
            t1 = time.perf_counter()
            warm.ask(f"warm-{uuid.uuid4().hex[:6]}", template.format(size=size, short=size - 2, age=age))
            r["warm"].append(time.perf_counter() - t1)
    warm.close()
    med = statistics.median
    print(f"{args.runs} runs per kind, {os.cpu_count()} cores; imports of agent.cli + consultation + graph: "
          f"{import_s:.1f} s (one process); bench {time.perf_counter() - t0:.0f} s")
    print("| question | cold ask p50 s | model load p50 s | turn inside the cold process p50 s | warm turn p50 s | "
          "cold / warm |")
    print("|---|---|---|---|---|---|")
    for kind, r in rows.items():
        print(f"| {kind} | {med(r['cold']):.1f} | {med(r['model load']) if r['model load'] else float('nan'):.1f} | "
              f"{med(r['turn']) if r['turn'] else float('nan'):.1f} | {med(r['warm']):.1f} | "
              f"{med(r['cold']) / med(r['warm']):.1f}x |")
    print("each cold run, s: " + "; ".join(f"{k} " + " ".join(f"{x:.1f}" for x in r["cold"]) for k, r in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
