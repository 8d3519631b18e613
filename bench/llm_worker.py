"""What the supervised worker costs: the same model in-process against through the worker, in one run.

Two levels, each interleaved A/B run by run so that both sides see the same machine:
1. bare chats (the system prompt and tool schemas of an agent turn, a streamed answer): the worker's own
   overhead, IPC and token relay included;
2. agent turns (``Consultation`` with ``llm_isolation=inprocess`` against ``worker``): a guideline question,
   an image question, and a question the model must answer in its own words.
The issue's bound: the worker may cost at most 5 % of a turn.

    python bench/llm_worker.py [--runs 5] [--llm gguf:qwen2.5-coder-1.5b]
    (also: python bench/agent.py --isolation-compare)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GUIDELINE = "Fleischner follow-up for a single {size} mm solid nodule in a low-risk {age}-year-old?"
IMAGE_Q = "Does this chest X-ray show pneumonia?"
OPEN_Q = "In two sentences, what is the difference between a {a} and a {b} pulmonary nodule on CT?"
SIZES = [(7, 60), (6, 55), (8, 63), (7, 58), (6, 66), (8, 52), (7, 71), (6, 49), (8, 57), (7, 64), (6, 61)]
PAIRS = [("solid", "part-solid"), ("part-solid", "ground-glass"), ("ground-glass", "solid"),
         ("calcified", "solid"), ("perifissural", "solid"), ("solid", "ground-glass")]


def p50(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def compare(runs: int, llm: str | None) -> list[tuple[str, float, float]]:
    """[(metric, in-process p50 s, worker p50 s)] measured in this process."""
    from agent.consultation import Consultation
    from agent.prompts import render
    from agent.settings import Settings

    base = Settings(**({"llm": llm} if llm else {}))
    sides = {iso: Consultation(base.model_copy(update={"llm_isolation": iso}),
                               checkpoint_path=base.data_dir / f"bench-{iso}-{uuid.uuid4().hex[:6]}.sqlite")
             for iso in ("inprocess", "worker")}
    shared = Path(os.environ.get("RADCONSULT_SHARED", ROOT.parent / "shared"))
    image = shared / "data" / "cxr/nih_00000001_000_cardiomegaly.png"
    rows: dict[tuple[str, str], list[float]] = {}
    for consult in sides.values():  # load the model and its prompt prefix, untimed
        consult.ask(f"warm-{uuid.uuid4().hex[:6]}", GUIDELINE.format(size=5, age=50))
    system = {"role": "system", "content": render("system")}
    tools = [t.schema() for t in next(iter(sides.values())).tools.values()]
    for i in range(runs):
        size, age = SIZES[i % len(SIZES)]
        a, b = PAIRS[i % len(PAIRS)]
        for iso, consult in sides.items():
            t0 = time.perf_counter()
            consult.backend.chat([system, {"role": "user", "content": OPEN_Q.format(a=a, b=b)}], tools,
                                 tool_choice="none", on_token=lambda s: None, max_tokens=96)
            rows.setdefault(("bare chat, 96 tokens streamed", iso), []).append(time.perf_counter() - t0)
            turns = [("guideline turn", GUIDELINE.format(size=size, age=age), None),
                     ("open question turn", OPEN_Q.format(a=a, b=b), None)]
            if image.is_file():
                turns.append(("image turn", IMAGE_Q, [image]))
            for name, question, images in turns:
                r = consult.ask(f"bench-{uuid.uuid4().hex[:8]}", question, images=images, on_token=lambda s: None)
                rows.setdefault((name, iso), []).append(r.timings.total_ms / 1000)
    for consult in sides.values():
        consult.close()
    names = dict.fromkeys(name for name, _ in rows)
    return [(name, p50(rows[(name, "inprocess")]), p50(rows[(name, "worker")])) for name in names]


def print_table(results: list[tuple[str, float, float]], runs: int) -> None:
    threads = os.environ.get("RADCONSULT_LLM_THREADS") or "auto"
    print(f"{runs} interleaved runs, {os.cpu_count()} cores, {threads} LLM threads, load {os.getloadavg()[0]:.1f}")
    print("| metric | in-process p50 s (baseline) | worker p50 s | worker / in-process |")
    print("| --- | ---: | ---: | ---: |")
    for name, a, b in results:
        print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.3f}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--llm", default=None, help="RADCONSULT_LLM value (default: the settings' default)")
    args = ap.parse_args()
    print_table(compare(args.runs, args.llm), args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
