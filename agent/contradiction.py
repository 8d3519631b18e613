"""Does a cited sentence contradict its evidence? Intervals, categories, probabilities, labels and negations.

Lexical support (agent/verify.py) counts shared words and numbers, so "CT at 12 months [E1]" passes against
"CT at 6-12 months": the 12 is there. This check compares meaning-bearing values instead:

* follow-up intervals ("6-12 months", "every 2 years", "at 3 months"), normalised to months;
* Lung-RADS and BI-RADS categories;
* calibrated probabilities ("P(pneumonia) = 0.05", "5%") against a classifier's result;
* a classifier's label ("shows pneumonia" when it read normal, "benign" when it read malignant);
* negation of follow-up ("no follow-up is needed" against a recommended CT, and the reverse);
* organ against system: a lung rule (Fleischner, Lung-RADS, USPSTF lung screening) applied to a breast finding,
  or BI-RADS (or USPSTF breast screening) to a lung nodule. The finding's organ is what the sentence names, else
  what the question names; the rule is what the sentence names, else the guideline of the evidence it cites.

For calculator and classifier evidence the structured result is compared, not only its quote. A sentence
is contradicted when one of its values disagrees with every value of that kind in the evidence it cites.
"""

from __future__ import annotations

import re

from agent.evidence import Evidence

_INTERVAL = re.compile(r"(?:\bevery\s+)?(\d+(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(\d+(?:\.\d+)?))?\s*(months?|mo|years?|yrs?|"
                       r"weeks?)\b", re.I)
_LR_CAT = re.compile(r"\blung[- ]?rads(?:\s+v?2022)?\s*(?:category\s*)?(0|1|2|3|4\s*[ABX]|4)(?![\w])|"
                     r"\bcategory\s+(0|1|2|3|4[ABX])\b", re.I)
_BI_CAT = re.compile(r"\bbi[- ]?rads\s*(?:category\s*)?(0|1|2|3|4\s*[ABC]?|5|6)(?![\w])", re.I)
_PROB = re.compile(r"\bP\s*\(\s*([\w -]+?)\s*\)\s*(?:=|of|is|was)?\s*(0?\.\d+|1\.0+|0|1)\b|(\d{1,3}(?:\.\d+)?)\s*%", re.I)
_NO_FOLLOW_UP = re.compile(r"\bno\s+(?:routine\s+|further\s+|additional\s+)?(?:follow[- ]?up|imaging|surveillance|CT)\b|"
                           r"\bfollow[- ]?up\s+is\s+not\s+(?:needed|required|necessary|recommended)|\bdoes\s+not\s+need\s+"
                           r"(?:any\s+)?(?:follow[- ]?up|imaging)", re.I)
_RECOMMENDS_IMAGING = re.compile(r"\b(?:LD)?CT\s+(?:at|in|every)\b|\bPET/CT\b|\bbiopsy\b|\btissue\s+sampling\b|"
                                 r"\bresection\b|\bfollow[- ]?up\s+(?:CT|imaging)\s+(?:at|in)\b", re.I)


def intervals(text: str) -> set[tuple[float, float]]:
    """Follow-up intervals in months, as (earliest, latest)."""
    out = set()
    for m in _INTERVAL.finditer(text):
        after, before = text[m.end(): m.end() + 8].lower(), text[max(0, m.start() - 12): m.start()].lower()
        if re.match(r"[\s-]*(?:old|ago|of\s+age|smok)", after) or re.search(r"\bage[d]?\s*$|pack[- ]?$", before):
            continue  # an age, a time in the past or a smoking history, not a follow-up interval
        lo = float(m.group(1))
        hi = float(m.group(2)) if m.group(2) else lo
        unit = m.group(3).lower()
        factor = 12.0 if unit.startswith("y") else 0.25 if unit.startswith("w") else 1.0
        out.add((lo * factor, hi * factor))
    return out


def _categories(pattern: re.Pattern[str], text: str) -> set[str]:
    return {re.sub(r"\s+", "", (m.group(1) or (m.group(2) if m.lastindex and m.lastindex > 1 else "") or "")).upper()
            for m in pattern.finditer(text)} - {""}


