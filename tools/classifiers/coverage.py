"""What a classifier bundle covers, read from its metadata: the findings it answers, what it reads, in words.

Every bundle (bundled or a user's own, from ``RADCONSULT_MODEL_DIRS``) says it in
``configs/metadata.json``::

    "coverage": {
      "findings": ["pneumonia"],                      # canonical finding names the agent's vocabulary knows,
      "findings": [{"name": "diabetic retinopathy",   # or a new finding with the words clinicians use for it
                    "terms": ["diabetic retinopathy", "retinopath*", "DR"]}],
      "modality": "chest radiograph",                 # what it reads, in words
      "body_part": "chest",
      "summary": "pneumonia versus normal on a frontal chest radiograph (trained on young children)",
      "tool_hint": "paediatric chest X-ray, pneumonia"  # short, beside its name in the tool's model enum
    }

The finding's name is a term too. A term is a plain phrase (no regular expression): it matches as whole words, case-insensitively, with any
run of spaces or hyphens between its words; a trailing ``*`` lets its last word run on ("retinopath*"
matches "retinopathy"). The DICOM modality codes and body parts come from ``intended_use_rules``.

A bundle without a ``coverage`` block covers what its labels name: its positive label (two labels) or
each label (more), the label's own words being the terms, and its ``description`` is the summary. A
malformed block is a :class:`~tools.errors.BundleError` naming the field, so a user's bundle fails loudly
when asked for by name (the registry skips it in listings, with a warning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tools.errors import BundleError

MAX_TERMS = 40
MAX_TERM_CHARS = 80
MAX_TEXT_CHARS = 400
_TERM = re.compile(r"^[\w][\w '\-/.]*\*?$", re.UNICODE)


@dataclass(frozen=True)
class CoveredFinding:
    """A finding a bundle answers: its canonical ``name`` and the words (``terms``) it adds, if any."""

    name: str
    terms: tuple[str, ...] = ()

    def pattern(self) -> re.Pattern[str]:
        """The name and the terms as one case-insensitive whole-word pattern."""
        return re.compile("|".join(term_regex(t) for t in (self.name, *self.terms)), re.I)


@dataclass(frozen=True)
class Coverage:
    """What one bundle covers, as the agent plans for it and states it to the clinician."""

    model: str
    findings: tuple[CoveredFinding, ...]
    summary: str                         # one clause: what it can and cannot be asked
    tool_hint: str                       # a few words beside its name in the classifier enum
    modality: str = ""                   # what it reads, in words ("chest radiograph")
    body_part: str = ""
    modalities: tuple[str, ...] = ()     # DICOM codes (intended_use_rules)
    body_parts: tuple[str, ...] = ()

    @property
    def finding_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.findings)

    def covers(self, finding: str) -> bool:
        return finding.strip().lower() in (n.lower() for n in self.finding_names)

    def reads(self, modality: str | None = None, body_part: str | None = None) -> bool:
        """Whether it is meant for images of this DICOM ``modality`` code ("US") and ``body_part`` ("BREAST";
        matched as in intended_use: a listed part contained in the given one); None matches anything, and
        so does a bundle that lists no modality or body part."""
        if modality and self.modalities and modality.strip().upper() not in self.modalities:
            return False
        part = (body_part or "").strip().upper()
        return not (part and self.body_parts and not any(p in part for p in self.body_parts))


def term_regex(term: str) -> str:
    """A plain phrase as a whole-word regular expression (``*`` at the end: the last word may run on)."""
    stem = term.rstrip("*")
    words = [re.escape(w) for w in re.split(r"[\s\-]+", stem.strip()) if w]
    tail = r"\w*" if term.endswith("*") else r"\b"
    return r"\b" + r"[\s\-]+".join(words) + tail


def _text(value: Any, field: str, where: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise BundleError(f"{where}: coverage.{field} must be a string of at most {MAX_TEXT_CHARS} characters")
    return " ".join(value.split()) or default


def _terms(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TERMS:
        raise BundleError(f"{where}: coverage finding {name!r}: 'terms' must be a list of at most {MAX_TERMS} "
                          "phrases")
    out = []
    for term in value:
        if not isinstance(term, str) or not 0 < len(term.strip()) <= MAX_TERM_CHARS or not _TERM.match(term.strip()):
            raise BundleError(f"{where}: coverage finding {name!r}: term {term!r} is not a plain phrase of at most "
                              f"{MAX_TERM_CHARS} characters (letters, digits, spaces, hyphens; an optional '*' at "
                              "the end)")
        out.append(" ".join(term.split()))
    return tuple(out)


def _finding(item: Any, where: str) -> CoveredFinding:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise BundleError(f"{where}: each coverage finding must be a name or an object with 'name' and 'terms'; "
                          f"got {type(item).__name__}")
    unknown = set(item) - {"name", "terms"}
    if unknown:
        raise BundleError(f"{where}: coverage finding has unknown keys {sorted(unknown)} (use 'name', 'terms')")
    name = item.get("name")
    if (not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_TERM_CHARS or name.strip().endswith("*")
            or not _TERM.match(name.strip())):
        raise BundleError(f"{where}: a coverage finding needs a 'name' of 1-{MAX_TERM_CHARS} characters (letters, "
                          f"digits, spaces, hyphens); got {name!r}")
    return CoveredFinding(" ".join(name.split()), _terms(item.get("terms"), where, name))


def _label_words(label: str) -> str:
    return " ".join(label.replace("_", " ").split())


def from_metadata(metadata: dict[str, Any], name: str) -> Coverage:
    """The bundle's coverage (see the module docstring); BundleError when the block is malformed."""
    rules = metadata.get("intended_use_rules") or {}
    modalities = tuple(str(m).upper() for m in rules.get("modalities") or ())
    body_parts = tuple(str(p).upper() for p in rules.get("body_parts") or ())
    block = metadata.get("coverage")
    labels = [str(x) for x in metadata.get("labels") or ()]
    description = str(metadata.get("description") or "")
    if block is None:  # a bundle that does not say: what its labels name
        positive = str(metadata.get("positive_label") or (labels[-1] if labels else ""))
        named = [positive] if len(labels) <= 2 else labels
        findings = tuple(CoveredFinding(_label_words(lab), (_label_words(lab),)) for lab in named if lab)
        summary = description or f"its labels: {', '.join(_label_words(lab) for lab in labels)}"
        return Coverage(name, findings, " ".join(summary.split())[:MAX_TEXT_CHARS],
                        ", ".join(f.name for f in findings), modalities=modalities, body_parts=body_parts)
    where = f"{name}: metadata"
    if not isinstance(block, dict):
        raise BundleError(f"{where}: 'coverage' must be an object (findings, modality, body_part, summary, tool_hint)")
    unknown = set(block) - {"findings", "modality", "body_part", "summary", "tool_hint"}
    if unknown:
        raise BundleError(f"{where}: 'coverage' has unknown keys {sorted(unknown)}")
    items = block.get("findings")
    if not isinstance(items, list) or not items:
        raise BundleError(f"{where}: coverage.findings must list at least one finding the model answers")
    findings = tuple(_finding(item, where) for item in items)
    names = [f.name.lower() for f in findings]
    if len(set(names)) != len(names):
        raise BundleError(f"{where}: coverage.findings names a finding twice")
    summary = _text(block.get("summary"), "summary", where, description)
    if not summary:
        raise BundleError(f"{where}: coverage.summary (or the bundle's description) must say what the model covers")
    return Coverage(name, findings, summary,
                    _text(block.get("tool_hint"), "tool_hint", where, ", ".join(f.name for f in findings)),
                    _text(block.get("modality"), "modality", where), _text(block.get("body_part"), "body_part", where),
                    modalities, body_parts)
