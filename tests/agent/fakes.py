"""A scripted chat backend and fake tools: for orchestration tests only (no model, no knowledge base)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.evidence import Evidence, Ledger
from agent.llm.base import ChatResult, TokenCallback, ToolCall, ToolSchema
from agent.toolbox import TOOLS, SearchArgs, StudyArgs, ToolContext, ToolSpec
from tools.errors import LLMError, ToolExecutionError

Step = ChatResult | Exception | Callable[[list[dict[str, Any]]], ChatResult]


class ScriptedBackend:
    """Returns the scripted results in order and records every request it saw."""

    name = "scripted"

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        self.requests: list[dict[str, Any]] = []

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        self.requests.append({"messages": messages, "tools": tools, "tool_choice": tool_choice,
                              "max_tokens": max_tokens})
        if tool_choice not in ("auto", "none") and not self._next_calls(tool_choice):
            return ChatResult()  # a forced call (the case frame) the script does not answer: no draft
        if not self.steps:
            raise LLMError("script exhausted")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step):
            step = step(messages)
        if step.text and on_token:
            for word in step.text.split(" "):
                on_token(word + " ")
        return step

    def _next_calls(self, name: str) -> bool:
        step = self.steps[0] if self.steps else None
        return isinstance(step, ChatResult) and any(c.name == name for c in step.tool_calls)

    def close(self) -> None:
        return None


class NoModelBackend:
    """A chat model that must never be asked: a turn the rules read fully makes no LLM call. Any call is
    recorded and fails the test (an AssertionError, which no node turns into an answer)."""

    name = "no-model"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        self.requests.append({"messages": messages, "tool_choice": tool_choice})
        raise AssertionError(f"the model was asked (tool_choice={tool_choice}) in a turn the rules read fully")

    def close(self) -> None:
        return None


def frame(**fields: Any) -> ChatResult:
    """The model's draft of the case frame (its forced ``read_case`` call)."""
    return ChatResult(tool_calls=[ToolCall("read_case", fields, "c_frame")])


def call(name: str, **args: Any) -> ChatResult:
    return ChatResult(tool_calls=[ToolCall(name, args, f"c_{name}")])


def text(answer: str) -> ChatResult:
    return ChatResult(text=answer)


class FleischnerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size_mm: float = Field(..., gt=0, le=100)


GUIDELINE = ("For a single solid nodule 6-8 mm in a low-risk patient, CT at 6-12 months, then consider CT at "
             "18-24 months.")


def spec(name: str, description: str, args_model: type[BaseModel], fn: Callable[..., list[Evidence]]) -> ToolSpec:
    """A fake tool declared like the real one of that name (same audit action and evidence kind)."""
    real = TOOLS.get(name) if name in TOOLS else None
    return ToolSpec(name, description, args_model, fn, audit_action=real.audit_action if real else "search",
                    returns=real.returns if real else "guideline")


def real_tools(settings: Any) -> dict[str, ToolSpec]:
    """The production tool set over this installation's services (real classifiers, real knowledge base)."""
    from agent.services import build_services
    from agent.toolbox import toolset

    return toolset(build_services(settings).classifiers)


def default_tools() -> dict[str, ToolSpec]:
    """The production tool set with the bundled classifiers (for schema-level tests that have no settings)."""
    import tempfile
    from pathlib import Path

    from agent.settings import Settings

    return real_tools(Settings(data_dir=Path(tempfile.mkdtemp(prefix="rc-tools-"))))


def real_context(settings: Any, **kw: Any) -> ToolContext:
    """A tool context over the real services (the studies, patient key and question as given)."""
    from agent.services import build_services

    return ToolContext(build_services(settings), **kw)


def fake_tools(guideline_quote: str = GUIDELINE, report_quote: str = "Stable 5 mm nodule in the right upper lobe.",
               seen_patients: list[str | None] | None = None) -> dict[str, ToolSpec]:
    def guidelines(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        return [ledger.add("guideline", "search_guidelines", "Fleischner Society", title="Fleischner 2017",
                           quote=guideline_quote, section="Solid nodules", year=2017, url="https://example.org/f")]

    def prior(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        if seen_patients is not None:
            seen_patients.append(ctx.patient_key)
        if not ctx.patient_key:
            raise ToolExecutionError("no patient is attached to this case")
        return [ledger.add("prior_report", "search_prior_reports", "prior report", quote=report_quote,
                           date="2023-03-14", section="Findings")]

    def fleischner(args: FleischnerArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        # the facts have the production shape (agent.toolbox.calculators: inputs and the structured result)
        result = {"applicable": True, "recommendation": "CT at 6-12 months, then consider CT at 18-24 months.",
                  "rule": "solid, single, 6-8 mm, low risk", "size_mm_used": round(args.size_mm), "notes": [],
                  "guideline": "Fleischner Society 2017"}
        return [ledger.add("calculator", "fleischner_followup", "Fleischner Society 2017", title="Fleischner 2017",
                           quote="CT at 6-12 months, then consider CT at 18-24 months", section="Solid nodules",
                           facts={"inputs": args.model_dump(mode="json"), "result": result})]

    def classify(args: StudyArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        # the facts have the production shape (agent.toolbox.imaging.finding_facts)
        facts = {"study": "S1", "model": "pneumonia-cxr", "version": "1.0.0", "label": "normal",
                 "probabilities": {"normal": 0.97, "pneumonia": 0.03}, "probability": 0.03,
                 "positive_label": "pneumonia", "threshold": 0.74, "abstained": False, "abstain_reason": None,
                 "caution": "trained on paediatric chest radiographs", "ood_flag": False, "saliency": False,
                 "model_card": {"name": "pneumonia-cxr", "intended_use": "Frontal chest radiographs of young children."}}
        return [ledger.add("classifier", "classify_study", "pneumonia-cxr", title="pneumonia-cxr on study S1",
                           quote="pneumonia-cxr 1.0.0: P(pneumonia) = 0.03 (threshold 0.74) -> normal; caution: "
                                 "trained on paediatric chest radiographs", facts=facts)]

    def slow(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        import time

        time.sleep(3)
        return []

    tools = [spec("search_guidelines", "search guidelines", SearchArgs, guidelines),
             spec("search_prior_reports", "search prior reports", SearchArgs, prior),
             spec("fleischner_followup", "Fleischner", FleischnerArgs, fleischner),
             spec("classify_study", "classify", StudyArgs, classify),
             spec("slow_tool", "sleeps", SearchArgs, slow)]
    return {t.name: t for t in tools}


def schema_names(tools: list[ToolSchema] | None) -> list[str]:
    return [t.name for t in tools or []]


def one_guideline_passage(monkeypatch: Any, *, source: str, organisation: str, title: str, year: int, section: str,
                          quote: str) -> None:
    """Every guideline search returns this one passage, as the real :class:`knowledge.retrieve.Citation` (the
    knowledge base's search is the boundary replaced; the tools, the ledger and the verifier run for real)."""
    from agent.services import KnowledgeService
    from knowledge.retrieve import Citation

    cit = Citation(chunk_id="c1", source=source, title=title, organisation=organisation, year=year, section=section,
                   page=None, url="https://example.org", quote=quote, score=0.03, kind="guideline")
    monkeypatch.setattr(KnowledgeService, "ensure_ready", lambda self: None)
    monkeypatch.setattr(KnowledgeService, "search", lambda self, q, kind, patient=None, k=3: [cit])
