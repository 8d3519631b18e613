"""What one consultation turn returns: typed records that the UI, the CLI, the eval and the audit log read.

The graph keeps its per-case state as plain JSON (the SQLite checkpointer stores it); these frozen
types are built from that state at the boundary (:meth:`Consultation.ask`), so every reader sees the
same fields with the same names. Arrays (saliency maps) live only in the process that computed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.evidence import Evidence
from tools.disclaimer import DISCLAIMER

if TYPE_CHECKING:
    import numpy as np

    from agent.frame.model import CaseFrame
    from agent.summary import Summary


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call of a turn. ``ms`` is wall time; ``auto`` marks a call the agent made itself (from
    the case frame or the grounding fallback) rather than one the model chose; ``aligned`` lists the
    arguments changed to what the question states; ``evidence_ids`` are the ledger items it added."""

    name: str
    arguments: dict[str, Any]
    ms: float
    ok: bool
    error: str | None = None
    auto: bool = False
    aligned: tuple[str, ...] = ()
    evidence_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "ms": self.ms, "ok": self.ok,
                "error": self.error, "auto": self.auto, "aligned": list(self.aligned),
                "evidence_ids": list(self.evidence_ids)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCallRecord:
        return cls(name=str(data["name"]), arguments=dict(data.get("arguments") or {}),
                   ms=float(data.get("ms") or 0.0), ok=bool(data.get("ok")), error=data.get("error"),
                   auto=bool(data.get("auto")), aligned=tuple(data.get("aligned") or ()),
                   evidence_ids=tuple(data.get("evidence_ids") or ()))


@dataclass(frozen=True)
class Timings:
    """Milliseconds. ``ttft_ms`` is the first streamed piece of the answer (None when nothing streamed)."""

    ttft_ms: float | None = None
    llm_ms: float | None = None
    tools_ms: float | None = None
    total_ms: float = 0.0

    def to_dict(self) -> dict[str, float | None]:
        return {"ttft_ms": self.ttft_ms, "llm_ms": self.llm_ms, "tools_ms": self.tools_ms,
                "total_ms": self.total_ms}


@dataclass(frozen=True)
class StudyRecord:
    """An attached study as the case knows it: ``ref`` (S1, S2 ...) and a label without identifiers."""

    ref: str
    label: str

    def to_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "label": self.label}


@dataclass(frozen=True)
class ModelCard:
    """What the page and the exports state about each installed classifier."""

    name: str
    version: str
    intended_use: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "intended_use": self.intended_use}


@dataclass(frozen=True, eq=False)
class SaliencyMap:
    """Where a classifier looked, for the viewer: values in [0, 1] at the study's size (not a segmentation)."""

    evidence_id: str
    study_ref: str
    model: str
    label: str
    array: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class TurnResult:
    """One answered question.

    ``answer`` is what the clinician reads (contradicted sentences already removed); ``marked_answer``
    flags the sentences without support. ``evidence`` is the case's whole ledger after this turn and
    ``cited_ids`` the items the answer cites. ``error`` is set when the turn could not be completed
    (the answer then says so).
    """

    case_id: str
    question: str
    answer: str
    marked_answer: str
    model: str
    timings: Timings
    tool_calls: tuple[ToolCallRecord, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    cited_ids: tuple[str, ...] = ()
    unsupported_sentences: tuple[str, ...] = ()
    attributed_sentences: tuple[str, ...] = ()
    contradicted_sentences: tuple[str, ...] = ()
    citation_validity: float | None = None
    error: str | None = None
    studies: tuple[StudyRecord, ...] = ()
    frame: CaseFrame | None = None
    clarifying_question: str | None = None
    saliency: tuple[SaliencyMap, ...] = ()
    summary: Summary | None = None

    @property
    def citations(self) -> tuple[Evidence, ...]:
        """The evidence items the answer cites, in citation order."""
        by_id = {e.id: e for e in self.evidence}
        return tuple(by_id[i] for i in self.cited_ids if i in by_id)

    def to_dict(self) -> dict[str, Any]:
        """The ``ask --json`` record (saliency arrays are left out)."""
        out: dict[str, Any] = {
            "case_id": self.case_id, "question": self.question, "answer": self.answer,
            "marked_answer": self.marked_answer, "citations": [e.citation() for e in self.citations],
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "unsupported_sentences": list(self.unsupported_sentences),
            "attributed_sentences": list(self.attributed_sentences),
            "contradicted_sentences": list(self.contradicted_sentences),
            "citation_validity": self.citation_validity, "model": self.model, "timings": self.timings.to_dict(),
            "error": self.error, "studies": [s.to_dict() for s in self.studies],
            "frame": self.frame.to_dict() if self.frame is not None else None,
            "clarifying_question": self.clarifying_question, "disclaimer": DISCLAIMER}
        if self.summary is not None:
            out["summary"] = self.summary.to_dict()
            out["summary_markdown"] = self.summary.to_markdown()
        return out
