"""The agent loop on LangGraph: model -> tools -> model ... -> finish, bounded and checkpointed per case.

State per consultation (LangGraph thread = case id): the chat messages, the evidence ledger, the
attached studies and the turn records. ``messages``, ``evidence``, ``studies`` and ``turns`` grow
across turns; the rest is per turn. A SQLite checkpointer keeps cases across restarts.

One turn: the model sees the fixed system prompt, the tool schemas and the conversation. A valid
tool call runs (with a timeout) and its result becomes evidence; an invalid call is fed back once
with the schema error, then the model must answer without tools. After ``max_tool_rounds`` rounds
the model answers without tools. A plain answer with uncited clinical claims before any tool ran is
not final: retrieval runs once automatically (agent/grounding.py) and the model answers again. An
LLM failure ends the turn with a clear message.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agent.evidence import Evidence, Ledger
from agent.grounding import plan_fallback, tool_call_message
from agent.llm.base import ChatBackend, TokenCallback
from agent.prompts import render
from agent.routing import ACTION_ANSWER, CALCULATOR_TOOLS, align_enums, is_action_request
from agent.tools_adapter import AgentTool, ToolContext
from agent.verify import CITE, attribute, parse_ids, restates, split_sentences, verify
from tools.errors import LLMError, RadconsultError, ToolArgumentError

log = logging.getLogger(__name__)

RETRIEVING = "No source cited yet: searching the knowledge base, then answering again."
HISTORY_CHARS = 12000  # history kept in the prompt (characters, ~3.5 per token); older turns are dropped


class CaseState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    evidence: Annotated[list[dict[str, Any]], operator.add]
    studies: Annotated[list[dict[str, Any]], operator.add]
    turns: Annotated[list[dict[str, Any]], operator.add]
    patient_key: str | None
    turn_start: int          # index in messages where this turn's user message sits
    ev_start: int            # number of evidence items before this turn
    round: int
    retries: int
    force: bool
    pending: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    again: bool              # the model node asks to run again (retry after an invalid call, or forced answer)
    llm_ms: float
    tools_ms: float
    error: str | None


class TurnRuntime:
    """What one turn needs beyond the checkpointed state: token callback and the tool context."""

    def __init__(self, ctx: ToolContext, on_token: TokenCallback | None = None) -> None:
        self.ctx = ctx
        self.on_token = on_token
        self.ttft: float | None = None
        self.started = time.perf_counter()


def _without_failed_turns(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``msgs`` minus every earlier turn that ended without an answer (a timeout, a dead server).

    A failed turn is not part of the conversation: a small model shown "I could not complete this
    answer: the language model timed out" copies it into every later answer of the case.
    """
    def answered(turn: list[dict[str, Any]]) -> bool:
        return any(m.get("role") == "assistant" and m.get("meta") == "answer" for m in turn) \
            and not any(m.get("meta") == "error" for m in turn)

    out: list[dict[str, Any]] = []
    turn: list[dict[str, Any]] = []
    for m in msgs:
        if m.get("role") == "user" and "question" in m and turn:
            out += turn if answered(turn) else []
            turn = []
        turn.append(m)
    return out + (turn if answered(turn) else [])


def prompt_messages(state: CaseState, system: str) -> list[dict[str, Any]]:
    """System prompt + as much recent history as fits ``HISTORY_CHARS``, cut at a user-turn boundary.

    Earlier turns that failed are left out (see :func:`_without_failed_turns`)."""
    all_msgs = state.get("messages", [])
    turn_start = state.get("turn_start", 0)
    msgs = _without_failed_turns(all_msgs[:turn_start]) + all_msgs[turn_start:]
    start = len(msgs) - (len(all_msgs) - turn_start)
    kept = msgs[start:]
    size = sum(len(str(m.get("content") or "")) for m in kept)
    i = start
    while i > 0:
        # walk back to the previous user message; keep whole turns only
        j = i - 1
        while j > 0 and msgs[j]["role"] != "user":
            j -= 1
        chunk = msgs[j:i]
        chunk_size = sum(len(str(m.get("content") or "")) for m in chunk)
        if size + chunk_size > HISTORY_CHARS:
            break
        kept = chunk + kept
        size += chunk_size
        i = j
    return [{"role": "system", "content": system}] + [_wire(m) for m in kept]


def _wire(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k in ("role", "content", "tool_calls", "tool_call_id", "name")}


def _signature(name: str, args: dict[str, Any]) -> str:
    import json

    return name + json.dumps(args, sort_keys=True, default=str)


