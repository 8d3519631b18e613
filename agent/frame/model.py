"""The case frame: how a question was read, before any answer.

:class:`FrameDraft` is what the LLM writes under its JSON schema (the ``read_case`` call); the reader
checks it against the text and the conversation and produces a :class:`CaseFrame`, which also says
what was assumed, corrected or is missing. The frame is shown in the trace, so a clinician can see how
the question was read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from agent.llm.base import ChatResult, ToolSchema

READ_CASE = "read_case"  # the frame's call name in the prompt
Intent = Literal["followup", "screening", "category", "image", "prior", "knowledge", "smalltalk", "out_of_scope"]
System = Literal["fleischner", "lung_rads", "birads", "uspstf_lung", "uspstf_breast", "none"]
INTENTS: tuple[str, ...] = ("followup", "screening", "category", "image", "prior", "knowledge", "smalltalk",
                            "out_of_scope")
CALCULATOR_OF = {"fleischner": "fleischner_followup", "lung_rads": "lung_rads_category",
                 "birads": "birads_category", "uspstf_lung": "uspstf_lung_screening",
                 "uspstf_breast": "uspstf_breast_screening"}
SYSTEM_NAMES = {"fleischner": "Fleischner 2017", "lung_rads": "Lung-RADS v2022", "birads": "BI-RADS",
                "uspstf_lung": "USPSTF 2021 lung cancer screening", "uspstf_breast": "USPSTF 2024 breast cancer screening"}


class FrameDraft(BaseModel):
    """The question as the model reads it. Leave a field out when the question does not say it."""

    model_config = ConfigDict(extra="forbid")

    intent: Intent = Field(description="followup (management of a finding), screening (eligibility), category "
                                       "(meaning of a category), image (reading an attached image), prior (earlier "
                                       "reports), knowledge, smalltalk or out_of_scope")
    system: System | None = Field(None, description="guideline that applies")
    finding: str | None = Field(None, max_length=60, description="image questions: the finding asked about")
    size_mm: float | None = Field(None, gt=0, le=300, description="nodule size in mm")
    nodule_type: Literal["solid", "part_solid", "ground_glass"] | None = Field(None, description="nodule type")
    solid_mm: float | None = Field(None, gt=0, le=300, description="solid component in mm")
    count: Literal["single", "multiple"] | None = Field(None, description="number of nodules")
    setting: Literal["incidental", "screening"] | None = Field(None, description="how the nodule was found")
    status: Literal["baseline", "new", "growing", "stable"] | None = Field(None, description="change since prior")
    risk: Literal["low", "high"] | None = Field(None, description="lung cancer risk")
    age: int | None = Field(None, ge=0, le=120, description="age in years")
    pack_years: float | None = Field(None, ge=0, le=300, description="smoking pack-years")
    smoking: Literal["current", "former", "never"] | None = Field(None, description="smoking status")
    quit_years: float | None = Field(None, ge=0, le=100, description="years since quitting")
    category: str | None = Field(None, max_length=4, description="BI-RADS or Lung-RADS category named")


@dataclass
class CaseFrame:
    """The reconciled reading of the question. ``missing`` names what the guideline needs and the question
    does not give; ``assumed`` what was taken as the usual reading (stated in the answer); ``corrections``
    how the model's draft was changed to agree with the text."""

    intent: str = "knowledge"
    system: str = "none"
    finding: str | None = None
    size_mm: float | None = None
    nodule_type: str | None = None
    solid_mm: float | None = None
    count: str | None = None
    setting: str | None = None
    status: str | None = None
    risk: str | None = None
    risk_basis: str | None = None
    age: int | None = None
    pack_years: float | None = None
    smoking: str | None = None
    quit_years: float | None = None
    category: str | None = None
    no_nodule: bool = False
    known_cancer: bool = False
    immunocompromised: bool = False
    calcified: bool = False
    typical_perifissural: bool = False
    radiograph_only: bool = False
    organ: str | None = None
    sex: str | None = None
    criteria: bool = False          # a screening question about no patient: the criteria themselves
    follow_up_screen: bool = False  # a nodule on a later screen ("follow-up LDCT", "previously seen"): no baseline
    stable_months: float | None = None   # how long the nodule has been stable (a measured comparison)
    comparison: str | None = None        # the comparison evidence id that set the status
    missing: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)
    corrections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = "model"          # model | rules (no model call) | text (the draft was unusable) | previous

    @property
    def calculator(self) -> str | None:
        """The calculator tool that answers this frame, or None."""
        return CALCULATOR_OF.get(self.system)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], False) or k in ("intent", "system")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseFrame:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    """The draft's fields that say something: small models write null, "", "unknown" or 0 for "not stated"."""
    return {k: v for k, v in arguments.items()
            if v not in (None, "", "null", "none", "unknown") and not (v == 0 and not isinstance(v, bool))}


def frame_schema() -> ToolSchema:
    """The frame as a tool the model is made to call first (its schema sits in the cached prompt prefix)."""
    from agent.llm.base import ToolSchema
    from agent.toolbox.spec import compact_schema

    def check(arguments: dict[str, Any]) -> str | None:
        try:
            FrameDraft.model_validate(_given(arguments))
        except ValidationError as exc:
            from tools.errors import validation_problems

            return f"{READ_CASE}: invalid arguments ({validation_problems(exc)})"
        return None

    return ToolSchema(READ_CASE, "Read the question into a case frame first: fill only what the question states.",
                      compact_schema(FrameDraft), check=check)


def frame_draft(res: ChatResult) -> FrameDraft | None:
    """The model's draft from its forced ``read_case`` call; None when it wrote none that validates."""
    for call in res.tool_calls:
        if call.name == READ_CASE:
            try:
                return FrameDraft.model_validate(_given(call.arguments))
            except ValidationError:
                return None
    return None


def previous_frame(state: dict[str, Any]) -> CaseFrame | None:
    """The frame of the case's last answered guideline question (for follow-up turns), or None."""
    for record in reversed(state.get("turns", [])):
        frame = record.get("frame")
        if record.get("error") is None and frame and frame.get("intent") in ("followup", "category", "screening"):
            return CaseFrame.from_dict(frame)
    return None
