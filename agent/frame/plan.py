"""What to do with a checked frame: the tool calls the agent makes itself, a clarifying question, or a
statement that needs no tool (a finding no model covers, a question outside decision support).

* A frame whose guideline a calculator covers runs that calculator, whatever the model would have
  chosen; its answer is rendered from the result (agent/frame/compose.py).
* A missing parameter the guideline needs gets one short question (for Fleischner risk, both labelled
  branches are shown with it); nothing is guessed.
* An image question runs the classifier that covers the asked finding; when none does, the answer says
  so and names what the models cover.
* Prior-report and general questions retrieve first; the model then answers from that evidence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.frame.findings import (
    TECHNIQUE,
    asked_findings,
    covering_models,
    models_reading,
    stated_study,
    what_models_cover,
)
from agent.frame.model import SYSTEM_NAMES, CaseFrame

if TYPE_CHECKING:
    from tools.classifiers.coverage import Coverage

OUT_OF_SCOPE = ("That is outside what I can help with: I am a decision-support assistant for reading medical images. "
                "I can help interpret an attached study, look up imaging guidelines (Fleischner, Lung-RADS, BI-RADS, "
                "USPSTF screening) or this patient's prior reports.")
RADIOGRAPH_ONLY = ("The bundled nodule guidelines apply to nodules characterised on CT: a nodule seen only on a "
                   "chest radiograph needs CT first, after which the Fleischner table can be applied.")
_BRCA = re.compile(r"\bBRCA\w*|\bhigh[- ]risk\b|\bchest\s+(?:wall\s+)?radiation\b|\bprior\s+breast\s+cancer\b|"
                   r"\bhistory\s+of\s+breast\s+cancer\b|\bgenetic\s+(?:mutation|predisposition)\b", re.I)
_DENSE = re.compile(r"\bdense\s+breasts?\b|\b(?:heterogeneously|extremely)\s+dense\b|\bdensity\s+[cd]\b", re.I)
_BREAST_MODALITY = (("ultrasound", re.compile(r"\bultrasound\b|\bsonograph\w*|\bUS\b")),
                    ("mri", re.compile(r"\bMRI?\b|\bmagnetic\b", re.I)),
                    ("mammography", re.compile(r"\bmammo\w*|\btomosynthesis\b", re.I)))
_QUESTIONS = {
    "nodule type": ("Is the subsolid nodule pure ground-glass, or part-solid (and if part-solid, how large is its "
                    "solid component, in mm)?"),
    "size": "What is the nodule's size (average of its long and short axes, in mm)?",
    "solid component size": "What is the size of the solid component (mm)?",
    "risk": ("Is the patient at low or high risk of lung cancer (smoking history, age, exposures, family history, "
             "emphysema or fibrosis, spiculated or upper-lobe nodule)?"),
    "setting": "Was the nodule found on a lung cancer screening CT (Lung-RADS) or incidentally (Fleischner)?",
    "age": "How old is the patient?",
    "smoking history": "What is the smoking history (never, current or former smoker)?",
    "pack-years": "How many pack-years has the patient smoked?",
    "years since quitting": "How many years ago did the patient quit smoking?",
    "BI-RADS category": "Which BI-RADS category was assigned?",
    "prior category": "What was the Lung-RADS category at the previous screen?",
    "status": "Compared with the previous screen, is the nodule new, growing or stable (and its size then)?",
}


INTRODUCTION = ("I am RadConsult, a decision-support assistant for clinicians who read medical images: I can help "
                "interpret an attached study with the installed classifiers, look up imaging guidelines (Fleischner, "
                "Lung-RADS, BI-RADS, USPSTF screening) and search this patient's prior reports, with a citation for "
                "every statement.")


def smalltalk_reply(question: str) -> str:
    """A greeting, thanks or a question about the assistant, answered without the model."""
    if re.search(r"\bthank|\bthx\b|\bty\b|\bcheers\b|\bgreat\b|\bok(?:ay)?\b|\bbye\b", question, re.I):
        return "You're welcome. Ask again whenever you need a guideline, a study read or a prior report."
    if re.search(r"^\W*(hi|hello|hey|good\s+(?:morning|afternoon|evening))\b", question, re.I):
        return "Hello. " + INTRODUCTION
    return INTRODUCTION


@dataclass
class Plan:
    """``calls``: (tool, arguments) the agent runs itself; ``clarify``: the question to ask; ``statement``: a
    sentence that needs no evidence; ``answer_by``: "render" (from the results), "model" (prose from the
    evidence) or "loop" (the model chooses tools, as without a frame)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    clarify: str | None = None
    statement: str | None = None
    answer_by: str = "loop"


