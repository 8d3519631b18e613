"""A scripted chat backend and fake tools: for orchestration tests only (no model, no knowledge base)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.evidence import Evidence, Ledger
from agent.llm.base import ChatResult, ToolCall, ToolSchema
from agent.tools_adapter import AgentTool, SearchArgs, StudyArgs, ToolContext
from tools.errors import LLMError, ToolExecutionError

Step = ChatResult | Exception | Callable[[list[dict[str, Any]]], ChatResult]


class ScriptedBackend:
    """Returns the scripted results in order and records every request it saw."""

    name = "scripted"

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        self.requests: list[dict[str, Any]] = []

    def chat(self, messages, tools=None, *, tool_choice="auto", on_token=None, max_tokens=None) -> ChatResult:
        self.requests.append({"messages": messages, "tools": tools, "tool_choice": tool_choice})
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

    def close(self) -> None:
        return None


def call(name: str, **args: Any) -> ChatResult:
    return ChatResult(tool_calls=[ToolCall(name, args, f"c_{name}")])


def text(answer: str) -> ChatResult:
    return ChatResult(text=answer)


class FleischnerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size_mm: float = Field(..., gt=0, le=100)


GUIDELINE = ("For a single solid nodule 6-8 mm in a low-risk patient, CT at 6-12 months, then consider CT at "
             "18-24 months.")


def fake_tools(guideline_quote: str = GUIDELINE, report_quote: str = "Stable 5 mm nodule in the right upper lobe.",
               seen_patients: list[str | None] | None = None) -> dict[str, AgentTool]:
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
        return [ledger.add("calculator", "fleischner_followup", "Fleischner Society 2017", title="Fleischner 2017",
                           quote="CT at 6-12 months, then consider CT at 18-24 months", section="Solid nodules")]

    def classify(args: StudyArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        return [ledger.add("classifier", "classify_study", "pneumonia-cxr", title="pneumonia-cxr on study S1",
                           quote="pneumonia-cxr 1.0.0: P(pneumonia) = 0.03 (threshold 0.74) -> normal; caution: "
                                 "trained on paediatric chest radiographs",
                           facts={"probability": 0.03, "abstained": False, "label": "normal"})]

    def slow(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        import time

        time.sleep(3)
        return []

    tools = [AgentTool("search_guidelines", "search guidelines", SearchArgs, guidelines),
             AgentTool("search_prior_reports", "search prior reports", SearchArgs, prior),
             AgentTool("fleischner_followup", "Fleischner", FleischnerArgs, fleischner),
             AgentTool("classify_study", "classify", StudyArgs, classify),
             AgentTool("slow_tool", "sleeps", SearchArgs, slow)]
    return {t.name: t for t in tools}


def schema_names(tools: list[ToolSchema] | None) -> list[str]:
    return [t.name for t in tools or []]
