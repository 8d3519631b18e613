"""The cited diagnostic summary: a second-opinion draft assembled from the case's evidence ledger.

Sections (deterministic order and content): Clinical question; Technique (DICOM facts); Findings
(classifier outputs with calibrated probabilities, caution or abstention); Comparison (the prior studies
with their dates, each labelled lesion's change, and prior reports, dated, cited); Impression (the only LLM prose; each sentence must cite, uncited sentences are
dropped, and a deterministic fallback is used when nothing remains); Recommendations (guideline
calculators and passages, cited); Limitations; References (numbered: source, section, year, URL).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from agent.comparison import measurement_refs
from agent.evidence import Evidence, Ledger
from agent.llm.base import ChatBackend
from agent.prompts import render
from agent.signoff import DEFAULT_INTENDED_USE, EvidenceRef, Report, StudyRef
from agent.verify import CITE as CITE_MARK
from agent.verify import verify
from tools.errors import LLMError

if TYPE_CHECKING:
    from agent.results import ModelCard
    from tools.imaging import ImageStudy

log = logging.getLogger(__name__)

LIMITATIONS = [
    "Decision support, not a diagnosis: a clinician must review and sign this draft.",
    "Image classifiers are research models with a stated intended use; outputs outside it carry a caution "
    "or an abstention, and calibrated probabilities are estimates, not certainties.",
    "Guideline statements are summaries of the cited sources; check the original for the full conditions.",
]


@dataclass
class SummaryLine:
    text: str
    cites: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        return self.text + ("" if not self.cites else " " + "".join(f"[{c}]" for c in self.cites))


@dataclass
class Summary:
    """Structured summary; ``to_markdown()`` and ``to_dict()`` render it. References keep ledger ids."""

    clinical_question: list[str]
    technique: list[SummaryLine]
    findings: list[SummaryLine]
    comparison: list[SummaryLine]
    impression: list[SummaryLine]
    recommendations: list[SummaryLine]
    limitations: list[str]
    references: list[dict[str, Any]]
    model: str = ""
    created: str = ""
    impression_source: str = "llm"   # llm | deterministic
    unsupported_sentences: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        def block(title: str, lines: list[SummaryLine], empty: str) -> list[str]:
            out = [f"## {title}", ""]
            out += [f"- {ln.markdown()}" for ln in lines] or [f"- {empty}"]
            return out + [""]

        md = ["# Second-opinion summary (draft)", "",
              f"*Generated {self.created} by radconsult ({self.model}). Decision support, not a diagnosis.*", "",
              "## Clinical question", ""]
        md += [f"- {q}" for q in self.clinical_question] + [""]
        md += block("Technique", self.technique, "No image attached.")
        md += block("Findings", self.findings, "No model findings.")
        md += block("Comparison", self.comparison, "No prior study or report compared.")
        md += block("Impression", self.impression, "No impression.")
        md += block("Recommendations", self.recommendations, "No guideline-based recommendation was derived.")
        md += ["## Limitations", ""] + [f"- {x}" for x in self.limitations] + [""]
        md += ["## References", ""]
        for ref in self.references:
            bits = [ref["source"]]
            for key in ("title", "section"):
                if ref.get(key):
                    bits.append(str(ref[key]))
            if ref.get("page"):
                bits.append(f"p. {ref['page']}")
            if ref.get("year"):
                bits.append(str(ref["year"]))
            if ref.get("date"):
                bits.append(f"dated {ref['date']}")
            line = f"{ref['n']}. [{ref['id']}] " + ", ".join(bits)
            if ref.get("url"):
                line += f". {ref['url']}"
            md.append(line)
        if not self.references:
            md.append("None.")
        return "\n".join(md) + "\n"


def _finding_line(e: Evidence) -> SummaryLine:
    f = e.facts
    probs = f.get("probabilities") or {}
    ptxt = ", ".join(f"{k} {float(v):.2f}" for k, v in probs.items()) if isinstance(probs, dict) else ""
    name = f.get("model") or e.source
    ver = f" v{f['version']}" if f.get("version") else ""
    if f.get("abstained"):
        text = f"{name}{ver} on study {f.get('study', '?')}: abstained ({f.get('abstain_reason') or 'outside intended use'})."
    else:
        text = f"{name}{ver} on study {f.get('study', '?')}: {f.get('label') or 'result'}" + \
            (f" (calibrated probabilities: {ptxt})" if ptxt else "") + "."
    if f.get("caution"):
        c = f["caution"]
        text += f" Caution: {c if isinstance(c, str) else '; '.join(map(str, c))}."
    return SummaryLine(text, [e.id])


def _deterministic_impression(ledger: Ledger) -> list[SummaryLine]:
    """A short synthesis when the LLM cannot write one: what the models read and which rule applies,
    pointing to Findings and Recommendations for the details (never a copy of those sections)."""
    lines = []
    for e in ledger.of_kind("classifier"):
        f = e.facts
        name, study = f.get("model") or e.source, f.get("study", "?")
        if f.get("abstained"):
            lines.append(SummaryLine(f"No model reading of study {study}: {name} abstained (see Findings).", [e.id]))
        else:
            lines.append(SummaryLine(f"The decision-support model {name} reads study {study} as "
                                     f"{f.get('label') or 'indeterminate'}"
                                     + (", with a caution on its applicability (see Findings)." if f.get("caution")
                                        else " (see Findings)."), [e.id]))
    latest = {str(e.facts.get("lesion")).lower(): e for e in ledger.of_kind("comparison") if e.facts.get("compared")}
    for e in latest.values():
        c = e.facts["change"]
        lines.append(SummaryLine(f"{c['lesion']} is {c['status']} compared with {c['prior_study']} "
                                 f"({c['prior_date']}) (see Comparison).", [e.id]))
    for e in ledger.of_kind("calculator")[:2]:
        lines.append(SummaryLine(f"{e.title or e.source} applies to the case as described (see Recommendations).",
                                 [e.id]))
    return lines


def _llm_impression(question: str, ledger: Ledger, backend: ChatBackend) -> tuple[list[SummaryLine], list[str]]:
    evidence = "\n\n".join(e.prompt_block() for e in ledger.items)
    prompt = render("impression", question=question, evidence=evidence)
    res = backend.chat([{"role": "system", "content": render("system")}, {"role": "user", "content": prompt}],
                       None, tool_choice="none", max_tokens=200)
    check = verify(res.text, ledger)
    # a sentence of citation markers alone ("[E1] [E4]") says nothing: only supported prose is kept
    kept = [SummaryLine(s.text, []) for s in check.sentences if s.status == "supported" and s.cited]
    return kept, check.unsupported


def recommendations(state: dict[str, Any], ledger: Ledger) -> list[SummaryLine]:
    """What to do, from the rules that applied: each calculator result in its rendered words, and only the
    guideline passages an answer cited (never every retrieved section, most of them for other cases)."""
    from agent.frame.compose import sentences_for
    from agent.frame.model import CaseFrame

    frames = {}
    for record in state.get("turns", []):
        for eid in record.get("evidence_ids", []):
            frames[eid] = CaseFrame.from_dict(record.get("frame") or {})
    lines = []
    for e in ledger.of_kind("calculator"):
        text = " ".join(CITE_MARK.sub("", s).strip() for s in sentences_for(e, frames.get(e.id, CaseFrame())))
        lines.append(SummaryLine(re.sub(r"\s+\.", ".", text), [e.id]))
    cited = {c for record in state.get("turns", []) for c in record.get("cited", [])}
    lines += [SummaryLine(f"{e.source}{', ' + e.section if e.section else ''}: \"{e.quote[:300]}\"", [e.id])
              for e in ledger.of_kind("guideline") if e.id in cited]
    return lines


def _iso(day: str | None) -> str | None:
    return f"{day[:4]}-{day[4:6]}-{day[6:8]}" if day and len(day) == 8 and day.isdigit() else None


def prior_study_lines(studies: list[dict[str, Any]], ledger: Ledger) -> list[SummaryLine]:
    """The Comparison section's studies and lesions: each prior study with its date and interval before the
    current (newest) one, then each labelled lesion's latest comparison (or why none was computed), cited with
    the measurements it rests on."""
    import datetime as dt

    dated = [(s, _iso(s.get("study_date"))) for s in studies]
    dated = [(s, d) for s, d in dated if d]
    lines: list[SummaryLine] = []
    def what(s: dict[str, Any]) -> str:
        return " ".join(x for x in (s.get("modality"), s.get("body_part")) if x) or s.get("label", "study")

    if len(dated) > 1:
        current, today = max(dated, key=lambda x: x[1])
        lines.append(SummaryLine(f"Current study {current['ref']}: {what(current)}, {today}."))
        for s, day in sorted(dated, key=lambda x: x[1], reverse=True):
            if s is current:
                continue
            days = (dt.date.fromisoformat(today) - dt.date.fromisoformat(day)).days
            lines.append(SummaryLine(f"Prior study {s['ref']}: {what(s)}, {day}, {days} days before "
                                     f"{current['ref']}."))
    latest: dict[str, Evidence] = {}
    for e in ledger.of_kind("comparison"):
        latest[str(e.facts.get("lesion", e.id)).lower()] = e
    for e in latest.values():
        cites = [e.id, *e.facts.get("measurements", [])] if e.facts.get("compared") else [e.id]
        lines.append(SummaryLine(e.quote.rstrip(".") + ".", sorted(set(cites), key=lambda x: int(x[1:]))))
    return lines


def build_summary(state: dict[str, Any], backend: ChatBackend | None = None, model_name: str = "") -> Summary:
    ledger = Ledger.from_dicts(state.get("evidence", []))
    turns = state.get("turns", [])
    questions = [t["question"] for t in turns if t.get("question")]
    technique = [SummaryLine(f"Study {e.facts.get('study', '?')}: {e.quote}.", [e.id]) for e in ledger.of_kind("dicom")]
    if not technique:
        technique = [SummaryLine(f"Study {s['ref']}: {s['label']}.") for s in state.get("studies", [])]
    # lengths marked on the viewer (or `ask --measure`) first, with their provenance, then the models' findings
    findings = [SummaryLine(f"Measured on study {e.facts.get('study', '?')}: {e.quote}.", [e.id])
                for e in ledger.of_kind("measurement")]
    findings += [_finding_line(e) for e in ledger.of_kind("classifier")]
    comparison = prior_study_lines(state.get("studies", []), ledger)
    comparison += [SummaryLine(f"Prior report{' dated ' + e.date if e.date else ' (undated)'}"
                               f"{', ' + e.section if e.section else ''}: \"{e.quote[:300]}\"", [e.id])
                   for e in sorted(ledger.of_kind("prior_report"), key=lambda x: x.date or "")]
    recs = recommendations(state, ledger)
    impression, source, unsupported = [], "deterministic", []
    if backend is not None and ledger.items:
        try:
            impression, unsupported = _llm_impression(" / ".join(questions) or "second opinion", ledger, backend)
            source = "llm" if impression else "deterministic"
        except LLMError as exc:
            log.warning("impression by the LLM failed: %s", exc)
    if not impression:
        impression = _deterministic_impression(ledger)
    used: list[str] = []
    for line in technique + findings + comparison + impression + recs:
        for c in line.cites:
            if c not in used:
                used.append(c)
        for tok in re.findall(r"E\d+", line.text):
            if tok in ledger and tok not in used:
                used.append(tok)
    refs = []
    for n, eid in enumerate(sorted(used, key=lambda x: int(x[1:])), start=1):
        e = ledger.get(eid)
        if e is None:
            continue
        refs.append({"n": n, "id": e.id, "kind": e.kind, "source": e.source, "title": e.title, "section": e.section,
                     "page": e.page, "year": e.year, "url": e.url, "date": e.date})
    return Summary(clinical_question=questions, technique=technique, findings=findings, comparison=comparison,
                   impression=impression, recommendations=recs, limitations=list(LIMITATIONS), references=refs,
                   model=model_name, created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                   impression_source=source, unsupported_sentences=unsupported)


# --- the signable report -------------------------------------------------------------------------
def evidence_ref(e: Evidence) -> EvidenceRef:
    """One ledger item as the evidence panel and the exports show it (a classifier's probability is named
    by the label it belongs to)."""
    facts = e.facts or {}
    card = facts.get("model_card") or {}
    label = facts.get("label")
    prob, probs, prob_of = facts.get("probability"), facts.get("probabilities"), facts.get("positive_label")
    if prob is not None and prob_of is None and isinstance(probs, dict):
        # a bare probability: name the label it belongs to when the probabilities say which
        prob_of = next((k for k, v in probs.items() if v == prob), None)
    elif prob is None and isinstance(probs, dict) and probs:
        prob_of = label if label in probs else max(probs, key=lambda k: float(probs[k]))
        prob = probs[prob_of]
    caution = facts.get("caution") or facts.get("abstain_reason") or card.get("caution")
    return EvidenceRef(
        id=e.id, kind=e.kind, title=e.title, source=e.source, section=e.section, quote=e.quote,
        model=facts.get("model") or card.get("name"), model_version=facts.get("version") or card.get("version"),
        probability=float(prob) if isinstance(prob, int | float) else None,
        probability_of=str(prob_of) if prob_of is not None else None,
        label=str(label) if label is not None else None,
        caution=caution if isinstance(caution, str) or caution is None else "; ".join(map(str, caution)),
        intended_use=card.get("intended_use"))


def summary_sections(summary: Summary) -> tuple[tuple[str, str], ...]:
    """The summary's sections as (heading, Markdown); every section is shown, an empty one says so."""
    def text(lines: list[SummaryLine] | list[str]) -> str:
        parts = [ln if isinstance(ln, str) else ln.markdown() for ln in lines]
        parts = [p for p in parts if p]
        return parts[0] if len(parts) == 1 else "\n".join(f"- {p}" for p in parts)

    rows = (("Clinical question", summary.clinical_question), ("Technique", summary.technique),
            ("Findings", summary.findings), ("Comparison", summary.comparison), ("Impression", summary.impression),
            ("Recommendations", summary.recommendations), ("Limitations", summary.limitations))
    return tuple((heading, text(lines) or "None recorded.") for heading, lines in rows)