def clarifying_question(missing: list[str]) -> str | None:
    """One short question for the first missing parameter (two when the first needs its companion)."""
    asks = [_QUESTIONS[m] for m in missing if m in _QUESTIONS]
    return " ".join(asks[:2]) if asks else None


def _fleischner_args(frame: CaseFrame) -> dict[str, Any]:
    args: dict[str, Any] = {"size_mm": frame.size_mm, "nodule_type": frame.nodule_type,
                            "multiple": frame.count == "multiple", "known_primary_cancer": frame.known_cancer,
                            "immunocompromised": frame.immunocompromised}
    if frame.nodule_type == "part_solid":
        args["solid_component_mm"] = frame.solid_mm
    if frame.risk:
        args["risk"] = frame.risk
    if frame.age is not None:
        args["patient_age_years"] = frame.age
    if frame.typical_perifissural and frame.nodule_type == "solid":
        args["typical_perifissural"] = True
    if frame.status in ("new", "growing", "slowly_growing", "stable", "resolved"):
        args["status"] = frame.status
        if frame.status == "stable" and frame.stable_months is not None:
            args["stable_months"] = frame.stable_months
    return args


def _lung_rads_call(frame: CaseFrame) -> tuple[str, dict[str, Any]]:
    if frame.no_nodule:
        return "lung_rads_meaning", {"category": "1"}
    args: dict[str, Any] = {"nodule_type": frame.nodule_type, "size_mm": frame.size_mm,
                            "status": frame.status or "baseline", "benign_features": frame.calcified}
    if frame.nodule_type == "part_solid":
        args["solid_component_mm"] = frame.solid_mm
    if frame.typical_perifissural:
        args["nodule_type"] = "juxtapleural"
    if frame.status == "stable" and frame.category in ("2", "3", "4A", "4B"):  # the categories a step starts from
        args["prior_category"] = frame.category
    return "lung_rads_category", args


# worded like the recommendations themselves, so the quoted sentence is the recommendation
_CRITERIA_QUERY = {"uspstf_lung": "USPSTF recommends annual screening for lung cancer with low-dose CT in adults aged "
                                  "50 to 80 years with a smoking history of at least 20 pack-years who currently smoke "
                                  "or quit within the past 15 years",
                   "uspstf_breast": "USPSTF biennial (every other year) screening mammography for women aged 40 to 74 "
                                    "years (grade B)"}


def _screening_call(frame: CaseFrame, question: str) -> tuple[str, dict[str, Any]]:
    if frame.criteria:  # "who is eligible per USPSTF?": the criteria, quoted from the guideline
        return "search_guidelines", {"query": _CRITERIA_QUERY[frame.system]}
    if frame.system == "uspstf_breast":
        return "uspstf_breast_screening", {"age_years": frame.age, "high_risk": bool(_BRCA.search(question)),
                                           "dense_breasts": bool(_DENSE.search(question))}
    known = {"age_years": frame.age, "smoking_status": frame.smoking,
             "pack_years": 0.0 if frame.smoking == "never" else frame.pack_years}
    args: dict[str, Any] = {k: v for k, v in known.items() if v is not None}  # one criterion may decide alone
    if frame.smoking == "former" and frame.quit_years is not None:
        args["years_since_quit"] = frame.quit_years
    return "uspstf_lung_screening", args


def _guideline_plan(frame: CaseFrame, question: str) -> Plan:
    if frame.system == "lung_rads" and frame.status == "stable" and frame.category not in ("2", "3", "4A", "4B") \
            and not frame.no_nodule and frame.size_mm is not None:
        frame.missing.append("prior category")
    blocking = [m for m in frame.missing if m != "risk"]  # without risk, both columns are shown and asked
    if blocking:
        return Plan(clarify=clarifying_question(frame.missing), answer_by="render")
    plan = Plan(answer_by="render", clarify=clarifying_question(frame.missing))
    if frame.system == "fleischner":
        plan.calls.append(("fleischner_followup", _fleischner_args(frame)))
    elif frame.system == "lung_rads":
        plan.calls.append(("lung_rads_meaning", {"category": frame.category}) if frame.intent == "category"
                          and frame.size_mm is None and frame.category else _lung_rads_call(frame))
    elif frame.system == "birads":
        args: dict[str, Any] = {"category": frame.category}
        modality = next((name for name, pattern in _BREAST_MODALITY if pattern.search(question)), None)
        if modality and not (modality == "mri" and (frame.category or "").endswith(("A", "B", "C"))):
            args["modality"] = modality
        plan.calls.append(("birads_category", args))
    else:
        plan.calls.append(_screening_call(frame, question))
    return plan


