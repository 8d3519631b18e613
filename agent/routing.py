"""Deterministic hints and gates in front of the model, from the question's words alone.

Small local models answer guideline questions from memory far more often than they call the tool
that computes the answer (measured: their own tool choice was right on half of the eval). A question
that names a guideline system ("Lung-RADS", "BI-RADS 4", "Fleischner", "screening eligibility") or the
patient's earlier reports gets one hint line in its user message naming the tool to call. The hint is
advice: the model still chooses, and the tool schemas and the system prompt (the cached prompt
prefix) stay unchanged, so it costs a few prompt tokens.

Requests to act (book, prescribe, order ...) are outside decision support: they get a fixed answer
without the model, so no model can improvise a drug dose or pretend to book an appointment.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args, get_origin

from tools.vocabulary.clinical import ELIGIBILITY, PRIOR_STUDY

# (pattern, tool) in priority order; the first two matches become the hint
_TOPICS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\blung[- ]?rads\b", re.I), "lung_rads_category"),
    (re.compile(r"\bbi[- ]?rads\b", re.I), "birads_category"),
    (re.compile(r"\bfleischner\b|\bincidental (pulmonary |lung )?nodule|\bnodule\b.*\bfollow[- ]?up\b|"
                r"\bfollow[- ]?up\b.*\bnodule\b", re.I), "fleischner_followup"),
    (re.compile(r"\b(breast|mammogra\w*)\b.*\bscreen\w*|\bscreen\w*\b.*\b(breast|mammogra\w*)\b", re.I),
     "uspstf_breast_screening"),
    (re.compile(r"\blung cancer screen\w*|\bscreen\w* for lung cancer|\bldct\b|\bpack[- ]?years?\b", re.I),
     "uspstf_lung_screening"),
]
# the vocabulary's own patterns (one definition): a prior-report question, a screening-eligibility question
# (answered by the screening tool, not by the nodule tables)
_PRIOR = PRIOR_STUDY
_ELIGIBILITY = ELIGIBILITY

# a verb at the start that asks for an act; "order", "call" and "refer" only with an object ("order a CT",
# "refer her"), so "Order of the views?" or "Refer to Fleischner: ..." are questions, not acts
ACTION = re.compile(r"^\W*(please\s+|can you\s+|could you\s+|would you\s+)?(book|schedule|reschedule|cancel|"
                    r"prescribe|e-?mail|send|phone|pay|buy|admit|discharge|"
                    r"(order|call|refer)\s+(a|an|the|this|that|her|him|them|me|my|our|his|some|another|\d+)\b)\b",
                    re.I)
# creative requests: the model answers them (in one sentence), but never with retrieval
CREATIVE = re.compile(r"^\W*(please\s+|can you\s+|could you\s+)?write (me )?(a|an) (poem|song|story|joke|limerick)\b",
                      re.I)

ACTION_ANSWER = ("I can't do that: I am a decision-support assistant for reading medical images, so I do not "
                 "book, order, prescribe, refer or send anything. I can help interpret an attached study, look "
                 "up imaging guidelines (Fleischner, Lung-RADS, BI-RADS, USPSTF screening) or this patient's "
                 "prior reports.")


def is_action_request(question: str) -> bool:
    return bool(ACTION.search(question or ""))


def needs_no_retrieval(question: str) -> bool:
    """Requests to act or to write something creative: nothing in the knowledge base answers them."""
    return is_action_request(question) or bool(CREATIVE.search(question or ""))


def suggested_tools(question: str, tools: set[str] | dict, has_patient: bool = False) -> list[str]:
    """Up to two tools the question's words point to, among ``tools``."""
    out: list[str] = []
    if _ELIGIBILITY.search(question):
        order = sorted(_TOPICS, key=lambda t: not t[1].startswith("uspstf"))
    else:
        order = _TOPICS
    for pattern, tool in order:
        if tool in tools and tool not in out and pattern.search(question):
            out.append(tool)
    if "lung_rads_category" in out and "fleischner_followup" in out:
        out.remove("fleischner_followup")  # a screening nodule: Lung-RADS, not the incidental-nodule tables
    if has_patient and "search_prior_reports" in tools and _PRIOR.search(question):
        out.insert(0, "search_prior_reports")
    return out[:2]


def hint(question: str, tools: set[str] | dict, has_patient: bool = False) -> str:
    """The hint line for the user message, or ""."""
    names = suggested_tools(question, tools, has_patient)
    if not names:
        return ""
    return "Tool to call for this question: " + " and ".join(names) + "."


def _literal_values(annotation: Any) -> list[str]:
    """The string values of a ``Literal[...]`` (also inside ``Optional``), else []."""
    if get_origin(annotation) is Literal:
        return [v for v in get_args(annotation) if isinstance(v, str)]
    return [v for arg in get_args(annotation) for v in _literal_values(arg)]


def _mentions(question: str, value: str) -> list[tuple[int, int]]:
    """Where an enum value appears in the question as words ("part_solid" matches "part-solid")."""
    words = [re.escape(w) for w in re.split(r"[_\s-]+", value) if w]
    if not words or len("".join(words)) < 3:  # "2", "3", "4A": too short to read from prose safely
        return []
    pattern = re.compile(r"(?<![\w-])" + r"[\s_-]?".join(words) + r"(?![\w-])", re.I)
    return [m.span() for m in pattern.finditer(question)]


def align_enums(arguments: dict[str, Any], args_model: type, question: str) -> tuple[dict[str, Any], list[str]]:
    """Set enum arguments to the one value the question states when the model chose another.

    Small models fill enum fields with the first or default value ("status": "baseline" for "a new
    nodule"). A field with three or more values is changed only when exactly one of them occurs in the
    question as whole
    words (a value inside a longer one, "solid" inside "part-solid", does not count) and the model's
    value does not occur there. Returns the arguments and a description of each change, for the trace.
    """
    fields = getattr(args_model, "model_fields", {})
    out, changes = dict(arguments), []
    for name, info in fields.items():
        values = _literal_values(info.annotation)
        if len(values) < 3:  # two-valued fields ("low"/"high") read too easily from unrelated words
            continue
        spans = {v: _mentions(question, v) for v in values}
        # drop mentions that sit inside a longer value's mention
        stated = [v for v, sp in spans.items()
                  if any(not any(o != v and a2 <= a and b <= b2 and (b2 - a2) > (b - a)
                                 for o, osp in spans.items() for a2, b2 in osp) for a, b in sp)]
        chosen = out.get(name, info.default)
        if len(stated) == 1 and chosen != stated[0] and chosen not in stated:
            out[name] = stated[0]
            changes.append(f"{name}: {chosen} -> {stated[0]} (as the question states)")
    return out, changes
