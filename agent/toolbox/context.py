"""What a tool may use beyond its arguments: the process's services and the turn's case.

:class:`ToolServices` is built once per consultation (the knowledge base, opened once; the
classifiers). :class:`ToolContext` is built per turn: the attached studies, the case's pseudonymous
patient key and the question. The patient key and the studies come from here, never from the model:
``search_prior_reports`` has no patient argument, so a model (or an instruction injected into data)
cannot choose another patient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tools.errors import ToolArgumentError, ToolExecutionError

if TYPE_CHECKING:
    from agent.frame.model import CaseFrame
    from agent.results import SaliencyMap
    from knowledge.retrieve import Citation
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.inference import Finding
    from tools.imaging import ImageStudy


class KnowledgeSearch(Protocol):
    """The knowledge base as the tools use it (knowledge/ implements it; opened once per process)."""

    def ensure_ready(self) -> None:
        """Build the bundled corpus into the store when it is missing or changed."""

    def search(self, query: str, kind: str, *, patient: str | None = None, k: int = 3) -> list[Citation]:
        """Passages of ``kind`` ("guideline" | "report"), best first; ``patient`` filters reports."""


class ImageClassifiers(Protocol):
    """The classifier registry and ``classify`` as the tools use them."""

    def models(self) -> list[Bundle]:
        """Every registered classifier bundle (bundled and user-supplied)."""

    def classify(self, study: ImageStudy, model: str | None, saliency: bool) -> Finding:
        """One calibrated finding (or abstention) for a 2-D study."""


@dataclass(frozen=True)
class ToolServices:
    """Process-wide services the tools use."""

    knowledge: KnowledgeSearch
    classifiers: ImageClassifiers


@dataclass
class AttachedStudy:
    """A study attached to the case: ``ref`` is what the model uses (S1, S2 ...)."""

    ref: str
    study: ImageStudy | None
    label: str = ""          # a display name without identifiers (file stem is not used: it may hold a name)


@dataclass
class ToolContext:
    """One turn's view of the case. ``saliency`` collects the maps the classifier computed this turn."""

    services: ToolServices
    studies: list[AttachedStudy] = field(default_factory=list)
    patient_key: str | None = None
    question: str = ""
    saliency: list[SaliencyMap] = field(default_factory=list)
    frame: CaseFrame | None = None   # how the question was read (retrieval keeps the sections that match it)

    def study(self, ref: str | None) -> AttachedStudy:
        if not self.studies:
            raise ToolExecutionError("no image is attached to this case; ask the user to attach a study")
        if not ref or ref.lower() in ("latest", "current", "last", "this"):
            return self.studies[-1]
        for s in self.studies:
            if s.ref.lower() == ref.strip().lower():
                return s
        if len(self.studies) == 1 and not re.fullmatch(r"[Ss]\d+", ref.strip()):
            return self.studies[0]  # one study attached: a free-text reference ("the chest X-ray") means it
        raise ToolArgumentError(f"unknown study '{ref}'; attached: {', '.join(s.ref for s in self.studies)}")

    def loaded_study(self, ref: str | None) -> AttachedStudy:
        """Like :meth:`study`, but the study's pixels must still be in this process."""
        att = self.study(ref)
        if att.study is None:
            raise ToolExecutionError(f"study {att.ref} is no longer loaded (the service restarted); attach it again")
        return att
