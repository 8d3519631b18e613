"""Which image finding a question asks about, and which installed classifier (if any) answers it.

A finding is a canonical name with the words clinicians use for it (:data:`FINDINGS`, the vocabulary).
What a classifier covers is read from its bundle's metadata (``tools.classifiers.coverage``): the
findings it answers by name, the words for a finding the vocabulary does not know, and one clause
saying what it reads. The installed bundles' :class:`Coverage` is passed in, so a user's own bundle is
planned for exactly like a bundled one. A question about a finding no installed model covers (heart
size, pneumothorax, a fracture ...) gets no finding stated: the answer says what the models do cover.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tools.classifiers.coverage import Coverage

FINDINGS: dict[str, re.Pattern[str]] = {
    "pneumonia": re.compile(r"\bpneumon\w*|\bconsolidat\w*|\bairspace\s+(?:disease|opacit\w*)|\bchest\s+infection\b|"
                            r"\blobar\s+infiltrat\w*|\binfiltrat\w*", re.I),
    "tumour type": re.compile(r"\bwhat\s+(?:kind|type|sort)\s+of\s+(?:brain\s+)?tumou?r|\btumou?r\s+type\b|"
                              r"\bwhich\s+(?:kind\s+of\s+|type\s+of\s+)?tumou?r|\bglioma\b|\bmeningioma\b|"
                              r"\bpituitary\s+(?:tumou?r|adenoma)|\bclassify\s+(?:the|this)\s+tumou?r", re.I),
    "tumour presence": re.compile(r"\b(?:is|are)\s+there\s+(?:a|any)\s+(?:brain\s+)?tumou?r|\bany\s+(?:brain\s+)?"
                                  r"tumou?rs?\b|\btumou?r\s+(?:present|visible|seen)|\bdoes\s+(?:s?he|the\s+patient)\s+"
                                  r"have\s+a\s+(?:brain\s+)?tumou?r|\bmass\s+in\s+the\s+brain", re.I),
    "breast malignancy": re.compile(r"\bmalignan\w*|\bbenign\b|\bbreast\s+cancer\b|\bcancerous\b|\bsuspicious\s+for\s+"
                                    r"(?:malignan\w*|cancer)", re.I),
    "cardiomegaly": re.compile(r"\bcardiomegal\w*|\bheart\s+(?:size|enlarg\w*|is\s+(?:enlarged|big|large))|\benlarged\s+"
                               r"(?:heart|cardiac)|\bcardiothoracic\s+ratio\b|\bbig\s+heart\b|\bheart\b[^.?!]{0,20}"
                               r"\benlarged\b", re.I),
    "pneumothorax": re.compile(r"\bpneumothora\w*|\bcollapsed\s+lung\b|\bPTX\b", re.I),
    "pleural effusion": re.compile(r"\beffusion\b|\bpleural\s+fluid\b|\bfluid\s+(?:in|around)\s+the\s+lung", re.I),
    "fracture": re.compile(r"\bfractur\w*|\bbroken\s+(?:rib|bone|clavicle)", re.I),
    "lung nodule or mass": re.compile(r"\bnodul\w*|\blung\s+(?:mass|cancer|tumou?r)\b|\bmass\b", re.I),
    "pulmonary oedema": re.compile(r"\boedema\b|\bedema\b|\bpulmonary\s+congestion\b|\bkerley\b", re.I),
    "atelectasis": re.compile(r"\batelecta\w*|\blobar\s+collapse\b", re.I),
    "tuberculosis": re.compile(r"\btubercul\w*|\bTB\b", re.I),
    "line or tube position": re.compile(r"\b(?:line|tube|catheter|ETT|NG\s+tube|PICC)\b[^.?!]{0,30}\b(?:position|"
                                        r"placement|tip)\b", re.I),
    "stroke or haemorrhage": re.compile(r"\bstroke\b|\binfarct\w*|\bhaemorrhag\w*|\bhemorrhag\w*|\bbleed\w*", re.I),
}
TECHNIQUE = re.compile(r"\bmodality\b|\bview\b|\btechnique\b|\bdimensions?\b|\bresolution\b|\bmatrix\b|"
                       r"\bpixel\s+spacing\b|\bslice\s+thickness\b|\bheader\b|\bDICOM\s+(?:tags?|header|data)\b|"
                       r"\bmanufacturer\b|\bscanner\b|\b(?:study|acquisition)\s+date\b|\bwhen\s+was\s+(?:it|this|the\s+"
                       r"study)\s+(?:taken|acquired|done)|\bhow\s+(?:big|large)\s+is\s+(?:the|this)\s+(?:image|file)\b|"
                       r"\b(?:what|which)\s+(?:kind|type)\s+of\s+(?:study|image|scan|file)\b|\bdescribe\s+(?:the\s+)?"
                       r"(?:technique|acquisition)", re.I)


# the modality (DICOM codes) and body part a question states: an exported PNG or JPEG records neither, so for a
# question that names no finding ("what does the model say about this breast ultrasound?") the words choose the
# model that reads such images
_STATED_MODALITY: tuple[tuple[tuple[str, ...], str, re.Pattern[str]], ...] = (
    (("MR",), "MR", re.compile(r"\bMRI?\b|\bmagnetic\s+resonance\b|\bT[12](?:-?weighted|W)?\b|\bFLAIR\b", re.I)),
    (("US",), "ultrasound", re.compile(r"\bultrasound\b|\bsonogra\w*|\bUS\b")),
    (("CT",), "CT", re.compile(r"\bCT\b|\bcomputed\s+tomograph\w*", re.I)),
    (("MG",), "mammogram", re.compile(r"\bmammo\w*", re.I)),
    (("CR", "DX"), "radiograph", re.compile(r"\bx-?rays?\b|\bradiograph\w*|\bCXR\b|\bfilm\b", re.I)),
)
_STATED_PART: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("BREAST", "breast", re.compile(r"\bbreasts?\b|\bmammo\w*", re.I)),
    ("BRAIN", "brain", re.compile(r"\bbrain\b|\bhead\b|\bcerebr\w*|\bintracranial\b|\bpituitar\w*|\bglioma\b|"
                                 r"\bmeningioma\b", re.I)),
    ("CHEST", "chest", re.compile(r"\bchest\b|\blungs?\b|\bthora\w*|\bCXR\b", re.I)),
)


@dataclass(frozen=True)
class StatedStudy:
    """What the question says the image is: DICOM ``modalities`` (an X-ray is CR or DX), a ``body_part`` code,
    and the same in words."""

    modalities: tuple[str, ...]
    body_part: str
    words: str


def stated_study(question: str) -> StatedStudy | None:
    """The modality and body part ``question`` states, or None unless it states both."""
    modality = next(((codes, words) for codes, words, p in _STATED_MODALITY if p.search(question or "")), None)
    part = next(((code, words) for code, words, p in _STATED_PART if p.search(question or "")), None)
    if modality is None or part is None:
        return None
    return StatedStudy(modality[0], part[0], f"{part[1]} {modality[1]}")


def models_reading(stated: StatedStudy | None, installed: Sequence[Coverage]) -> list[str]:
    """Names of the installed classifiers meant for the stated modality and body part (bundles that declare
    what they read; one that declares nothing is never chosen from words alone)."""
    if stated is None:
        return []
    return [c.model for c in installed if c.modalities and c.body_parts
            and any(c.reads(m, stated.body_part) for m in stated.modalities)]


@dataclass(frozen=True)
class FindingQuery:
    """The findings a question names; ``generic`` when it names none ("what do you see?", "is it normal?")."""

    findings: tuple[str, ...]
    generic: bool


def finding_patterns(installed: Sequence[Coverage] = ()) -> dict[str, re.Pattern[str]]:
    """The vocabulary's findings, with the words the installed bundles add (a new finding, or more words
    for a known one)."""
    patterns = dict(FINDINGS)
    known = {name.lower(): name for name in patterns}
    for coverage in installed:
        for finding in coverage.findings:
            extra = finding.pattern()
            name = known.setdefault(finding.name.lower(), finding.name)
            patterns[name] = (re.compile(f"(?:{patterns[name].pattern})|(?:{extra.pattern})", re.I)
                              if name in patterns else extra)
    return patterns


def asked_findings(question: str, model_hint: str | None = None,
                   installed: Sequence[Coverage] = ()) -> FindingQuery:
    """The canonical findings ``question`` (or the model's reading of it, ``model_hint``) asks about;
    ``installed`` adds the findings (and words) of the installed bundles to the vocabulary."""
    patterns = finding_patterns(installed)
    found = [name for name, pattern in patterns.items() if pattern.search(question)]
    if "tumour type" in found and "tumour presence" in found:
        found.remove("tumour presence")
    if not found and model_hint:
        found = [name for name, pattern in patterns.items() if pattern.search(model_hint)]
    return FindingQuery(tuple(found), not found)


def covering_models(finding: str, installed: Sequence[Coverage]) -> list[str]:
    """Names of the installed classifiers whose bundles say they answer ``finding``."""
    return [c.model for c in installed if c.covers(finding)]


def what_models_cover(installed: Sequence[Coverage]) -> str:
    """One clause per installed model, from its bundle: what it can and cannot be asked."""
    parts = [f"{c.summary} ({c.model})" for c in installed]
    return "; ".join(parts) if parts else "no image classifier is installed"
