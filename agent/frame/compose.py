"""Answers rendered from structured results: the recommendation sentence comes from the calculator's own
result with the rule that applied, a classifier result from the result itself. The wording is fixed, so
the numbers a clinician reads are the guideline's, never a model's restatement of them.
"""

from __future__ import annotations

import re

from agent.evidence import Evidence
from agent.frame.comparison import comparison_sentences, drove_sentence, measured_sentences
from agent.frame.model import CaseFrame


def _reading(frame: CaseFrame) -> str:
    """How numbers in the question were read (unit conversions, averaged axes, pack-years), if any, and a
    risk basis with numbers (a history given in words or in an earlier turn is stated here, not inside a
    cited recommendation, whose every number must come from its evidence)."""
    notes = list(dict.fromkeys(frame.notes))
    if frame.risk and frame.system == "fleischner" and _numeric_basis(frame):  # risk is Fleischner's notion
        notes.append(f"{frame.risk} risk: {frame.risk_basis}")
    return "; ".join(notes)


def _numeric_basis(frame: CaseFrame) -> bool:
    return bool(frame.risk_basis and re.search(r"\d", frame.risk_basis) and not frame.risk_basis.startswith("stated"))


_KIND = {"solid": "solid nodule", "ground glass": "pure ground-glass nodule", "part solid": "part-solid nodule",
         "subsolid": "subsolid nodules"}


def fleischner_rule(rule: str, frame: CaseFrame) -> str:
    """The table cell in words: "single solid nodule 6-8 mm, low risk (never smoker)"."""
    parts = [p.strip() for p in rule.split(",")]
    if len(parts) < 3 or parts[1] not in ("single", "multiple"):
        return rule
    kind, count, band = parts[0], parts[1], ", ".join(p for p in parts[2:] if "risk" not in p)
    kind_words = _KIND.get(kind, kind)
    if count == "multiple" and not kind_words.endswith("s"):
        kind_words = kind_words.replace("nodule", "nodules")
    text = f"{count} {kind_words} {band}".strip()
    risk = next((p for p in parts[2:] if p in ("low risk", "high risk")), None)
    if risk:
        basis = frame.risk_basis if frame.risk_basis and not frame.risk_basis.startswith("stated") \
            and not _numeric_basis(frame) else None
        text += f", {risk}" + (f" ({basis})" if basis else "")
    if frame.size_mm is not None and frame.size_mm != int(frame.size_mm + 0.5) and band:
        text += f" ({frame.size_mm:g} mm rounds to {int(frame.size_mm + 0.5)} mm)"
    return text


def _cited_sentences(text: str, cite: str) -> list[str]:
    """``text`` split into sentences, each ending with the citation (so each is checked on its own)."""
    parts = [p.strip().rstrip(".") for p in re.split(r"(?<=\.)\s+(?=[A-Z])", text.strip()) if p.strip()]
    return [f"{p}{cite}." for p in parts]


def fleischner_sentences(e: Evidence, frame: CaseFrame) -> list[str]:
    result = e.facts.get("result", {})
    cite = f" [{e.id}]"
    rec = str(result.get("recommendation", ""))
    if not result.get("applicable", True):
        return _cited_sentences(rec, cite)
    rule = fleischner_rule(str(result.get("rule", "")), frame)
    if rec.startswith("Low risk:") and "High risk:" in rec:  # risk not given: both columns, each cited
        low, high = rec[len("Low risk:"):].split("High risk:", 1)
        return [f"Fleischner 2017, {rule}, low risk: {low.strip().rstrip('.')}{cite}.",
                f"Fleischner 2017, {rule}, high risk: {high.strip().rstrip('.')}{cite}."]
    first, *rest = _cited_sentences(rec, cite)
    return [f"Fleischner 2017, {rule}: {first}", *rest]


def lung_rads_sentences(e: Evidence, frame: CaseFrame) -> list[str]:
    r = e.facts.get("result", {})
    cite = f" [{e.id}]"
    head = f"Lung-RADS v2022 category {r.get('label') or r.get('category')} ({str(r.get('descriptor', '')).lower()}"
    head += f"; {r['rule']})" if r.get("rule") and not str(r.get("rule")).startswith("category") else ")"
    out = [f"{head}: {str(r.get('management', '')).rstrip('.')}{cite}."]
    if r.get("probability_of_malignancy"):
        out.append(f"Probability of malignancy: {r['probability_of_malignancy']}{cite}.")
    return out


def birads_sentences(e: Evidence) -> list[str]:
    r = e.facts.get("result", {})
    cite = f" [{e.id}]"
    return [f"BI-RADS {r.get('category')} ({r.get('name')}): likelihood of malignancy {r.get('likelihood_of_malignancy')}"
            f"{cite}.", f"Management: {str(r.get('management', '')).rstrip('.')}{cite}."]


