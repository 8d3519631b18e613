"""Agent latency on this machine: p50 turn for a guideline question, time to first streamed token, and a
turn with an image (classify + retrieval); baseline = the same LLM answering alone (no tools) in the same
process.

    python bench/agent.py [--runs 3] [--llm gguf:qwen2.5-coder-0.5b]

Targets (2-core CPU, embedded default): guideline turn p50 <= 10 s, TTFT <= 3 s.
Each run is a new case; the model and the prompt-prefix KV cache are warmed by one untimed turn first.
Phases: guideline turns, image turns, guideline turns again (after the image tools ran), LLM alone.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# A new wording each run, as in use: the same question twice would find its own text in the KV cache
# (left by the previous turn) and skip reading it, about 0.5 s off the first token.
GUIDELINE_Q = "Fleischner follow-up for a single {size} mm solid nodule in a low-risk {age}-year-old?"
SIZES_AGES = [(7, 60), (6, 55), (8, 63), (7, 58), (6, 66), (8, 52), (7, 71), (6, 49), (8, 57), (7, 64)]
IMAGE_Q = "Does this chest X-ray show pneumonia? Use the pneumonia-cxr classifier."
IMAGE = "cxr/nih_00000001_000_cardiomegaly.png"


def p50(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--llm", default=None, help="RADCONSULT_LLM value (default: the settings' default)")
    ap.add_argument("--isolation-compare", action="store_true",
                    help="instead: the same turns in-process against through the model worker (bench/llm_worker.py)")
    args = ap.parse_args()
    if args.isolation_compare:
        from bench.llm_worker import compare, print_table

        print_table(compare(args.runs, args.llm), args.runs)
        return 0

    from agent.consultation import Consultation
    from agent.prompts import render
    from agent.settings import Settings
    from bench.agent_eval import shared_data_dir

    settings = Settings(**({"llm": args.llm} if args.llm else {}))
    consult = Consultation(settings, checkpoint_path=settings.data_dir / f"bench-{uuid.uuid4().hex[:6]}.sqlite")
    consult.ask(f"warm-{uuid.uuid4().hex[:6]}", "Hello")  # load the model, restore or compute the prefix

    seen: dict[str, list[str]] = {}
    rows: dict[str, list[float]] = {"guideline turn": [], "guideline TTFT": [], "image turn": [],
                                    "image TTFT": [], "guideline turn after image turns": [],
                                    "LLM alone turn": [], "LLM alone TTFT": []}
    image = shared_data_dir() / IMAGE
    wordings = itertools.cycle(SIZES_AGES)

    def guideline_q() -> str:
        size, age = next(wordings)
        return GUIDELINE_Q.format(size=size, age=age)

    def turn(kind: str, question: str, images: list[Path] | None = None, ttft: bool = True) -> None:
        r = consult.ask(f"bench-{uuid.uuid4().hex[:8]}", question, images=images, on_token=lambda s: None)
        seen[kind] = [c.name + (" (auto)" if c.auto else "") for c in r.tool_calls]
        rows[f"{kind} turn" if ttft else kind].append(r.timings.total_ms / 1000)
        if ttft:
            rows[f"{kind} TTFT"].append((r.timings.ttft_ms or r.timings.total_ms) / 1000)

    # Phases, not interleaved: the same turn takes about a third longer in a process that has run the image
    # tools (measured, cause not found: not threads, affinity, KV layout or spinning), so guideline
    # turns are timed both before and after the image turns.
    for _ in range(args.runs):
        turn("guideline", guideline_q())
    if image.is_file():
        for _ in range(args.runs):
            turn("image", IMAGE_Q, [image])
        for _ in range(args.runs):
            turn("guideline turn after image turns", guideline_q(), ttft=False)
    for _ in range(args.runs):
        first: list[float] = []

        def mark(_: str, first: list[float] = first) -> None:
            if not first:
                first.append(time.perf_counter())

        system = {"role": "system", "content": render("no_tools")}
        # Same cache state as an agent turn: the system prompt cached, the question not (without this, runs
        # 2..N would find the whole identical prompt cached and start in 0.0 s).
        consult.backend.chat([system, {"role": "user", "content": "Hello"}], None, tool_choice="none", max_tokens=1)
        t0 = time.perf_counter()
        consult.backend.chat([system, {"role": "user", "content": guideline_q()}], None, tool_choice="none",
                             on_token=mark)
        rows["LLM alone turn"].append(time.perf_counter() - t0)
        rows["LLM alone TTFT"].append((first[0] - t0) if first else float("nan"))
    consult.close()

    base_turn, base_ttft = p50(rows["LLM alone turn"]), p50(rows["LLM alone TTFT"])
    targets = {"guideline turn": 10.0, "guideline TTFT": 3.0, "guideline turn after image turns": 10.0}
    threads = os.environ.get("RADCONSULT_LLM_THREADS") or "auto"
    print(f"model {consult.model_name}, {args.runs} runs, {os.cpu_count()} cores, {threads} LLM threads, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| metric | p50 s | target s | LLM alone p50 s | ratio |")
    print("|---|---|---|---|---|")
    for name, xs in rows.items():
        if not xs or name.startswith("LLM alone"):
            continue
        base = base_ttft if "TTFT" in name else base_turn
        print(f"| {name} | {p50(xs):.1f} | {targets.get(name, '-')} | {base:.1f} | {p50(xs) / base:.1f}x |")
    print(f"| LLM alone turn | {base_turn:.1f} | - | {base_turn:.1f} | 1.0x |")
    print(f"| LLM alone TTFT | {base_ttft:.1f} | - | {base_ttft:.1f} | 1.0x |")
    print("each run, s: " + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in rows.items() if v))
    print("tools called in the last run ((auto) = the grounding fallback): " + "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in seen.items()))
    if not image.is_file():
        print(f"(image turn skipped: {IMAGE} not under {shared_data_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
