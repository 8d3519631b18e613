"""Grounding fallback: when the model answers a clinical question from memory, retrieve first.

Small local models often answer guideline and prior-report questions without calling a tool. When, in
a turn where no tool has run yet (or only the image tools have), the plain answer contains clinical claims that the verifier finds
uncited (or citing evidence that does not exist), the graph discards that answer and schedules
retrieval itself: ``search_guidelines`` with the user's question, plus ``search_prior_reports`` when the
case has a patient, and ``classify_study`` first when the latest attached study has no classifier
result yet (classifier abstentions and errors are recorded like any tool result). A question about an
attached study that no classifier has looked at ("what do you see?") triggers the same calls even when
the answer cites something, because an answer from the DICOM header alone has not looked at the image. The calls run through the normal tools node (marked ``"auto": true`` in the turn's
tool calls and in the evidence they add), then the model answers again with that evidence.

At most once per turn: the fallback only fires while the turn's calls are image tools at most, and
the auto calls end that. Greetings, offers of help, refusals and out-of-scope answers carry no clinical claim
(see :func:`agent.verify.is_claim`); a question with no clinical topic, or a request to act (book,
schedule, prescribe, order ...), never triggers it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from agent.evidence import Ledger
from agent.routing import needs_no_retrieval
from agent.verify import names_clinical_concept, verify
from tools.errors import ToolArgumentError

log = logging.getLogger(__name__)

QUERY_CHARS = 400  # SearchArgs.query limit
IMAGE_TOOLS = frozenset({"inspect_study", "classify_study"})
# a question about what the attached image shows (used only when a study is attached and unclassified)
_ABOUT_IMAGE = re.compile(r"\b(see|seen|show|shows|showing|look|looks|finding|findings|abnormal\w*|normal|image|"
                          r"x-?ray|radiograph|film|scan|study|ultrasound|sonograph\w*|mammogra\w*|pneumo\w*|"
                          r"opacit\w*|lesion|mass|nodule|effusion|consolidation|classif\w*|diagnos\w*)\b", re.I)


def _questions(state: dict[str, Any]) -> tuple[str, str]:
    """(this turn's question, the case's previous question or "")."""
    msgs = state.get("messages", [])
    start = state.get("turn_start", 0)
    current = msgs[start].get("question", "") if start < len(msgs) else ""
    previous = next((m.get("question", "") for m in reversed(msgs[:start])
                     if m.get("role") == "user" and m.get("question")), "")
    return current, previous


def ungrounded_claims(answer: str, ledger: Ledger, question: str = "") -> list[str]:
    """Clinical sentences of ``answer`` that cite nothing or cite an id missing from ``ledger``."""
    check = verify(answer, ledger, question)
    return [s.text for s in check.sentences
            if s.status == "unsupported" and (not s.cited or any(c in check.invalid_ids for c in s.cited))]


def _unclassified_study(state: dict[str, Any]) -> str | None:
    """The latest attached study's ref when no classifier evidence exists for it yet, else None."""
    studies = state.get("studies", [])
    if not studies:
        return None
    ref = studies[-1].get("ref")
    done = any(e.get("kind") == "classifier" and (e.get("facts") or {}).get("study") == ref
               for e in state.get("evidence", []))
    return None if done else ref


def plan_fallback(state: dict[str, Any], answer: str, tools: dict[str, Any]) -> list[dict[str, Any]]:
    """The retrieval calls to run instead of finishing with ``answer``; [] when the answer may stand.

    Each call is ``{"id", "name", "args", "auto": True}``, validated against the tool's schema.
    """
    calls_so_far = [c for c in state.get("calls", []) if c.get("name") != "read_case"]
    # Image tools describe the study, not what to do about it: an answer that adds uncited guideline
    # claims after only looking at the image still needs retrieval. Any other tool (retrieval, a
    # calculator), or the fallback itself having fired, means the turn was already grounded.
    if any(c.get("auto") or c.get("name") not in IMAGE_TOOLS for c in calls_so_far):
        return []
    question, previous = _questions(state)
    if not question or needs_no_retrieval(question):
        return []
    study = _unclassified_study(state)
    # a question about an attached image that no classifier has looked at: even a cited answer (say,
    # from the DICOM header alone) has not looked at the pixels
    about_image = study is not None and bool(_ABOUT_IMAGE.search(question))
    if not about_image and not names_clinical_concept(f"{question} {previous}"):
        return []
    claims = ungrounded_claims(answer, Ledger.from_dicts(state.get("evidence", [])), question)
    if not claims and not about_image:
        return []
    # a short follow-up ("and if high risk?") needs the earlier question to retrieve anything useful
    query = f"{question} {previous}" if previous and len(question) < 60 else question
    query = " ".join(query.split())[:QUERY_CHARS]
    planned: list[tuple[str, dict[str, Any]]] = []
    if study is not None:  # an attached study nobody has looked at: the answer must start from it
        planned.append(("classify_study", {"study": study, "saliency": True}))
    planned.append(("search_guidelines", {"query": query}))
    if state.get("patient_key"):
        planned.append(("search_prior_reports", {"query": query}))
    calls = []
    for n, (name, args) in enumerate(planned, start=1):
        if name not in tools:
            continue
        try:
            tools[name].validate(args)
        except ToolArgumentError as exc:
            log.info("grounding fallback skips %s: %s", name, exc)
            continue
        calls.append({"id": f"auto_{n}", "name": name, "args": args, "auto": True})
    if calls:
        log.info("ungrounded answer (%d uncited claim(s)); retrieving with %s", len(claims),
                 ", ".join(c["name"] for c in calls))
    return calls


def tool_call_message(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message that carries the scheduled calls (so the tool results answer a call)."""
    import json

    return {"role": "assistant", "content": "", "meta": "auto",
            "tool_calls": [{"id": c["id"], "type": "function",
                            "function": {"name": c["name"], "arguments": json.dumps(c["args"])}} for c in calls]}
