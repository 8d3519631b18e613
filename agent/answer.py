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
    """The final answer of a turn with the verifier's findings. ``unsupported`` and ``contradicted``
    sentences are not in ``answer``: the clinician reads only what the evidence supports."""

    answer: str
    marked_answer: str
    cited: list[str]
    unsupported: list[str]
    attributed: list[str] = field(default_factory=list)
    contradicted: list[str] = field(default_factory=list)
    citation_validity: float | None = None
    invalid_ids: list[str] = field(default_factory=list)


def tidy_citations(answer: str) -> str:
    """Markers as a reader expects them: one per sentence end ("... [E1]. [E1]" happens after attribution) and
    before the full stop ("the rule . [E1]" -> "the rule [E1].")."""
    answer = REPEATED_CITE.sub(r"\1", answer)
    return re.sub(r"[ \t]+([.!?])[ \t]+(\[E\d+\](?:,\s*\[E\d+\])*)(?=\s|$)", r" \2\1", answer)


def _drop(answer: str, sentences: list[str]) -> str:
    """``answer`` without ``sentences`` (each removed once, with its list marker or line if it stood alone)."""
    for sentence in sentences:
        i = answer.find(sentence)
        if i < 0:
            continue
        answer = answer[:i] + answer[i + len(sentence):]
    lines = [ln.rstrip() for ln in answer.splitlines()]
    lines = [ln for ln in lines if re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", ln).strip(" .")]
    return re.sub(r"[ \t]{2,}", " ", "\n".join(lines)).strip()


def _best_quote(items: list[Evidence], question: str, answer: str) -> str:
    """One evidence item quoted as a cited line, when the prose cites none of the turn's results: the first
    that shares the most content words with the question. When none shares any, nothing is quoted after prose that
    stands, and the first item only when nothing else would be shown (a quote on another subject misleads)."""
    from agent.verify import _stems

    asked = _stems(question)
    overlap = [len(asked & _stems(f"{e.title or ''} {e.section or ''} {e.quote}")) for e in items]
    best = max(range(len(items)), key=lambda i: overlap[i])  # the first of the best on ties
    if overlap[best]:
        return quote_line(items[best])
    return "" if answer.strip() else quote_line(items[0])


def _first_sentences(text: str, limit: int) -> str:
    """Whole sentences of ``text`` up to ``limit`` characters (at least the first, cut at a word)."""
    out = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if out and len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}".strip()
    return out if len(out) <= limit else out[:limit].rsplit(" ", 1)[0] + " ..."


def quote_line(e: Evidence) -> str:
    """One evidence item as a cited quotation: "Title, Section: "passage" [E1]."."""
    from agent.evidence import sanitize_data

    where = ", ".join(x for x in (e.title or e.source, e.section.split(" > ")[-1] if e.section else None) if x)
    quote = sanitize_data(" ".join(e.quote.split()), 10_000)[0]  # data, never instructions
    quote = _first_sentences(quote, 300)
    return f"{where}: \"{quote}\" [{e.id}]."


def compose(answer: str, ledger: Ledger, turn_items: list[Evidence], question: str,
            failed_calls: list[str], error: str | None, rendered: bool = False) -> ComposedAnswer:
    """The answer as shown: ``answer`` (the model's, the rendered one, or the error message), ``ledger`` the
    whole case's evidence, ``turn_items`` this turn's, ``failed_calls`` the errors of tools that did not run.

    Contradicted sentences are removed; so are clinical sentences no evidence supports, when the turn has
    evidence (without any, a greeting or an out-of-scope reply stands, its claims marked). A classifier
    result the answer cites without its probability is stated with it. When the model's prose carries none
    of this turn's results, the best evidence item is quoted after it. Tool results the answer does not
    cite are not appended: the evidence panel lists them.
    """
    attributed: list[str] = []
    answer = REPEATED_CITE.sub(r"\1", answer)  # "... [E1]. [E1]": small models repeat the marker
    if not error and not rendered:
        # uncited sentences that one evidence item clearly supports get its id (recorded as the verifier's)
        answer, attributed = attribute(answer, ledger, question)
    check = verify(answer, ledger, question)
    contradicted = [s.text for s in check.sentences if s.status == "contradicted"]
    unsupported = [s.text for s in check.sentences if s.status == "unsupported"] if turn_items else []
    empty = [s.text for s in check.sentences if s.status == "empty"]
    if not error:
        answer = _drop(answer, contradicted + unsupported + empty)
        cited_now = verify(answer, ledger, question).cited_ids
        if not rendered and turn_items and not grounded_in(answer, {e.id for e in turn_items}, question):
            quote = _best_quote(turn_items, question, answer)
            answer = (answer + "\n" if answer and quote else answer) + quote
            cited_now = verify(answer, ledger, question).cited_ids
        missing = [e for e in unstated_classifier_results(answer, turn_items) if e.id in cited_now]
        if missing:
            from agent.frame.compose import classifier_sentences

            answer += "\n" + " ".join(s for e in missing for s in classifier_sentences(e))
        if failed_calls:
            what = "; ".join(failed_calls)
            if what not in answer:
                answer += f"\n\nNot done: {what}."
        if not answer.strip():
            answer = NO_ANSWER
    answer = tidy_citations(answer)
    final = verify(answer, ledger, question)
    return ComposedAnswer(answer=answer, marked_answer=final.marked_answer(), cited=final.cited_ids,
                          unsupported=unsupported + final.unsupported, attributed=attributed,
                          contradicted=contradicted, citation_validity=check.citation_validity,
                          invalid_ids=final.invalid_ids)