def _evidence_text(e: Evidence) -> str:
    result = e.facts.get("result") if isinstance(e.facts.get("result"), dict) else {}
    extra = " ".join(str(result.get(k, "")) for k in ("recommendation", "management", "rule", "category", "label"))
    return f"{e.quote} {e.section or ''} {extra}"


def _calculator_categories(e: Evidence) -> set[str]:
    result = e.facts.get("result") if isinstance(e.facts.get("result"), dict) else {}
    cats = {str(result.get(k)).upper() for k in ("category", "label") if result.get(k)}
    return cats | {c.rstrip("S") for c in cats}


_AFFIRM = (r"(?:shows?|showing|has|have|had|with|consistent\s+with|suggest\w*|indicat\w*|diagnos\w*\s+(?:as|of|with)|"
           r"reads?\s+(?:it\s+|this\s+|the\s+\w+\s+)?as|read\s+as|classified\s+as|labell?ed\s+as|positive\s+for|"
           r"evidence\s+of|signs?\s+of|there\s+is|finds?|found|detects?|detected|represents?|is)\s+(?:an?\s+|the\s+)?"
           r"(?:\w+\s+){{0,2}}{label}\b|\b{label}\s+(?:is|was|are)\s+(?:present|seen|detected|likely|confirmed|"
           r"visible|evident)")
_DENY = (r"\b(?:no|not|without|negative\s+for|absence\s+of|rules?\s+out|ruled\s+out)\s+(?:\w+\s+){{0,2}}{label}\b|"
         r"\b{label}\s+(?:is|was)\s+(?:not|unlikely|absent|ruled\s+out)")


def _classifier_problem(sentence: str, e: Evidence) -> str | None:
    """A stated probability or label that the classifier's structured result does not give."""
    f = e.facts
    if f.get("abstained"):
        return None
    probs = {str(k).lower(): float(v) for k, v in (f.get("probabilities") or {}).items()}
    label = str(f.get("label") or "").lower()
    for m in _PROB.finditer(sentence):
        if m.group(2) is not None:
            named, stated = m.group(1).strip().lower(), float(m.group(2))
            if named in probs and abs(probs[named] - stated) > 0.011:
                return f"states P({named}) = {stated:g}, the classifier gave {probs[named]:.2f}"
    lower = re.sub(r"\b[\w-]+-(?:cxr|us|mri|ct)\b", " ", sentence.lower())  # model names are not labels
    lower = re.sub(r"\bp\s*\([^)]*\)", " ", lower)  # nor the label inside P(...)
    for other in probs:
        word = re.escape(other.replace("_", " "))
        if other == label or other in ("normal", "normal_or_benign"):
            continue
        if re.search(_AFFIRM.format(label=word), lower) and not re.search(_DENY.format(label=word), lower):
            return f"states {other}, the classifier read {label or 'another label'}"
    if label and label not in ("normal", "normal_or_benign") and re.search(_DENY.format(label=re.escape(label)), lower):
        return f"denies {label}, which the classifier read"
    return None


# the organ of a finding, by its anatomy (a rule's name is not anatomy: "BI-RADS 4" may be misapplied to a lung)
_BREAST_ANATOMY = re.compile(r"\bbreasts?\b(?!\s+(?:cancer|carcinoma|ca)\b)|\bmammo\w*|\baxill\w*|\bretroareolar\b|"
                             r"\bnipple\b|\bsubareolar\b", re.I)
_LUNG_ANATOMY = re.compile(r"(?i:\blungs?\b(?!\s+(?:cancer|carcinoma|ca)\b)|\bpulmonary\b|\b(?:upper|middle|lower)\s+"
                           r"lobe\b|\blingula\w*|\bchest\s+CT\b|\bCT\s+(?:of\s+the\s+)?chest\b|\bperifissural\b|"
                           r"\bground[- ]glass\b|\bpart[- ]solid\b|\bsubsolid\b)|\b[RL][UML]L\b|\bLDCT\b|\bGG[ON]s?\b")
_LUNG_RULE = re.compile(r"\bfleischner\b|\blung[- ]?rads\b|\bLR[- ]?[0-4][ABX]?\b|\blung\s+cancer\s+screening\b|"
                        r"\buspstf[_ ]lung\b|\blung_rads\w*|\bfleischner_\w+", re.I)
