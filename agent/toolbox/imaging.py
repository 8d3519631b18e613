"""Image tools: ``inspect_study`` (the study's safe header facts) and ``classify_study`` (a calibrated finding)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from agent.evidence import Evidence, Ledger, sanitize_data
from agent.results import SaliencyMap
from agent.toolbox.spec import ToolSpec

if TYPE_CHECKING:
    from agent.toolbox.context import ImageClassifiers, ToolContext
    from tools.classifiers.coverage import Coverage
    from tools.classifiers.inference import Finding

CLASSIFY_HEAD = "Run an image classifier on an attached study"
CLASSIFY_TAIL = "Calibrated probabilities, caution or abstention, optional saliency."
DESCRIPTION_CHARS = 300  # ToolSpec's limit


class StudyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study: str = Field("latest", max_length=200, description="S1, S2 or latest")


class ClassifyArgs(StudyArgs):
    model: str | None = Field(None, max_length=64, description="classifier name; needed for PNG/JPEG images")
    saliency: bool = Field(False, description="also compute a saliency map")


def installed_coverage(classifiers: ImageClassifiers) -> list[Coverage]:
    """What each registered classifier covers, from its bundle ([] when the registry cannot be read)."""
    import logging

    try:
        return [b.coverage for b in classifiers.models()]
    except Exception as exc:  # noqa: BLE001 - registry unavailable: free text, checked by classify()
        logging.getLogger(__name__).info("classifier registry unavailable for the tool schema: %s", exc)
        return []


def classify_args_model(classifiers: ImageClassifiers) -> type[ClassifyArgs]:
    """ClassifyArgs whose ``model`` is an enum of the registered classifiers (free text when none load)."""
    covered = installed_coverage(classifiers)
    if not covered:
        return ClassifyArgs
    names = tuple(c.model for c in covered)
    hint = ", ".join(f"{c.model} ({c.tool_hint})" for c in covered)
    return create_model("ClassifyArgs", __base__=ClassifyArgs,
                        model=(Literal[names] | None, Field(None, description=f"classifier: {hint}")))


def classify_description(covered: list[Coverage]) -> str:
    """The classify_study description from the installed bundles' tool hints, within the 300 characters a
    tool description may have (models that do not fit are named without their hint)."""
    if not covered:
        return f"{CLASSIFY_HEAD}. {CLASSIFY_TAIL}"
    budget = DESCRIPTION_CHARS - len(CLASSIFY_HEAD) - len(CLASSIFY_TAIL) - 4
    parts = [c.tool_hint for c in covered]
    k = len(covered)
    while k and len("; ".join(parts)) > budget:  # the last hints give way to the bare names
        k -= 1
        parts = [c.tool_hint for c in covered[:k]] + [("also " if k else "") + ", ".join(c.model for c in covered[k:])]
    text = f"{CLASSIFY_HEAD}: {'; '.join(parts)}. {CLASSIFY_TAIL}"
    return text if len(text) <= DESCRIPTION_CHARS else f"{CLASSIFY_HEAD}. {CLASSIFY_TAIL}"


def _inspect(args: StudyArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    att = ctx.loaded_study(args.study)
    s = att.study
    assert s is not None
    meta = {k: v for k, v in s.metadata.to_dict().items() if v not in (None, "")}
    facts = {"study": att.ref, "format": s.source_format, "shape": list(s.shape),
             "spacing_mm": [round(x, 3) if x else None for x in s.spacing], **meta}
    # each DICOM string is untrusted text: sanitised on its own so one bad tag cannot hide the others
    parts = [f"{k.replace('_', ' ')}: {sanitize_data(str(v), 200)[0] if isinstance(v, str) else v}"
             for k, v in facts.items() if k != "study"]
    return [ledger.add("dicom", "inspect_study", "DICOM header" if s.source_format == "dicom"
                       else f"{s.source_format.upper()} file", title=f"study {att.ref}",
                       quote="; ".join(parts), facts=facts, date=meta.get("study_date"))]


def _plain(obj: Any) -> Any:
    """A model card as JSON values, floats rounded to 4 places (the card's own numbers are measured)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 4)
    return obj


def finding_facts(finding: Finding, study_ref: str, saliency_requested: bool) -> dict[str, Any]:
    """The structured result the ledger keeps (the verifier and the summary read these keys)."""
    return {"study": study_ref, "model": finding.model, "version": finding.model_version, "label": finding.label,
            "probabilities": dict(finding.probabilities), "probability": finding.probability,
            "positive_label": finding.positive_label, "threshold": finding.threshold,
            "abstained": finding.abstain, "abstain_reason": finding.abstain_reason, "caution": finding.caution,
            "ood_flag": finding.ood_flag, "saliency": saliency_requested, "model_card": _plain(finding.model_card)}


def _classify(args: ClassifyArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    att = ctx.loaded_study(args.study)
    assert att.study is not None
    # the viewer shows where the model looked, so a 2-D study always gets its saliency map
    finding = ctx.services.classifiers.classify(att.study, args.model, not att.study.is_volume)
    quote = finding.text()
    intended = finding.model_card.get("intended_use")
    if isinstance(intended, str):
        quote += f". Intended use: {intended[:200]}"
    item = ledger.add("classifier", "classify_study", finding.model, title=f"{finding.model} on study {att.ref}",
                      quote=quote, facts=finding_facts(finding, att.ref, args.saliency))
    if finding.saliency is not None:
        ctx.saliency.append(SaliencyMap(item.id, att.ref, finding.model,
                                        f"{finding.label or 'finding'} ({finding.model})", finding.saliency))
    return [item]


INSPECT_STUDY = ToolSpec(
    "inspect_study", "Technical facts of an attached image (modality, view, body part, size, date).",
    StudyArgs, _inspect, audit_action="inspect", returns="dicom")
# the description and the ``model`` enum are filled in from the installed bundles by agent.toolbox.toolset
CLASSIFY_STUDY = ToolSpec("classify_study", classify_description([]), ClassifyArgs, _classify,
                          audit_action="classify", returns="classifier")
