"""The agent loop on LangGraph: named nodes with conditional edges, bounded and checkpointed per case.

::

    START -> gate -> read_frame -> tools -> render -> finish -> END  (the rules read it: no LLM call)
             gate -> read_frame -> tools -> model ...                   (the frame's evidence, the model's prose)
    START -> gate -> model -> check_calls -> tools -> model ...       (the model chose tools)
                        \\-> review -> tools -> model ...               (grounding fallback: retrieve first)
                        \\-> review -> finish -> END                     (the answer)
             gate -> finish                                              (a request to act: fixed answer)

* ``gate``: requests to act (book, prescribe ...) get a fixed answer without the model.
* ``read_frame``: the rules read the question into a case frame; the model drafts one only for a field they
  leave open (agent/frame/complete.py). The frame's plan runs its tools and ``render``s the answer with no LLM
  call, or hands the evidence to ``model``.
* ``model``: one LLM call over the system prompt, the tool schemas and the conversation.
* ``check_calls``: arguments aligned with the question, names and arguments validated; an invalid call
  is fed back once with the error, then the model must answer without tools; a repeated call asks for
  the answer.
* ``tools``: each call runs with a timeout; its result becomes numbered evidence.
* ``review``: an uncited clinical answer before any tool ran triggers retrieval (agent/grounding.py);
  a forced answer that is not prose is replaced by the evidence itself.
* ``finish``: the answer is composed and verified (agent/answer.py) and the turn recorded.

State per case (LangGraph thread = case id): ``messages``, ``evidence``, ``studies`` and ``turns`` grow
across turns; the rest is per turn. Per-turn data that is not state (the tool context, the token
callback, timing) travels in LangGraph's run context (:class:`TurnContext`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import operator
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.answer import NO_ANSWER, compose, extractive_answer, last_full_sentence
from agent.comparison import comparisons_of
from agent.evidence import Ledger
from agent.frame import CaseFrame, compose_answer, plan_for, read_case
from agent.frame.comparison import apply_comparison, driving_comparison, frame_measurements
from agent.frame.complete import model_fills
from agent.frame.model import READ_CASE, frame_draft, frame_schema, previous_frame
from agent.frame.reader import is_smalltalk
from agent.grounding import plan_fallback, tool_call_message
from agent.history import prompt_messages
from agent.llm.base import ChatBackend, ChatResult, TokenCallback, ToolCall
from agent.prompts import render
from agent.results import ToolCallRecord
from agent.routing import ACTION_ANSWER, align_enums, is_action_request
from agent.toolbox import CALCULATOR_NAMES, ToolContext, ToolSpec
from tools.errors import LLMError, RadconsultError, ToolArgumentError

if TYPE_CHECKING:
    from tools.classifiers.coverage import Coverage

log = logging.getLogger(__name__)

RETRIEVING = "No source cited yet: searching the knowledge base, then answering again."
FRAME_TOKENS = 200  # the frame's JSON: about 40-120 tokens
# what the model's prose must do for each kind of question it answers from retrieved evidence
ANSWER_NOTES = {
    "prior": "Say what the reports state about the question, with each report's date, and cite each report. If they "
             "do not mention it, say so. At most 3 sentences.",
    "knowledge": "Answer from the passages above in at most 3 sentences and cite each sentence. Do not add intervals, "
                 "categories or numbers that the passages do not state.",
}


class CaseState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    evidence: Annotated[list[dict[str, Any]], operator.add]
    studies: Annotated[list[dict[str, Any]], operator.add]
    turns: Annotated[list[dict[str, Any]], operator.add]
    patient_key: str | None
    turn_start: int          # index in messages where this turn's user message sits
    ev_start: int            # number of evidence items before this turn
    round: int               # tool rounds run this turn
    retries: int
    force: bool              # the next model call must answer without tools
    reply: dict[str, Any]    # the last model reply: text, tool_calls, parse_error, finish_reason
    pending: list[dict[str, Any]]
    calls: list[dict[str, Any]]   # ToolCallRecord.to_dict() of this turn's calls
    again: bool              # check_calls asks for another model call (retry or forced answer)
    answered: bool           # the gate answered without the model
    frame: dict[str, Any]    # this turn's case frame (CaseFrame.to_dict())
    plan: dict[str, Any]     # what the frame needs: answer_by, clarify, statement
    llm_ms: float
    tools_ms: float
    error: str | None


@dataclass
class TurnContext:
    """Per-turn run context (not checkpointed): the tools' view of the case and the streaming callback."""

    tools: ToolContext
    on_token: TokenCallback | None = None
    started: float = dataclasses.field(default_factory=time.perf_counter)
    ttft: float | None = None
    # blocks until the start-up warm-up (knowledge base, model) has finished: called before the model or a
    # search runs, never for a turn the rules and calculators answer (which must not wait for a model load)
    wait_ready: Callable[[], object] | None = None

    def ready(self) -> None:
        if self.wait_ready is not None:
            self.wait_ready()

    def emit(self, piece: str) -> None:
        """Stream a piece of the answer to the caller, noting when the first one arrived."""
        if self.ttft is None:
            self.ttft = time.perf_counter()
        if self.on_token is not None:
            self.on_token(piece)