def extractive_answer(ledger: Ledger, limit: int = 3) -> str:
    """A plain answer made of this turn's evidence, each item cited (used when the model cannot write one)."""
    if not ledger.items:
        return "I could not find evidence to answer this question with the available tools."
    # one item per line: each is its own sentence for the verifier, checked against its own evidence
    parts = [f"- {e.title or e.source}: {e.quote.strip().rstrip('.')} [{e.id}]." for e in ledger.items[:limit]]
    return "From the tool results:\n" + "\n".join(parts)


def unstated_classifier_results(answer: str, items: list[Evidence]) -> list[Evidence]:
    """Classifier results whose calibrated probability (or abstention) the answer does not state.

    "The image is classified as normal [E1]" is cited but drops the number and the caution (a paediatric
    model on an adult film): a classifier's output is only shown together with them.
    """
    out = []
    for e in items:
        if e.kind != "classifier":
            continue
        facts = e.facts or {}
        if facts.get("abstained"):
            if "abstain" not in answer.lower():
                out.append(e)
            continue
        p = facts.get("probability")
        if isinstance(p, int | float) and f"{p:.2f}" not in answer and f"{p * 100:.0f}%" not in answer \
                and f"{p * 100:.0f} %" not in answer:
            out.append(e)
    return out


_REPEATED_CITE = re.compile(r"(\[(E\d+)\][.!?]?)[ \t]*\[\2\]")


def grounded_in(answer: str, ids: set[str], question: str) -> bool:
    """True when a sentence of ``answer`` that says something new (not a bare marker, not a restatement
    of the question) cites one of ``ids``: the answer carries this turn's results itself."""
    for sentence in split_sentences(answer):
        cited = {i for token in CITE.findall(sentence) for i in parse_ids(token)}
        plain = CITE.sub("", sentence).strip(" .")
        if cited & ids and re.search(r"[A-Za-z]{3}", plain) and not restates(plain, question):
            return True
    return False


def last_full_sentence(text: str) -> str:
    """``text`` cut after its last complete sentence (for an answer stopped at max_tokens)."""
    ends = [m.end() for m in re.finditer(r"[.!?](\s*\[E\d+(?:\s*,\s*E?\d+)*\])?\.?(?=\s|$)", text)]
    if not ends or ends[-1] < len(text) // 3:  # almost nothing complete: keep it all, marked as cut
        return text.rstrip() + " …"
    return text[: ends[-1]].rstrip()


