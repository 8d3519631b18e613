"""The agent evaluation: the agent against the same LLM without tools, on a JSONL question set.

    python bench/agent_eval.py --set bench/data/agent_eval.jsonl [--stride 2] [--limit N] [--categories a,b]
                               [--no-baseline] [--json]

The settings come from the environment as for ``radconsult`` (``RADCONSULT_LLM`` and the rest).

Each line: ``id, category, question, images (relative to the shared data folder), patient, history
(earlier questions of the same case, asked first and not scored), expected_tools (names; "a|b"
means either, a trailing "|" means "or none"), facts (each a list of accepted alternatives, matched
case-insensitively after normalising dashes and "6 to 12" -> "6-12"), forbidden (strings that
must not appear), frame (the case-frame fields the question states, e.g. {"intent": "followup",
"system": "fleischner", "size_mm": 7}), clarify (true when the right answer is a clarifying question)``.

Metrics, all on what the clinician reads (the answer's own prose): fact accuracy (share of facts
present, forbidden strings count as a missed fact; per category and over the guideline categories),
contradiction rate (contradicted sentences left in the answer / sentences; the ones removed are counted
apart), unsupported rate (clinical sentences without support left in the answer / sentences; the ones
withheld are counted apart), clarifying-question correctness (asked exactly when expected), frame
accuracy (every expected frame field as read), tool-selection accuracy (every expected tool called),
citation validity, p50 and p95 turn latency. The baseline answers the same questions with the same model,
no tools and no retrieval.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.errors import InputError  # noqa: E402

if TYPE_CHECKING:
    from agent.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class EvalItem:
    id: str
    category: str
    question: str
    images: list[str] = field(default_factory=list)
    patient: str | None = None
    history: list[str] = field(default_factory=list)
    expected_tools: list[str] = field(default_factory=list)
    facts: list[list[str]] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    frame: dict[str, Any] = field(default_factory=dict)
    clarify: bool = False


GUIDELINE_CATEGORIES = ("guideline", "clarify", "followup", "not-applicable")
NOT_TOOLS = ("(invalid)", "read_case")


def frame_ok(expected: dict[str, Any], got: dict[str, Any] | None) -> bool | None:
    """Every expected frame field read as expected (numbers within 0.05); None when nothing is expected."""
    if not expected:
        return None
    got = got or {}
    for key, want in expected.items():
        have = got.get(key)
        if isinstance(want, int | float) and isinstance(have, int | float):
            if abs(float(want) - float(have)) > 0.05:
                return False
        elif have != want:
            return False
    return True


def shown_problems(answer: str, ledger: Any, question: str) -> tuple[int, int, int]:
    """(sentences, unsupported, contradicted) in the answer as the clinician reads it."""
    from agent.verify import verify

    check = verify(answer, ledger, question)
    return (max(1, len(check.sentences)), sum(1 for s in check.sentences if s.status == "unsupported"),
            sum(1 for s in check.sentences if s.status == "contradicted"))


def load_set(path: str | Path) -> list[EvalItem]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"eval set not found: {path}")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            items.append(EvalItem(**data))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"{path.name} line {n}: not a valid eval item ({exc})") from None
    if not items:
        raise InputError(f"eval set {path.name} is empty")
    return items


def shared_data_dir() -> Path:
    """The shared data folder: $RADCONSULT_SHARED/data, else ../shared/data beside the project."""
    base = os.environ.get("RADCONSULT_SHARED") or str(Path(__file__).resolve().parents[2] / "shared")
    return Path(base) / "data"


def normalise(text: str) -> str:
    text = text.lower().replace("\u2013", "-").replace("\u2014", "-").replace("\u2264", "<=")
    text = re.sub(r"(\d)\s*(?:-|to)\s*(\d)", r"\1-\2", text)
    return re.sub(r"\s+", " ", text)


def fact_score(answer: str, facts: list[list[str]], forbidden: list[str]) -> float:
    ans = normalise(answer)
    hits = [any(normalise(alt) in ans for alt in alts) for alts in facts]
    bad = [normalise(f) in ans for f in forbidden]
    total = len(hits) + len(bad)
    if not total:
        return 1.0
    return (sum(hits) + sum(1 for b in bad if not b)) / total


def tools_ok(expected: list[str], called: list[str]) -> bool:
    if not expected:
        return not called
    for alt in expected:
        options = alt.split("|")
        if not any(o in called for o in options if o) and "" not in options:
            return False
    return True


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q * (len(values) - 1))))
    return round(values[k], 1)


def run_eval(items: list[EvalItem], settings: Settings, baseline: bool = True,
             consult: Any = None) -> dict[str, Any]:
    from agent.consultation import Consultation
    from agent.prompts import render

    tmp_cases = settings.data_dir / "eval-cases.sqlite"
    consult = consult or Consultation(settings, checkpoint_path=tmp_cases)
    data_dir = shared_data_dir()
    rows, skipped = [], []
    try:
        for item in items:
            images = [data_dir / p for p in item.images]
            if any(not p.is_file() for p in images):
                skipped.append({"id": item.id, "reason": "image not found under the shared data folder"})
                continue
            case = f"eval-{item.id}-{uuid.uuid4().hex[:6]}"
            for i, earlier in enumerate(item.history):
                consult.ask(case, earlier, images=images if i == 0 else None, patient=item.patient)
            t0 = time.perf_counter()
            res = consult.ask(case, item.question, images=None if item.history else images, patient=item.patient)
            agent_ms = (time.perf_counter() - t0) * 1000
            called = [c.name for c in res.tool_calls if c.name not in NOT_TOOLS]
            chosen = [c.name for c in res.tool_calls if c.name not in NOT_TOOLS and not c.auto]
            from agent.evidence import Ledger

            sentences, unsupported, contradicted = shown_problems(res.answer, Ledger(list(res.evidence)),
                                                                 item.question)
            frame = res.frame.to_dict() if res.frame is not None else None
            row = {"id": item.id, "category": item.category, "tools": called,
                   "tools_ok": tools_ok(item.expected_tools, called),
                   "auto_tools": [c.name for c in res.tool_calls if c.auto and c.name not in NOT_TOOLS],
                   "model_tools_ok": tools_ok(item.expected_tools, chosen),
                   "facts": fact_score(res.answer, item.facts, item.forbidden),
                   "citation_validity": res.citation_validity,
                   "unsupported": unsupported, "contradicted": contradicted, "sentences": sentences,
                   "withheld": len(res.unsupported_sentences), "removed_contradicted": len(res.contradicted_sentences),
                   "attributed": len(res.attributed_sentences),
                   "frame_ok": frame_ok(item.frame, frame), "frame": frame,
                   "clarify_ok": (res.clarifying_question is not None) == item.clarify,
                   "ms": round(agent_ms, 1), "error": res.error, "answer": res.answer}
            if baseline:
                question = " ".join(item.history + [item.question])
                t1 = time.perf_counter()
                try:
                    base = consult.backend.chat([{"role": "system", "content": render("no_tools")},
                                                 {"role": "user", "content": question}], None, tool_choice="none")
                    base_text = base.text
                except Exception as exc:  # report, never stop the run
                    base_text = ""
                    row["baseline_error"] = str(exc)
                row["baseline_facts"] = fact_score(base_text, item.facts, item.forbidden)
                row["baseline_ms"] = round((time.perf_counter() - t1) * 1000, 1)
                row["baseline_answer"] = base_text
            rows.append(row)
            log.info("%s tools=%s ok=%s facts=%.2f %.1fs", item.id, called, row["tools_ok"], row["facts"],
                     agent_ms / 1000)
    finally:
        consult.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(tmp_cases) + suffix).unlink(missing_ok=True)
    return summarise(rows, skipped, consult.model_name, baseline)


def summarise(rows: list[dict[str, Any]], skipped: list[dict[str, Any]], model: str,
              baseline: bool) -> dict[str, Any]:
    def mean(xs: list[float]) -> float | None:
        return round(statistics.fmean(xs), 3) if xs else None

    cv = [r["citation_validity"] for r in rows if r["citation_validity"] is not None]
    total = max(1, sum(r["sentences"] for r in rows))
    frames = [r["frame_ok"] for r in rows if r.get("frame_ok") is not None]
    guideline = [r for r in rows if r["category"] in GUIDELINE_CATEGORIES]
    agent = {"tool_selection_accuracy": mean([1.0 if r["tools_ok"] else 0.0 for r in rows]),
             # the same without the agent's own calls (frame plan, grounding fallback): what the model chose
             "model_tool_selection_accuracy": mean([1.0 if r.get("model_tools_ok", r["tools_ok"]) else 0.0
                                                    for r in rows]),
             "auto_tool_turns": sum(1 for r in rows if r.get("auto_tools")),
             "fact_accuracy": mean([r["facts"] for r in rows]),
             "guideline_fact_accuracy": mean([r["facts"] for r in guideline]),
             "contradiction_rate": round(sum(r.get("contradicted", 0) for r in rows) / total, 3),
             "contradicted_removed": sum(r.get("removed_contradicted", 0) for r in rows),
             "unsupported_sentence_rate": round(sum(r["unsupported"] for r in rows) / total, 3),
             "withheld_sentence_rate": round(sum(r.get("withheld", 0) for r in rows) / total, 3),
             "clarify_accuracy": mean([1.0 if r.get("clarify_ok", True) else 0.0 for r in rows]),
             "frame_accuracy": mean([1.0 if ok else 0.0 for ok in frames]),
             "citation_validity": mean(cv),
             # sentences the model left uncited that the verifier attributed (share of all sentences)
             "attributed_sentence_rate": round(sum(r.get("attributed", 0) for r in rows) / total, 3),
             "p50_ms": _pct([r["ms"] for r in rows], 0.5), "p95_ms": _pct([r["ms"] for r in rows], 0.95),
             "errors": sum(1 for r in rows if r["error"])}
    out: dict[str, Any] = {"model": model, "n": len(rows), "skipped": skipped, "agent": agent}
    if baseline:
        out["llm_alone"] = {"fact_accuracy": mean([r["baseline_facts"] for r in rows]),
                            "guideline_fact_accuracy": mean([r["baseline_facts"] for r in guideline]),
                            "p50_ms": _pct([r["baseline_ms"] for r in rows], 0.5),
                            "p95_ms": _pct([r["baseline_ms"] for r in rows], 0.95)}
    cats: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = cats.setdefault(r["category"], {"n": 0, "tools_ok": 0, "facts": [], "baseline_facts": [], "ms": []})
        c["n"] += 1
        c["tools_ok"] += int(r["tools_ok"])
        c["facts"].append(r["facts"])
        c["ms"].append(r["ms"])
        if "baseline_facts" in r:
            c["baseline_facts"].append(r["baseline_facts"])
    out["by_category"] = {k: {"n": v["n"], "tool_selection_accuracy": round(v["tools_ok"] / v["n"], 3),
                              "fact_accuracy": mean(v["facts"]), "llm_alone_fact_accuracy": mean(v["baseline_facts"]),
                              "p50_ms": _pct(v["ms"], 0.5)}
                          for k, v in cats.items()}
    out["items"] = rows
    return out


def format_report(report: dict[str, Any]) -> str:
    a = report["agent"]
    lines = [f"model {report['model']}: {report['n']} questions ({len(report['skipped'])} skipped)", "",
             "| | facts (guideline cats) | facts (all) | contradicted shown | unsupported shown | withheld | "
             "clarify | frame | tools | citation validity | p50 s | p95 s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| agent | {a['guideline_fact_accuracy']} | {a['fact_accuracy']} | {a['contradiction_rate']} | "
             f"{a['unsupported_sentence_rate']} | {a['withheld_sentence_rate']} | {a['clarify_accuracy']} | "
             f"{a['frame_accuracy']} | {a['tool_selection_accuracy']} | {a['citation_validity']} | "
             f"{(a['p50_ms'] or 0) / 1000:.1f} | {(a['p95_ms'] or 0) / 1000:.1f} |"]
    if "llm_alone" in report:
        b = report["llm_alone"]
        lines.append(f"| LLM alone | {b.get('guideline_fact_accuracy')} | {b['fact_accuracy']} | - | - | - | - | - | - "
                     f"| - | {(b['p50_ms'] or 0) / 1000:.1f} | {(b['p95_ms'] or 0) / 1000:.1f} |")
    lines += ["", "| category | n | tool selection | facts (agent) | facts (LLM alone) | p50 s |",
              "|---|---|---|---|---|---|"]
    for k, v in report["by_category"].items():
        lines.append(f"| {k} | {v['n']} | {v['tool_selection_accuracy']} | {v['fact_accuracy']} | "
                     f"{v['llm_alone_fact_accuracy']} | {(v.get('p50_ms') or 0) / 1000:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="agent vs the same LLM without tools on a question set")
    ap.add_argument("--set", dest="set_path", required=True, metavar="FILE", help="JSONL question set")
    ap.add_argument("--limit", type=int, default=None, help="first N items only")
    ap.add_argument("--stride", type=int, default=1, help="every K-th item only (a spread subset on slow CPUs)")
    ap.add_argument("--categories", default=None, help="comma-separated categories to keep")
    ap.add_argument("--no-baseline", action="store_true", help="skip the LLM-alone baseline")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    if args.stride < 1 or (args.limit is not None and args.limit < 1):
        ap.error("--stride and --limit take whole numbers from 1")
    from agent.settings import load_settings
    from tools.errors import RadconsultError

    logging.basicConfig(level=logging.WARNING)
    try:
        items = load_set(args.set_path)
        if args.categories:
            keep = {c.strip() for c in args.categories.split(",")}
            items = [i for i in items if i.category in keep]
        items = items[:: args.stride][: args.limit]
        report = run_eval(items, load_settings(), baseline=not args.no_baseline)
    except RadconsultError as exc:
        print(f"agent_eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