_BREAST_RULE = re.compile(r"\bbi[- ]?rads\b|\bbirads\w*|\bBR[- ]?[0-6][ABC]?\b|\bbreast\s+cancer\s+screening\b|"
                          r"\buspstf[_ ]breast\w*", re.I)
# the sentence says the rule does not apply (or applies elsewhere): that is not applying it
_NOT_APPLIED = re.compile(r"\bnot\b|n't\b|\bnever\b|\boutside\b|\brather\s+than\b|\binstead\b|\bunlike\b|"
                          r"\bonly\s+(?:to|for|in)\b|\bexclud\w*", re.I)
_ORGAN_RULE = {"lung": "a lung rule (Fleischner, Lung-RADS or lung screening)",
               "breast": "a breast rule (BI-RADS or breast screening)"}


def _one(lung: bool, breast: bool) -> str | None:
    return "lung" if lung and not breast else "breast" if breast and not lung else None


def finding_organ(sentence: str, question: str = "") -> str | None:
    """The organ of the finding a sentence is about: its own anatomy words, else the question's (anatomy or a
    named system); None when neither says, or both organs are named."""
    named = _one(bool(_LUNG_ANATOMY.search(sentence)), bool(_BREAST_ANATOMY.search(sentence)))
    if named or _LUNG_ANATOMY.search(sentence) or _BREAST_ANATOMY.search(sentence) or not question:
        return named
    return _one(bool(_LUNG_ANATOMY.search(question) or _LUNG_RULE.search(question)),
                bool(_BREAST_ANATOMY.search(question) or _BREAST_RULE.search(question)))


def applied_systems(sentence: str, cited: list[Evidence]) -> set[str]:
    """The organs of the rules a sentence applies: the ones it names, else those of the guideline or
    calculator evidence it cites."""
    def organs(text: str) -> set[str]:
        return {o for o, p in (("lung", _LUNG_RULE), ("breast", _BREAST_RULE)) if p.search(text)}

    named = organs(sentence)
    if named:
        return named
    return set().union(*(organs(f"{e.tool} {e.title or ''} {e.source}") for e in cited
                         if e.kind in ("calculator", "guideline")))


def organ_mismatch(sentence: str, cited: list[Evidence], question: str = "") -> str | None:
    """A lung rule applied to a breast finding or a breast rule to a lung finding, said as a reason; else None."""
    if _NOT_APPLIED.search(sentence):
        return None
    organ = finding_organ(sentence, question)
    systems = applied_systems(sentence, cited)
    if organ is None or not systems or organ in systems:
        return None
    other = next(iter(systems))
    return f"applies {_ORGAN_RULE[other]} to a {organ} finding"


def contradiction(sentence: str, cited: list[Evidence], question: str = "") -> str | None:
    """Why ``sentence`` contradicts the evidence it cites (or, for the organ, the question it answers), or None
    when it does not."""
    if not cited:
        return None
    mismatch = organ_mismatch(sentence, cited, question)
    if mismatch:
        return mismatch
    texts = [_evidence_text(e) for e in cited]
    said = intervals(sentence)
    if said:
        known = set().union(*(intervals(t) for t in texts))
        wrong = [iv for iv in said if iv not in known]
        if wrong and (known or any(_NO_FOLLOW_UP.search(t) for t in texts)):
            lo, hi = wrong[0]
            span = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
            return f"states an interval of {span} months that the cited evidence does not give"
    for pattern, name in ((_LR_CAT, "Lung-RADS"), (_BI_CAT, "BI-RADS")):
        stated = _categories(pattern, sentence)
        if not stated:
            continue
        known = set().union(*(_categories(pattern, t) for t in texts))
        known |= set().union(*(_calculator_categories(e) for e in cited if e.kind == "calculator"))
        if known and not stated & known:
            return f"states {name} {', '.join(sorted(stated))}, the cited evidence gives {', '.join(sorted(known))}"
    if _NO_FOLLOW_UP.search(sentence) and all(_RECOMMENDS_IMAGING.search(t) and not _NO_FOLLOW_UP.search(t)
                                               for t in texts):
        return "says no follow-up, the cited evidence recommends imaging or sampling"
    for e in cited:
        if e.kind == "classifier":
            problem = _classifier_problem(sentence, e)
            if problem:
                return problem
    return None