def _image_plan(frame: CaseFrame, question: str, installed: Sequence[Coverage]) -> Plan:
    query = asked_findings(question, frame.finding, installed)
    if TECHNIQUE.search(question) and not query.findings:  # about the acquisition, not a finding: the header
        return Plan(calls=[("inspect_study", {"study": "latest"})], answer_by="render")
    covered = [f for f in query.findings if covering_models(f, installed)]
    uncovered = [f for f in query.findings if not covering_models(f, installed)]
    plan = Plan(answer_by="render")
    if uncovered:
        plan.statement = (f"No installed model assesses {' or '.join(uncovered)}, so I cannot state whether it is "
                          f"present; a clinician must read the image for that. The installed models cover: "
                          f"{what_models_cover(installed)}.")
    stated = stated_study(question) if query.generic else None
    by_words = models_reading(stated, installed)
    if covered:
        models = {m for f in covered for m in covering_models(f, installed)}
        for model in sorted(models):
            plan.calls.append(("classify_study", {"study": "latest", "model": model, "saliency": True}))
    elif by_words and stated is not None:
        # no finding named, but the question says what the image is: run the model that reads such images
        for model in by_words:
            plan.calls.append(("classify_study", {"study": "latest", "model": model, "saliency": True}))
        # said without clinical words: an uncited clinical sentence beside the results would be withheld
        plan.statement = ("I went by your description to choose what to run: an exported PNG or JPEG file does not "
                          "say what it shows, so the file itself could not confirm your description.")
    elif query.generic:
        plan.calls.append(("classify_study", {"study": "latest", "saliency": True}))
        plan.statement = ("The installed models do not describe an image in general; they cover: "
                          f"{what_models_cover(installed)}.")
    return plan


def plan_for(frame: CaseFrame, question: str, installed_models: Sequence[Coverage], has_patient: bool) -> Plan:
    """The plan for ``frame`` (see the module docstring); ``installed_models`` is what each installed
    classifier covers, from its bundle (``Bundle.coverage``)."""
    if frame.intent == "out_of_scope":
        return Plan(statement=OUT_OF_SCOPE, answer_by="render")
    if frame.intent == "smalltalk":
        return Plan(statement=smalltalk_reply(question), answer_by="render")
    if frame.intent == "image":
        return _image_plan(frame, question, installed_models)
    if frame.intent == "prior":
        if not has_patient:
            return Plan(statement="No patient is attached to this case, so there are no prior reports to compare "
                                  "with.", answer_by="render")
        return Plan(calls=[("search_prior_reports", {"query": question[:400]})], answer_by="model")
    if frame.intent in ("followup", "category", "screening"):
        if frame.system == "none":
            organ = f" a {frame.organ} finding" if frame.organ else " this finding"
            return Plan(statement=(f"The bundled guidelines ({', '.join(SYSTEM_NAMES.values())}) do not cover{organ}, "
                                   "so I give no recommendation from them; use the guideline for that organ."),
                        answer_by="render")
        if frame.system == "lung_rads" and re.search(r"\bfleischner\b", question, re.I) and frame.size_mm:
            plan = _guideline_plan(frame, question)  # Lung-RADS, and Fleischner's own word that it does not apply
            plan.calls.insert(0, ("fleischner_followup", {**_fleischner_args(frame), "lung_cancer_screening": True}))
            return plan
        if frame.system == "fleischner" and frame.radiograph_only:
            return Plan(statement=RADIOGRAPH_ONLY, answer_by="render",
                        calls=[("search_guidelines", {"query": "Fleischner scope: nodules seen on a chest radiograph "
                                                               "without CT characterisation"})])
        return _guideline_plan(frame, question)
    if frame.source == "text":  # the model's reading failed and the words say little: its own tool loop
        return Plan(answer_by="loop")
    return Plan(calls=[("search_guidelines", {"query": question[:400]})], answer_by="model")