def build_report(summary: Summary, case_id: str, patient_key: str | None, evidence: list[Evidence],
                 study: ImageStudy | None, cards: list[ModelCard]) -> Report:
    """The signable report of a summary: its sections, the evidence they cite, the models used (with their
    intended use) and the pseudonymised study it is about."""
    sections = summary_sections(summary)
    cited = set(re.findall(r"\[(E\d+)\]", " ".join(t for _, t in sections)))
    refs = tuple(evidence_ref(e) for e in evidence if e.id in cited or not cited)
    intended = {c.name: c.intended_use for c in cards}
    models = tuple({"name": r.model, "version": str(r.model_version or ""),
                    "intended_use": r.intended_use or intended.get(r.model) or DEFAULT_INTENDED_USE}
                   for r in {r.model: r for r in refs if r.model}.values())
    ref = None
    if study is not None and study.study_uid:
        ref = StudyRef(study_uid=study.study_uid, series_uid=study.series_uid,
                       sop_instance_uids=tuple(study.sop_instance_uids), sop_class_uid=study.sop_class_uid,
                       modality=study.metadata.modality)
    measured = measurement_refs(evidence, case_id, ref.study_uid if ref else None)
    if measured:
        cited_ids = {r.id for r in refs}
        refs += tuple(evidence_ref(e) for e in evidence if e.kind == "measurement" and e.id not in cited_ids
                      and e.id in {m.evidence_id for m in measured})
    return Report(case_id=case_id, patient_key=patient_key, sections=sections, evidence=refs, models=models,
                  study=ref, measurements=measured)