@dataclass(frozen=True)
class GraphLimits:
    max_tool_rounds: int = 4
    tool_timeout_s: float = 60.0
    # a prose answer from retrieved passages: three cited sentences are about 80-120 tokens; each token costs
    # about 45 ms on 2 cores, so the cap keeps a general question answered in seconds, not half a minute
    prose_tokens: int = 160


def turn_update(patient_key: str | None, user: dict[str, Any], studies: list[dict[str, Any]], turn_start: int,
                ev_start: int) -> dict[str, Any]:
    """The input that starts a turn: the user's message, new studies, and every per-turn key reset."""
    return {"messages": [user], "studies": studies, "patient_key": patient_key, "turn_start": turn_start,
            "ev_start": ev_start, "round": 0, "retries": 0, "force": False, "reply": {}, "pending": [],
            "calls": [], "again": False, "answered": False, "frame": {}, "plan": {}, "llm_ms": 0.0,
            "tools_ms": 0.0, "error": None}


def _question(state: CaseState) -> str:
    msgs, start = state.get("messages", []), state.get("turn_start", 0)
    return msgs[start].get("question", "") if start < len(msgs) else ""


def _signature(name: str, args: dict[str, Any]) -> str:
    return name + json.dumps(args, sort_keys=True, default=str)


def _reply(res: ChatResult) -> dict[str, Any]:
    return {"text": res.text, "finish_reason": res.finish_reason, "parse_error": res.parse_error,
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in res.tool_calls]}


