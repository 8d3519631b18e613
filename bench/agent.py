"""Agent latency on this machine, in one process: turns the rules read fully (no LLM call: calculator, table,
clarifying question) apart from turns that need the model (its frame draft, retrieval, its prose), a turn with
an image (classify), and the same LLM answering alone (no tools) as the baseline.

    python bench/agent.py [--runs 3] [--llm gguf:qwen2.5-coder-1.5b]

Targets (issue 20, packaged 1.5B on 2 cores): rule-read turn p50 <= 1.5 s; model turn p50 <= 8 s.
Each run is a new case and a new wording; the knowledge base, the model and its prompt prefix are prepared
first, untimed (the UI's warm-up). Phases: rule-read turns, model turns, image turns, rule-read turns again
(after the image tools ran), LLM alone. A rule-read turn that called the model is reported (it must not).
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
RULE_READ_QS = ["{size}x{short} mm solid nodule, never smoker, {age}F, f/u?",
                "Incidental {size} mm solid nodule in a {age}-year-old with 40 pack-years. Follow-up?",
                "{age}M, 30 PY, current smoker: eligible for lung cancer screening? (ref {size})",
                "What does Lung-RADS 4A mean for a {age}-year-old? (ref {size})"]
# general questions (no nodule, size, age or category named, so the model's draft cannot make them guideline
# questions): the draft, retrieval and the model's prose, the full model path
MODEL_QS = ["Why is low-dose CT used for lung cancer screening instead of chest X-ray? (ref {age}-{size})",
            "What radiation dose does a low-dose chest CT deliver? (ref {age}-{size})"]
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
    if args.runs < 1:
        ap.error("--runs must be at least 1")
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
    problems = consult.warm_up()  # the knowledge base, the model and its prompt prefix, untimed
    if problems:
        print("warm-up problems: " + "; ".join(problems), file=sys.stderr)

    seen: dict[str, list[str]] = {}
    rows: dict[str, list[float]] = {"rule-read turn": [], "model turn": [], "model TTFT": [], "image turn": [],
                                    "image TTFT": [], "rule-read turn after image turns": [],
                                    "LLM alone turn": [], "LLM alone TTFT": []}
    model_calls_in_rule_turns = 0
    image = shared_data_dir() / IMAGE
    wordings = itertools.cycle(SIZES_AGES)
    rule_qs, model_qs = itertools.cycle(RULE_READ_QS), itertools.cycle(MODEL_QS)

    def q(templates: itertools.cycle) -> str:
        size, age = next(wordings)
        return next(templates).format(size=size, short=size - 2, age=age)

    def turn(kind: str, question: str, images: list[Path] | None = None, ttft: bool = True) -> None:
        nonlocal model_calls_in_rule_turns
        r = consult.ask(f"bench-{uuid.uuid4().hex[:8]}", question, images=images, on_token=lambda s: None)
        seen[kind] = [c.name + (" (auto)" if c.auto else "") for c in r.tool_calls]
        if kind.startswith("rule-read") and (r.timings.llm_ms or 0) > 0:
            model_calls_in_rule_turns += 1
        if r.error:
            print(f"{kind}: {question!r} failed: {r.error}", file=sys.stderr)
        rows[kind if kind.endswith("turns") else f"{kind} turn"].append(r.timings.total_ms / 1000)
        if ttft and f"{kind} TTFT" in rows:
            rows[f"{kind} TTFT"].append((r.timings.ttft_ms or r.timings.total_ms) / 1000)

    # Phases, not interleaved: the same turn takes about a third longer in a process that has run the image
    # tools (measured, cause not found), so rule-read turns are timed both before and after the image turns.
    for _ in range(args.runs):
        turn("rule-read", q(rule_qs))
    for _ in range(args.runs):
        turn("model", q(model_qs))
    if image.is_file():
        for _ in range(args.runs):
            turn("image", IMAGE_Q, [image])
        for _ in range(args.runs):
            turn("rule-read turn after image turns", q(rule_qs), ttft=False)
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
        consult.backend.chat([system, {"role": "user", "content": q(model_qs)}], None, tool_choice="none",
                             on_token=mark)
        rows["LLM alone turn"].append(time.perf_counter() - t0)
        rows["LLM alone TTFT"].append((first[0] - t0) if first else float("nan"))
    consult.close()

    base_turn, base_ttft = p50(rows["LLM alone turn"]), p50(rows["LLM alone TTFT"])
    targets = {"rule-read turn": 1.5, "model turn": 8.0, "rule-read turn after image turns": 1.5}
    threads = os.environ.get("RADCONSULT_LLM_THREADS") or "auto"
    print(f"model {consult.model_name}, {args.runs} runs, {os.cpu_count()} cores, {threads} LLM threads, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| metric | p50 s | target s | LLM alone p50 s | ratio |")
    print("|---|---|---|---|---|")
    for name, xs in rows.items():
        if not xs or name.startswith("LLM alone"):
            continue
        base = base_ttft if "TTFT" in name else base_turn
        print(f"| {name} | {p50(xs):.2f} | {targets.get(name, '-')} | {base:.1f} | {p50(xs) / base:.2f}x |")
    print(f"| LLM alone turn | {base_turn:.1f} | - | {base_turn:.1f} | 1.0x |")
    print(f"| LLM alone TTFT | {base_ttft:.1f} | - | {base_ttft:.1f} | 1.0x |")
    print("each run, s: " + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in rows.items() if v))
    print(f"rule-read turns that called the model: {model_calls_in_rule_turns} (must be 0)")
    print("tools called in the last run ((auto) = the agent's own calls): "
          + "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in seen.items()))
    if not image.is_file():
        print(f"(image turn skipped: {IMAGE} not under {shared_data_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