def build_graph(backend: ChatBackend, tools: dict[str, AgentTool], settings: Any,
                runtime: Callable[[], TurnRuntime], checkpointer: Any = None) -> Any:
    """Compile the graph. ``runtime()`` returns the current turn's :class:`TurnRuntime`."""
    schemas = [t.schema() for t in tools.values()]
    system = render("system")
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="radconsult-tool")

    def model(state: CaseState) -> dict[str, Any]:
        rt = runtime()
        msgs = state.get("messages", [])
        start = state.get("turn_start", 0)
        question = msgs[start].get("question", "") if start < len(msgs) else ""
        if not state.get("calls") and state.get("round", 0) == 0 and is_action_request(question):
            # outside decision support: a fixed answer, never an improvised dose or booking
            if rt.on_token is not None:
                rt.ttft = time.perf_counter()
                rt.on_token(ACTION_ANSWER)
            return {"messages": [{"role": "assistant", "content": ACTION_ANSWER, "meta": "answer"}],
                    "pending": [], "again": False}
        force = state.get("force", False) or state.get("round", 0) >= settings.max_tool_rounds
        messages = prompt_messages(state, system)
        if force:
            note = "" if state.get("round", 0) < settings.max_tool_rounds else \
                "The tool-round limit was reached."
            messages.append({"role": "user", "content": render("force_answer", note=note)})

        def on_token(piece: str) -> None:
            if rt.ttft is None:
                rt.ttft = time.perf_counter()
            if rt.on_token is not None:
                rt.on_token(piece)

        t0 = time.perf_counter()
        try:
            res = backend.chat(messages, schemas, tool_choice="none" if force else "auto", on_token=on_token)
        except LLMError as exc:
            log.error("LLM failure: %s", exc)
            return {"error": str(exc), "llm_ms": state.get("llm_ms", 0.0) + (time.perf_counter() - t0) * 1000,
                    "pending": []}
        llm_ms = state.get("llm_ms", 0.0) + res.total_ms
        problem = res.parse_error
        corrections: list[str] = []
        if not problem and res.tool_calls:
            aligned = []
            for call in res.tool_calls:
                if call.name in tools and call.name in CALCULATOR_TOOLS:
                    args, changed = align_enums(call.arguments, tools[call.name].args_model, question)
                    call = dataclasses.replace(call, arguments=args)
                    corrections += [f"{call.name} {c}" for c in changed]
                aligned.append(call)
            res.tool_calls = aligned
            for call in res.tool_calls:
                if call.name not in tools:  # a backend that does not check names (e.g. a remote server)
                    problem = f"unknown tool '{call.name}'; available: {', '.join(sorted(tools))}"
                    break
                try:
                    tools[call.name].validate(call.arguments)
                except ToolArgumentError as exc:
                    problem = str(exc)
                    break
        if problem:
            log.info("invalid tool call: %s", problem)
            if state.get("retries", 0) < 1 and not force:
                note = {"role": "user", "content": render("retry_tool", error=problem), "meta": "retry"}
                return {"messages": [note], "retries": 1, "llm_ms": llm_ms, "pending": [], "again": True}
            if force:  # even the forced answer failed: end the turn gracefully
                return {"error": f"the model could not produce a valid tool call or answer ({problem})",
                        "llm_ms": llm_ms, "pending": []}
            return {"force": True, "llm_ms": llm_ms, "pending": [], "again": True,
                    "calls": state.get("calls", []) + [{"name": "(invalid)", "args": {}, "ms": 0, "ok": False,
                                                        "error": problem}]}
        if res.tool_calls and not force:
            done = {_signature(c["name"], c["args"]) for c in state.get("calls", [])}
            if all(_signature(c.name, c.arguments) in done for c in res.tool_calls):
                log.info("repeated tool call; asking for the answer")
                return {"force": True, "llm_ms": llm_ms, "pending": [], "again": True}
            msg = {"role": "assistant", "content": "", "tool_calls": [c.as_message_dict() for c in res.tool_calls]}
            if corrections:
                log.info("arguments aligned with the question: %s", "; ".join(corrections))
            return {"messages": [msg], "llm_ms": llm_ms, "again": False,
                    "pending": [{"id": c.id, "name": c.name, "args": c.arguments,
                                 **({"aligned": [x for x in corrections if x.startswith(c.name + " ")]}
                                    if corrections else {})} for c in res.tool_calls]}
        answer = res.text.strip()
        if res.finish_reason == "length":
            answer = last_full_sentence(answer)
        # the fallback also follows a forced answer (a repeated or invalid call), not the round limit
        rounds_left = state.get("round", 0) < settings.max_tool_rounds
        auto = plan_fallback(state, answer, tools) if rounds_left else []
        if auto:  # an uncited clinical answer before any tool ran: retrieve, then answer again
            if rt.on_token is not None:  # the draft was already streamed: say why another answer follows
                rt.on_token(f"\n\n({RETRIEVING})\n\n")
            return {"messages": [tool_call_message(auto)], "llm_ms": llm_ms, "again": False, "pending": auto}
        if force and (not answer or answer.startswith(("{", "[", "<tool_call>", "```"))):
            # the model could not turn the results into prose: answer from the evidence itself
            answer = extractive_answer(Ledger.from_dicts(state.get("evidence", [])[state.get("ev_start", 0):]))
        return {"messages": [{"role": "assistant", "content": answer, "meta": "answer"}],
                "llm_ms": llm_ms, "pending": [], "again": False}

    def run_tools(state: CaseState) -> dict[str, Any]:
        rt = runtime()
        ledger = Ledger.from_dicts(state.get("evidence", []))
        before = len(ledger)
        out_msgs, calls = [], list(state.get("calls", []))
        tools_ms = state.get("tools_ms", 0.0)
        mark, auto_ids = before, set()
        for call in state.get("pending", []):
            tool = tools[call["name"]]
            t0 = time.perf_counter()
            ok, err = True, None
            try:
                fut = executor.submit(tool.run, call["args"], rt.ctx, ledger)
                items = fut.result(timeout=settings.tool_timeout_s)
                content = "\n\n".join(e.prompt_block() for e in items)
            except FutureTimeout:
                ok, err = False, f"{call['name']} timed out after {settings.tool_timeout_s:.0f} s"
            except RadconsultError as exc:
                ok, err = False, str(exc)
            except Exception as exc:  # a bug in a tool must not end the consultation
                log.exception("tool %s crashed", call["name"])
                ok, err = False, f"{call['name']} failed unexpectedly ({type(exc).__name__})"
            if not ok:
                content = f"ERROR: {err}. Tell the user this could not be done."
            ms = (time.perf_counter() - t0) * 1000
            tools_ms += ms
            calls.append({"name": call["name"], "args": call["args"], "ms": round(ms, 1), "ok": ok,
                          **({"error": err} if err else {}), **({"auto": True} if call.get("auto") else {}),
                          **({"aligned": call["aligned"]} if call.get("aligned") else {})})
            if call.get("auto"):
                auto_ids.update(e.id for e in ledger.items[mark:])
            mark = len(ledger)
            out_msgs.append({"role": "tool", "tool_call_id": call["id"], "name": call["name"], "content": content})
        new_ids = [e.id for e in ledger.items[before:]]
        if out_msgs and new_ids:
            out_msgs[-1]["content"] += (f"\n\nUse these results to answer; cite them as "
                                        f"{', '.join(f'[{i}]' for i in new_ids)}.")
        evidence = [{**e, "auto": True} if e["id"] in auto_ids else e for e in ledger.as_dicts()[before:]]
        return {"messages": out_msgs, "evidence": evidence, "calls": calls,
                "tools_ms": tools_ms, "round": state.get("round", 0) + 1, "pending": []}

    def finish(state: CaseState) -> dict[str, Any]:
        rt = runtime()
        ledger = Ledger.from_dicts(state.get("evidence", []))
        msgs = state.get("messages", [])
        answer = ""
        if state.get("error"):
            answer = f"I could not complete this answer: {state['error']}"
            msgs_out = [{"role": "assistant", "content": answer, "meta": "error"}]
        else:
            last = msgs[-1] if msgs else {}
            answer = last.get("content", "") if last.get("role") == "assistant" else ""
            msgs_out = []
            if not answer.strip():
                answer = "I could not produce an answer to this question."
                msgs_out = [{"role": "assistant", "content": answer, "meta": "error"}]
        question = msgs[state.get("turn_start", 0)].get("question", "") if msgs else ""
        turn_ev = Ledger.from_dicts(state.get("evidence", [])[state.get("ev_start", 0):])
        model_grounded = grounded_in(answer, {e.id for e in turn_ev.items}, question)
        attributed: list[str] = []
        answer = _REPEATED_CITE.sub(r"\1", answer)  # "... [E1]. [E1]": small models repeat the marker
        if not state.get("error"):
            # uncited sentences that one evidence item clearly supports get its id (recorded as the verifier's)
            answer, attributed = attribute(answer, ledger, question)
        show: list[Evidence] = []
        if turn_ev.items and not state.get("error") and not model_grounded:
            show = turn_ev.items[:3]  # the model did not ground its answer in this turn's results: show them
        if not state.get("error"):
            shown = {e.id for e in show}
            show = show + [e for e in unstated_classifier_results(answer, turn_ev.items) if e.id not in shown]
        if show:
            digest = extractive_answer(Ledger(show), limit=len(show))
            if digest not in answer:
                answer = f"{answer}\n\n{digest}" if answer.strip() else digest
        failed = [c for c in state.get("calls", []) if not c["ok"] and not c.get("auto")]
        if failed and not state.get("error"):
            what = "; ".join(c.get("error") or c["name"] for c in failed)
            if what not in answer:
                answer += f"\n\nNot done: {what}."
        check = verify(answer, ledger, question)
        record = {"question": question, "answer": answer, "marked_answer": check.marked_answer(),
                  "cited": check.cited_ids, "unsupported_sentences": check.unsupported,
                  "attributed_sentences": attributed,
                  "citation_validity": check.citation_validity, "invalid_ids": check.invalid_ids,
                  "tool_calls": state.get("calls", []), "error": state.get("error"),
                  "evidence_ids": [e["id"] for e in state.get("evidence", [])],
                  "timings": {"llm_ms": round(state.get("llm_ms", 0.0), 1),
                              "tools_ms": round(state.get("tools_ms", 0.0), 1),
                              "ttft_ms": round((rt.ttft - rt.started) * 1000, 1) if rt.ttft else None}}
        return {"messages": msgs_out, "turns": [record]}

    def after_model(state: CaseState) -> str:
        if state.get("error"):
            return "finish"
        if state.get("pending"):
            return "tools"
        return "model" if state.get("again") else "finish"

    g = StateGraph(CaseState)
    g.add_node("model", model)
    g.add_node("tools", run_tools)
    g.add_node("finish", finish)
    g.add_edge(START, "model")
    g.add_conditional_edges("model", after_model, {"tools": "tools", "model": "model", "finish": "finish"})
    g.add_edge("tools", "model")
    g.add_edge("finish", END)
    return g.compile(checkpointer=checkpointer)