class AgentGraph:
    """The compiled graph and the tool executor it owns (shut down by :meth:`close`)."""

    def __init__(self, backend: ChatBackend, tools: dict[str, ToolSpec], limits: GraphLimits,
                 checkpointer: Any = None, read_frames: bool = True) -> None:
        self.backend = backend
        self.read_frames = read_frames  # False: every question goes to the model's own tool loop
        self.tools = tools
        self.limits = limits
        # the frame's schema first: it is part of the cached prompt prefix like every tool's
        self.schemas = [frame_schema(), *(t.schema() for t in tools.values())]
        self.system = render("system")
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="radconsult-tool")
        self.compiled = self._build(checkpointer)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _build(self, checkpointer: Any) -> Any:
        g = StateGraph(CaseState, context_schema=TurnContext)
        for name, node in (("gate", self.gate), ("read_frame", self.read_frame), ("model", self.model),
                           ("check_calls", self.check_calls), ("tools", self.run_tools), ("render", self.render),
                           ("review", self.review), ("finish", self.finish)):
            g.add_node(name, node)
        g.add_edge(START, "gate")
        g.add_conditional_edges("gate", self._after_gate, ["finish", "read_frame", "model"])
        g.add_conditional_edges("read_frame", self._after_frame, ["tools", "render", "model", "finish"])
        g.add_conditional_edges("model", self._after_model, ["check_calls", "review", "finish"])
        g.add_conditional_edges("check_calls", self._after_check, ["model", "tools", "review", "finish"])
        g.add_conditional_edges("tools", self._after_tools, ["render", "model"])
        g.add_edge("render", "finish")
        g.add_conditional_edges("review", lambda s: "tools" if s.get("pending") else "finish", ["tools", "finish"])
        g.add_edge("finish", END)
        return g.compile(checkpointer=checkpointer)

    # --- routing ----------------------------------------------------------------------------------
    def _after_gate(self, state: CaseState) -> str:
        if state.get("answered"):
            return "finish"
        return "read_frame" if self.read_frames else "model"

    @staticmethod
    def _after_frame(state: CaseState) -> str:
        if state.get("error"):
            return "finish"
        if state.get("pending"):
            return "tools"
        return "render" if (state.get("plan") or {}).get("answer_by") == "render" else "model"

    @staticmethod
    def _after_tools(state: CaseState) -> str:
        """A frame whose answer is rendered from the results goes on to render it; otherwise the model answers."""
        return "render" if (state.get("plan") or {}).get("answer_by") == "render" else "model"

    @staticmethod
    def _after_model(state: CaseState) -> str:
        if state.get("error"):
            return "finish"
        reply = state.get("reply") or {}
        return "check_calls" if reply.get("tool_calls") or reply.get("parse_error") else "review"

    @staticmethod
    def _after_check(state: CaseState) -> str:
        if state.get("error"):
            return "finish"
        if state.get("again"):
            return "model"
        return "tools" if state.get("pending") else "review"

    def _forced(self, state: CaseState) -> bool:
        """The next model call must answer without tools: asked to, out of rounds, or the frame already ran
        the tools the answer needs."""
        return (state.get("force", False) or state.get("round", 0) >= self.limits.max_tool_rounds
                or (state.get("plan") or {}).get("answer_by") == "model")

    # --- nodes ------------------------------------------------------------------------------------
    def gate(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Requests to act are outside decision support: a fixed answer, never an improvised dose or booking."""
        if not is_action_request(_question(state)):
            return {}
        runtime.context.emit(ACTION_ANSWER)
        return {"messages": [{"role": "assistant", "content": ACTION_ANSWER, "meta": "answer"}], "answered": True}

    def read_frame(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Read the question into a case frame, the rules first (agent/frame/complete.py): the model drafts a
        frame only when it could fill a field the rules left empty, and its draft is checked against the text.
        Then plan: the calls the agent makes itself, a clarifying question or a statement."""
        question, ctx = _question(state), runtime.context
        t0 = time.perf_counter()
        this_turn = state.get("evidence", [])[state.get("ev_start", 0):]
        driving = driving_comparison(comparisons_of(this_turn))
        measured = frame_measurements(state.get("evidence", []), [e.get("facts", {}) for e in this_turn
                                                                  if e.get("kind") == "measurement"], driving)
        previous = previous_frame(state)
        facts = {"has_image": bool(state.get("studies")), "has_patient": bool(state.get("patient_key")),
                 "measurements": measured}
        frame = read_case(question, None, previous, **facts)
        installed = self._installed(frame, ctx)
        llm_ms = state.get("llm_ms", 0.0)
        need = None if is_smalltalk(question) else model_fills(frame, question, installed,
                                                               has_image=facts["has_image"],
                                                               has_patient=facts["has_patient"])
        if need is None:
            if frame.source == "text":
                frame.source = "rules"  # read by the rules alone: no model call this turn
        else:
            log.info("the rules leave the %s open: asking the model for its reading", need)
            ctx.ready()
            messages = prompt_messages(state.get("messages", []), state.get("turn_start", 0), self.system)
            t_llm = time.perf_counter()
            try:
                res = self.backend.chat(messages, self.schemas, tool_choice=READ_CASE, max_tokens=FRAME_TOKENS)
            except LLMError as exc:
                log.error("LLM failure while reading the case: %s", exc)
                return {"error": str(exc), "llm_ms": llm_ms + (time.perf_counter() - t_llm) * 1000}
            llm_ms += (time.perf_counter() - t_llm) * 1000
            frame = read_case(question, frame_draft(res), previous, **facts)
            installed = self._installed(frame, ctx)
        frame_ms = (time.perf_counter() - t0) * 1000
        apply_comparison(frame, driving)
        plan = plan_for(frame, question, installed, bool(state.get("patient_key")))
        ctx.tools.frame = frame
        calls = []
        for n, (name, args) in enumerate(plan.calls, start=1):
            try:
                self.tools[name].validate(args)
            except (KeyError, ToolArgumentError) as exc:
                log.info("frame plan skips %s: %s", name, exc)
                continue
            calls.append({"id": f"frame_{n}", "name": name, "args": args, "auto": True})
        record = ToolCallRecord(READ_CASE, frame.to_dict(), round(frame_ms, 1), True)
        update: dict[str, Any] = {"frame": frame.to_dict(), "pending": calls, "calls": [record.to_dict()],
                                  "plan": {"answer_by": plan.answer_by, "clarify": plan.clarify,
                                           "statement": plan.statement},
                                  "llm_ms": llm_ms}
        if calls:
            update["messages"] = [tool_call_message(calls)]
        return update

    @staticmethod
    def _installed(frame: CaseFrame, ctx: TurnContext) -> list[Coverage]:
        """What the installed classifiers cover (read from their bundles only for an image question)."""
        return [m.coverage for m in ctx.tools.services.classifiers.models()] if frame.intent == "image" else []

    def render(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """The answer rendered from the frame's results (the recommendation is the calculator's own words)."""
        frame = CaseFrame.from_dict(state.get("frame") or {})
        plan = state.get("plan") or {}
        items = Ledger.from_dicts(state.get("evidence", [])[state.get("ev_start", 0):]).items
        answer = compose_answer(frame, items, plan.get("clarify"), plan.get("statement"))
        failed = [c.get("error") or c["name"] for c in state.get("calls", []) if not c["ok"]]
        if failed:
            answer += f"\nNot done: {'; '.join(failed)}."
        runtime.context.emit(answer)
        return {"messages": [{"role": "assistant", "content": answer, "meta": "answer"}], "pending": []}

    def model(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """One LLM call; its reply goes to ``check_calls`` (tool calls) or ``review`` (text)."""
        force = self._forced(state)
        messages = prompt_messages(state.get("messages", []), state.get("turn_start", 0), self.system)
        if force:
            note = "" if state.get("round", 0) < self.limits.max_tool_rounds else "The tool-round limit was reached."
            intent = (state.get("frame") or {}).get("intent")
            note = " ".join(x for x in (note, ANSWER_NOTES.get(intent, "")) if x)
            messages.append({"role": "user", "content": render("force_answer", note=note)})
        runtime.context.ready()
        t0 = time.perf_counter()
        try:
            res = self.backend.chat(messages, self.schemas, tool_choice="none" if force else "auto",
                                    on_token=runtime.context.emit,
                                    max_tokens=self.limits.prose_tokens if force else None)
        except LLMError as exc:
            log.error("LLM failure: %s", exc)
            return {"error": str(exc), "llm_ms": state.get("llm_ms", 0.0) + (time.perf_counter() - t0) * 1000}
        return {"reply": _reply(res), "llm_ms": state.get("llm_ms", 0.0) + res.total_ms, "again": False}

    def _validate_calls(self, calls: list[ToolCall], question: str) -> tuple[list[ToolCall], list[str], str | None]:
        """(calls with enum arguments aligned to the question, the changes, the first problem or None)."""
        aligned, corrections = [], []
        for call in calls:
            if call.name in self.tools and call.name in CALCULATOR_NAMES:
                args, changed = align_enums(call.arguments, self.tools[call.name].args_model, question)
                call = dataclasses.replace(call, arguments=args)
                corrections += [f"{call.name} {c}" for c in changed]
            aligned.append(call)
        for call in aligned:
            if call.name not in self.tools:  # a backend that does not check names (e.g. a remote server)
                return aligned, corrections, f"unknown tool '{call.name}'; available: {', '.join(sorted(self.tools))}"
            try:
                self.tools[call.name].validate(call.arguments)
            except ToolArgumentError as exc:
                return aligned, corrections, str(exc)
        return aligned, corrections, None

    def check_calls(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Validate the model's tool calls: retry once with the error, then force an answer."""
        reply, force = state.get("reply") or {}, self._forced(state)
        calls = [ToolCall(c["name"], c["arguments"], c["id"]) for c in reply.get("tool_calls", [])
                 if c["name"] != READ_CASE]  # the frame is read once, before the model's own turn
        problem = reply.get("parse_error")
        if not calls and not problem:
            return {"force": True, "pending": [], "again": True}
        corrections: list[str] = []
        if not problem:
            calls, corrections, problem = self._validate_calls(calls, _question(state))
        if problem:
            log.info("invalid tool call: %s", problem)
            if state.get("retries", 0) < 1 and not force:
                note = {"role": "user", "content": render("retry_tool", error=problem), "meta": "retry"}
                return {"messages": [note], "retries": 1, "pending": [], "again": True}
            if force:  # even the forced answer failed: end the turn gracefully
                return {"error": f"the model could not produce a valid tool call or answer ({problem})",
                        "pending": []}
            invalid = ToolCallRecord("(invalid)", {}, 0.0, False, error=problem)
            return {"force": True, "pending": [], "again": True,
                    "calls": state.get("calls", []) + [invalid.to_dict()]}
        if force:  # tool calls where an answer was required: the answer is empty (review replaces it)
            return {"reply": {**reply, "text": "", "tool_calls": []}, "pending": []}
        done = {_signature(c["name"], c["arguments"]) for c in state.get("calls", [])}
        if all(_signature(c.name, c.arguments) in done for c in calls):
            log.info("repeated tool call; asking for the answer")
            return {"force": True, "pending": [], "again": True}
        if corrections:
            log.info("arguments aligned with the question: %s", "; ".join(corrections))
        msg = {"role": "assistant", "content": "", "tool_calls": [c.as_message_dict() for c in calls]}
        pending = [{"id": c.id, "name": c.name, "args": c.arguments,
                    "aligned": [x for x in corrections if x.startswith(c.name + " ")]} for c in calls]
        return {"messages": [msg], "pending": pending, "again": False}

    def _run_one(self, call: dict[str, Any], ctx: ToolContext, ledger: Ledger) -> tuple[str, str | None]:
        """(content for the model, error or None); the evidence goes into ``ledger``."""
        name = call["name"]
        try:
            fut = self._executor.submit(self.tools[name].run, call["args"], ctx, ledger)
            items = fut.result(timeout=self.limits.tool_timeout_s)
            return "\n\n".join(e.prompt_block() for e in items), None
        except FutureTimeout:
            err = f"{name} timed out after {self.limits.tool_timeout_s:.0f} s"
        except RadconsultError as exc:
            err = str(exc)
        except Exception as exc:  # a bug in a tool must not end the consultation
            log.exception("tool %s crashed", name)
            err = f"{name} failed unexpectedly ({type(exc).__name__})"
        return f"ERROR: {err}. Tell the user this could not be done.", err

    def run_tools(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Run the pending calls; each result becomes evidence, recorded with the ids it added."""
        ledger = Ledger.from_dicts(state.get("evidence", []))
        before = len(ledger)
        out_msgs, calls = [], list(state.get("calls", []))
        tools_ms = state.get("tools_ms", 0.0)
        auto_ids: set[str] = set()
        if any(c["name"] in self.tools and self.tools[c["name"]].audit_action == "search"
               for c in state.get("pending", [])):
            runtime.context.ready()  # a search needs the knowledge base that the warm-up may still be building
        for call in state.get("pending", []):
            mark, t0 = len(ledger), time.perf_counter()
            content, err = self._run_one(call, runtime.context.tools, ledger)
            ms = (time.perf_counter() - t0) * 1000
            tools_ms += ms
            added = tuple(e.id for e in ledger.items[mark:])
            record = ToolCallRecord(call["name"], call["args"], round(ms, 1), err is None, error=err,
                                    auto=bool(call.get("auto")), aligned=tuple(call.get("aligned") or ()),
                                    evidence_ids=added)
            calls.append(record.to_dict())
            if call.get("auto"):
                auto_ids.update(added)
            out_msgs.append({"role": "tool", "tool_call_id": call["id"], "name": call["name"], "content": content})
        new_ids = [e.id for e in ledger.items[before:]]
        if out_msgs and new_ids:
            out_msgs[-1]["content"] += (f"\n\nUse these results to answer; cite them as "
                                        f"{', '.join(f'[{i}]' for i in new_ids)}.")
        evidence = [{**e, "auto": True} if e["id"] in auto_ids else e for e in ledger.to_dicts()[before:]]
        return {"messages": out_msgs, "evidence": evidence, "calls": calls,
                "tools_ms": tools_ms, "round": state.get("round", 0) + 1, "pending": []}

    def review(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """The model's text: retrieve first when it makes uncited claims before any tool ran."""
        reply = state.get("reply") or {}
        answer = (reply.get("text") or "").strip()
        if reply.get("finish_reason") == "length":
            answer = last_full_sentence(answer)
        # the fallback also follows a forced answer (a repeated or invalid call), not the round limit; it
        # is for the model's own loop only (a frame already chose what to retrieve)
        rounds_left = state.get("round", 0) < self.limits.max_tool_rounds
        loop = (state.get("plan") or {}).get("answer_by", "loop") == "loop"
        auto = plan_fallback(state, answer, self.tools) if rounds_left and loop else []
        if auto:  # an uncited clinical answer before any tool ran: retrieve, then answer again
            # the draft was already streamed: say why another answer follows
            runtime.context.emit(f"\n\n({RETRIEVING})\n\n")
            return {"messages": [tool_call_message(auto)], "pending": auto}
        if self._forced(state) and (not answer or answer.startswith(("{", "[", "<tool_call>", "```"))):
            # the model could not turn the results into prose: answer from the evidence itself
            answer = extractive_answer(Ledger.from_dicts(state.get("evidence", [])[state.get("ev_start", 0):]))
        return {"messages": [{"role": "assistant", "content": answer, "meta": "answer"}], "pending": []}

    def finish(self, state: CaseState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Compose and verify the answer; record the turn."""
        ctx = runtime.context
        msgs = state.get("messages", [])
        msgs_out: list[dict[str, Any]] = []
        if state.get("error"):
            answer = f"I could not complete this answer: {state['error']}"
            msgs_out = [{"role": "assistant", "content": answer, "meta": "error"}]
        else:
            last = msgs[-1] if msgs else {}
            answer = last.get("content", "") if last.get("role") == "assistant" else ""
            if not answer.strip():
                answer = NO_ANSWER
                msgs_out = [{"role": "assistant", "content": answer, "meta": "error"}]
        ledger = Ledger.from_dicts(state.get("evidence", []))
        turn_items = ledger.items[state.get("ev_start", 0):]
        rendered = (state.get("plan") or {}).get("answer_by") == "render"
        failed = [] if rendered else [c.get("error") or c["name"] for c in state.get("calls", [])
                                      if not c["ok"] and not c.get("auto")]
        shown = compose(answer, ledger, turn_items, _question(state), failed, state.get("error"), rendered)
        record = {"question": _question(state), "answer": shown.answer, "marked_answer": shown.marked_answer,
                  "cited": shown.cited, "unsupported_sentences": shown.unsupported,
                  "attributed_sentences": shown.attributed, "citation_validity": shown.citation_validity,
                  "invalid_ids": shown.invalid_ids, "tool_calls": state.get("calls", []), "error": state.get("error"),
                  "contradicted_sentences": shown.contradicted, "frame": state.get("frame") or None,
                  "clarifying_question": (state.get("plan") or {}).get("clarify"),
                  "evidence_ids": [e.id for e in turn_items],
                  "timings": {"llm_ms": round(state.get("llm_ms", 0.0), 1),
                              "tools_ms": round(state.get("tools_ms", 0.0), 1),
                              "ttft_ms": round((ctx.ttft - ctx.started) * 1000, 1) if ctx.ttft else None}}
        return {"messages": msgs_out, "turns": [record]}