def screening_sentences(e: Evidence) -> list[str]:
    r = e.facts.get("result", {})
    return [f"{str(r.get('recommendation', '')).rstrip('.')} [{e.id}]."]


def classifier_sentences(e: Evidence) -> list[str]:
    """A classifier result as the result states it: model, label, calibrated probability, caution."""
    f = e.facts
    name = f"{f.get('model') or e.source} {f.get('version') or ''}".strip()
    cite = f" [{e.id}]"
    if f.get("abstained"):
        return [f"{name} abstained on study {f.get('study', '?')}: {f.get('abstain_reason') or 'outside its intended use'}"
                f"{cite}."]
    probs = f.get("probabilities") or {}
    positive = f.get("positive_label")
    p = f.get("probability")
    if len(probs) > 2:
        ranked = ", ".join(f"P({k}) = {float(v):.2f}" for k, v in sorted(probs.items(), key=lambda kv: -kv[1]))
        out = [f"{name} reads study {f.get('study', '?')} as {f.get('label')} ({ranked}){cite}."]
    else:
        prob = f"P({positive}) = {float(p):.2f}" if isinstance(p, int | float) and positive else ""
        thr = f", threshold {float(f['threshold']):.2f}" if isinstance(f.get("threshold"), int | float) else ""
        out = [f"{name} reads study {f.get('study', '?')} as {f.get('label')} ({prob}{thr}){cite}."]
    if f.get("caution"):
        out.append(f"Caution: {str(f['caution']).rstrip('.')}{cite}.")
    statement = str((f.get("model_card") or {}).get("result_statement") or "").strip().rstrip(".")
    if statement:  # what the bundle says every result of it must carry (its scope), in its own words
        out.append(f"Scope of {name}: {statement}{cite}.")
    return out


def guideline_sentences(e: Evidence) -> list[str]:
    """A retrieved section quoted sentence by sentence, each with its citation (the verifier checks sentences
    one at a time: a quotation of two sentences cited once would lose its first)."""
    from agent.answer import quote_line

    line = quote_line(e)
    head, sep, rest = line.partition(': "')
    cite = f" [{e.id}]."
    quote = rest[: -len(f'" [{e.id}].')] if sep and rest.endswith(f'" [{e.id}].') else ""
    parts = [p.strip() for p in re.split(r"(?<=[.;])\s+(?=[A-Z])", quote) if p.strip()]
    if len(parts) < 2:
        return [line]
    return [f'{head}: "{parts[0]}"{cite}'] + [f'"{p}"{cite}' for p in parts[1:]]


def sentences_for(e: Evidence, frame: CaseFrame) -> list[str]:
    """The rendered sentences for one evidence item ([] for kinds the model answers from)."""
    if e.kind == "classifier":
        return classifier_sentences(e)
    if e.kind == "dicom":  # the study's safe header facts, as the header states them
        return [f"Study {e.facts.get('study', '?')} ({e.source}): {e.quote.rstrip('.')} [{e.id}]."]
    if e.kind == "guideline":  # a section retrieved for a rendered answer: quoted, not paraphrased
        return guideline_sentences(e)
    if e.kind == "comparison":
        return comparison_sentences(e)
    if e.kind != "calculator":
        return []
    if not e.facts.get("result"):  # a result without structure: its quoted line, cited
        return [f"{e.title or e.source}: {e.quote.rstrip('.')} [{e.id}]."]
    if e.tool == "fleischner_followup":
        return fleischner_sentences(e, frame)
    if e.tool in ("lung_rads_category", "lung_rads_meaning"):
        return lung_rads_sentences(e, frame)
    if e.tool == "birads_category":
        return birads_sentences(e)
    return screening_sentences(e)


def compose_answer(frame: CaseFrame, items: list[Evidence], clarify: str | None, statement: str | None) -> str:
    """The rendered answer: how the question was read, the results, assumptions, then any question."""
    lines: list[str] = []
    reading = _reading(frame)
    measured = [e for e in items if e.kind == "measurement"]
    results = [s for e in items for s in sentences_for(e, frame)]
    if measured and results:
        results[:0] = measured_sentences(measured)
    drove = drove_sentence(frame, items)
    if drove:
        results.append(drove)
    if reading and results:
        lines.append(f"Read as: {reading}.")
    lines += results
    if statement:
        lines.append(statement)
    if any(e.kind == "calculator" and e.facts.get("result", {}).get("applicable") is False for e in items):
        clarify = None  # the guideline does not apply: nothing more to ask for it
    if frame.assumed and results:
        lines.append("Assumed: " + "; ".join(frame.assumed) + ".")
    if clarify:
        if frame.missing == ["risk"] and results:
            why = f": {frame.risk_basis}" if frame.risk is None and frame.risk_basis else ""
            lines.append(f"The recommendation depends on the patient's risk, so both are shown{why}. " + clarify)
        else:
            lines.append(clarify)
    return "\n".join(lines) if lines else "I could not find a guideline result for this question."
