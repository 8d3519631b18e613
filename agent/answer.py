"""The answer the clinician reads, composed from the model's text and the turn's evidence, then verified.

The model's answer keeps its own words; around it: repeated citation markers collapse, uncited
sentences that one evidence item clearly supports get its id (recorded as the verifier's), the tool
results are shown when the answer does not carry them, a classifier result never appears without
its calibrated probability, and tools that failed are named. The verifier then marks every clinical
sentence without support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.evidence import Evidence, Ledger
from agent.verify import CITE, attribute, parse_ids, restates, split_sentences, verify

REPEATED_CITE = re.compile(r"(\[(E\d+)\][.!?]?)[ \t]*\[\2\]")
NO_ANSWER = "I could not produce an answer to this question."


def extractive_answer(ledger: Ledger, limit: int = 3) -> str:
    """A plain answer made of this turn's evidence, each item cited (used when the model cannot write one)."""
    if not ledger.items:
        return "I could not find evidence to answer this question with the available tools."
    # one item per line: each is its own sentence for the verifier, checked against its own evidence
    parts = [f"- {e.title or e.source}: {e.quote.strip().rstrip('.')} [{e.id}]." for e in ledger.items[:limit]]
    return "From the tool results:\n" + "\n".join(parts)


def unstated_classifier_results(answer: str, items: list[Evidence]) -> list[Evidence]:
    """Classifier results whose calibrated probability (or abstention) the answer does not state.

    "The image is classified as normal [E1]" is cited but drops the number and the caution (a paediatric
    model on an adult film): a classifier's output is only shown together with them.
    """
    out = []
    for e in items:
        if e.kind != "classifier":
            continue
        facts = e.facts or {}
        if facts.get("abstained"):
            if "abstain" not in answer.lower():
                out.append(e)
            continue
        p = facts.get("probability")
        if isinstance(p, int | float) and f"{p:.2f}" not in answer and f"{p * 100:.0f}%" not in answer \
                and f"{p * 100:.0f} %" not in answer:
            out.append(e)
    return out


def grounded_in(answer: str, ids: set[str], question: str) -> bool:
    """True when a sentence of ``answer`` that says something new (not a bare marker, not a restatement
    of the question) cites one of ``ids``: the answer carries this turn's results itself."""
    for sentence in split_sentences(answer):
        cited = {i for token in CITE.findall(sentence) for i in parse_ids(token)}
        plain = CITE.sub("", sentence).strip(" .")
        if cited & ids and re.search(r"[A-Za-z]{3}", plain) and not restates(plain, question):
            return True
    return False


def last_full_sentence(text: str) -> str:
    """``text`` cut after its last complete sentence (for an answer stopped at max_tokens)."""
    ends = [m.end() for m in re.finditer(r"[.!?](\s*\[E\d+(?:\s*,\s*E?\d+)*\])?\.?(?=\s|$)", text)]
    if not ends or ends[-1] < len(text) // 3:  # almost nothing complete: keep it all, marked as cut
        return text.rstrip() + " …"
    return text[: ends[-1]].rstrip()


@dataclass
class ComposedAnswer:
    """The final answer of a turn with the verifier's findings."""

    answer: str
    marked_answer: str
    cited: list[str]
    unsupported: list[str]
    attributed: list[str] = field(default_factory=list)
    citation_validity: float | None = None
    invalid_ids: list[str] = field(default_factory=list)


def compose(answer: str, ledger: Ledger, turn_items: list[Evidence], question: str,
            failed_calls: list[str], error: str | None) -> ComposedAnswer:
    """The answer as shown: ``answer`` (the model's, or the error message), ``ledger`` the whole case's
    evidence, ``turn_items`` this turn's, ``failed_calls`` the errors of tools the model chose."""
    model_grounded = grounded_in(answer, {e.id for e in turn_items}, question)
    attributed: list[str] = []
    answer = REPEATED_CITE.sub(r"\1", answer)  # "... [E1]. [E1]": small models repeat the marker
    if not error:
        # uncited sentences that one evidence item clearly supports get its id (recorded as the verifier's)
        answer, attributed = attribute(answer, ledger, question)
    show: list[Evidence] = []
    if turn_items and not error and not model_grounded:
        show = turn_items[:3]  # the model did not ground its answer in this turn's results: show them
    if not error:
        shown = {e.id for e in show}
        show = show + [e for e in unstated_classifier_results(answer, turn_items) if e.id not in shown]
    if show:
        digest = extractive_answer(Ledger(show), limit=len(show))
        if digest not in answer:
            answer = f"{answer}\n\n{digest}" if answer.strip() else digest
    if failed_calls and not error:
        what = "; ".join(failed_calls)
        if what not in answer:
            answer += f"\n\nNot done: {what}."
    check = verify(answer, ledger, question)
    return ComposedAnswer(answer=answer, marked_answer=check.marked_answer(), cited=check.cited_ids,
                          unsupported=check.unsupported, attributed=attributed,
                          citation_validity=check.citation_validity, invalid_ids=check.invalid_ids)
