"""`radconsult ask` (one consultation turn, optional summary) and `radconsult eval agent`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from tools.disclaimer import DISCLAIMER
from tools.errors import RadconsultError

if TYPE_CHECKING:
    from agent.results import TurnResult
    from agent.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="ask the consultation agent a question (optionally about images)")
    p.add_argument("question", help="the clinical question")
    p.add_argument("--image", action="append", default=[], metavar="PATH",
                   help="attach a study (DICOM, PNG, JPEG, NIfTI); repeatable")
    p.add_argument("--patient", metavar="KEY", help="pseudonymous patient key whose prior reports may be searched")
    p.add_argument("--case", metavar="ID", default=None,
                   help="case id: questions with the same id share memory (default: a new case)")
    p.add_argument("--summary", action="store_true", help="also draft the cited diagnostic summary")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ask)

    ev = sub.add_parser("eval", help="evaluations")
    evs = ev.add_subparsers(dest="eval_target", metavar="TARGET")
    ea = evs.add_parser("agent", help="agent vs the same LLM without tools on a question set")
    ea.add_argument("--set", dest="set_path", required=True, metavar="FILE", help="JSONL question set")
    ea.add_argument("--limit", type=int, default=None, help="first N items only")
    ea.add_argument("--stride", type=int, default=1, help="every K-th item only (a spread subset on slow CPUs)")
    ea.add_argument("--categories", default=None, help="comma-separated categories to keep")
    ea.add_argument("--no-baseline", action="store_true", help="skip the LLM-alone baseline")
    ea.add_argument("--json", action="store_true", help="machine-readable output")
    ea.set_defaults(func=cmd_eval_agent)
    ev.set_defaults(func=lambda args, settings: (ev.print_help(), 1)[1])


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    import uuid

    from agent.cli import print_json
    from agent.consultation import Consultation

    case_id = args.case or f"cli-{uuid.uuid4().hex[:10]}"
    consult = Consultation(settings)
    streamed: list[str] = []

    def on_token(piece: str) -> None:
        streamed.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    try:
        result = consult.ask(case_id, args.question, images=args.image, patient=args.patient,
                             on_token=None if args.json else on_token, summary=args.summary)
    finally:
        consult.close()
    _audit(settings, result)
    if args.json:
        print_json(result.to_dict())
    elif not result.error:
        _print_result(result, "".join(streamed))
    if result.error:  # the JSON above says what happened; the exit code and stderr's last line say it failed
        if streamed and not args.json:
            sys.stdout.write("\n")
        raise RadconsultError(f"the question was not answered (case {case_id}): {result.error}")
    return 0


def _print_result(result: TurnResult, streamed: str) -> None:
    if streamed:
        sys.stdout.write("\n")
    # the stream may hold a draft that retrieval replaced, or lack the cited results added after it
    final_shown = streamed.strip().endswith(result.answer.strip())
    if not final_shown or result.unsupported_sentences:
        print(("\nAnswer:\n" if streamed else "") + result.marked_answer)
    if result.citations:
        print("\nReferences:")
        for e in result.citations:
            where = ", ".join(str(x) for x in (e.title, e.section, f"p. {e.page}" if e.page else None, e.date,
                                               e.url) if x)
            print(f"  [{e.id}] {e.source}" + (f": {where}" if where else ""))
    if result.tool_calls:
        print("\nTools: " + ", ".join(f"{t.name} ({t.ms:.0f} ms{'' if t.ok else ', failed'})"
                                      for t in result.tool_calls))
    print(f"\n{DISCLAIMER}  (case {result.case_id}, model {result.model}, {result.timings.total_ms / 1000:.1f} s)")
    if result.summary is not None:
        print("\n" + result.summary.to_markdown())


def _audit(settings: Settings, result: TurnResult) -> None:
    """Audit records without PHI: hashes of the texts, evidence ids, model name."""
    from agent.audit import AuditLog, text_hash
    from agent.toolbox import TOOLS

    log = AuditLog.from_settings(settings)
    versions = {"llm": str(result.model)[:128]}
    for call in result.tool_calls:
        if call.name in TOOLS:
            log.append(TOOLS.get(call.name).audit_action, user=None, case_id=result.case_id,
                       model_versions=versions, evidence_ids=call.evidence_ids,
                       details={"tool": call.name, "ok": call.ok, "auto": call.auto})
    log.append("answer", user=None, case_id=result.case_id, model_versions=versions, evidence_ids=result.cited_ids,
               details={"question_sha256": text_hash(result.question), "answer_sha256": text_hash(result.answer),
                        "tools": len(result.tool_calls), "unsupported": len(result.unsupported_sentences),
                        "contradicted": len(result.contradicted_sentences), "error": bool(result.error)})
    if result.summary is not None:
        log.append("summary", user=None, case_id=result.case_id, model_versions=versions,
                   evidence_ids=[r["id"] for r in result.summary.references],
                   details={"impression_source": result.summary.impression_source})


def cmd_eval_agent(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json
    from agent.eval import format_report, load_set, run_eval

    items = load_set(args.set_path)
    if args.categories:
        keep = {c.strip() for c in args.categories.split(",")}
        items = [i for i in items if i.category in keep]
    if args.stride > 1:
        items = items[:: args.stride]
    if args.limit:
        items = items[: args.limit]
    report = run_eval(items, settings, baseline=not args.no_baseline)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0
