"""From the question (and the model's draft of it) to a checked :class:`CaseFrame`.

Rules, in order of authority:

1. What the text states (agent/frame/text.py) wins: sizes with their units, nodule type, count,
   "screening" vs "incidental", status, age, smoking history, named categories, exclusions.
2. The model's draft fills in only what needs understanding (the intent of an unusual phrasing, the
   finding an image question asks about); a value the text does not support is dropped and recorded
   in ``corrections`` (a size the text does not contain, a perifissural morphology it does not name).
3. A follow-up turn ("and if she smoked?", "what if it were 9 mm?") starts from the previous frame and
   changes only what it states.
4. What a guideline needs and nobody said is ``missing`` (the answer asks for it); the usual reading
   of an unstated detail (a single nodule, a solid one, a baseline screen) is ``assumed`` and stated.
"""

from __future__ import annotations

import dataclasses
import re

from agent.frame.findings import asked_findings
from agent.frame.model import CaseFrame, FrameDraft
from agent.frame.text import TextFacts, read_text
from agent.routing import CREATIVE
from tools.vocabulary.clinical import PRIOR_STUDY
from tools.vocabulary.normalise import normalise

# a short turn that changes one parameter of the previous question
_FOLLOW_ON = re.compile(r"^\W*(?:(?:ok(?:ay)?|right|alright|got\s+it|thanks?|cool)\W+)?(?:and|but|so|then|also)\b|"
                        r"^\W*(?:ok(?:ay)?|right|alright)\W+(?:when|what|how|do|should|f/?u|follow|rescan|next)\b|"
                        r"^\W*(?:what(?:'s|\s+is|\s+are|\s+about)|how\s+(?:about|long|often|likely)|when|and)\b[^.?!]{0,30}\b(?:ppv|"
                        r"probability|risk|chance|likelihood|management|mgmt|interval|next|plan|f/?u|follow[- ]?up|"
                        r"rescan|biopsy|meaning|mean|malignan\w*)\b|"
                        r"^\W*(?:f/?u|follow[- ]?up|rescan|next\s+step|interval|when\s+(?:do|should)\s+we\s+"
                        r"(?:rescan|repeat|image|scan|follow))\b|^\W*(?:both|it|this|that)\s+(?:were|was|is)\b|^\W*(?:what|how)\s+(?:if|about)\b|^\W*(?:if|suppose|assuming|"
                        r"instead)\b|\binstead\b|^\W*(?:same|also)\b|^\W*(?:she|he|they|it|the\s+patient)\s+(?:is|"
                        r"was|has|had|smokes|smoked|quit)\b", re.I)
_SMALLTALK = re.compile(r"^\W*(hi|hello|hey|good\s+(?:morning|afternoon|evening)|thanks?|thx|ty|tks|thank\s+you|cheers|ok(?:ay)?|"
                        r"great|bye|goodbye|who\s+are\s+you|what\s+can\s+you\s+do|how\s+are\s+you)\b[\w\s,!.?']{0,40}$",
                        re.I)
_ABOUT_IMAGE = re.compile(r"\b(see|seen|show|shows|showing|look|looks|finding|findings|abnormal\w*|normal|image|x-?ray|"
                          r"radiograph|film|scan|study|slice|ultrasound|sonograph\w*|mammogra\w*|classif\w*|read|"
                          r"interpret\w*|what\s+kind|what\s+type|which\s+type|is\s+there|are\s+there|any\s+(?:sign|"
                          r"evidence)|signs?\s+of|tumou?r|enlarged|pneumo\w*|effusion|fracture|mass|lesion|opacit\w*|"
                          r"consolidat\w*|cardiomegal\w*|heart)\b", re.I)
# the vocabulary's prior-study question, and the reader's wider forms ("this patient's", "was reported")
_PRIOR = re.compile(PRIOR_STUDY.pattern + "|"
                    r"\b(prior|previous|earlier|last|old|baseline|before|history|first|latest|recent)\b.*\b(report|"
                    r"study|studies|ct|scan|imaging|exam\w*|x-?ray|radiograph|ultrasound|mammogra\w*|mri)\b|"
                    r"\b(compar\w*|change[ds]?|interval|progress\w*|since\s+(?:the\s+)?last|resolv\w*|stable|grown)\b|"
                    r"\bprior\s+reports?\b|\b(?:this|the|my|our)\s+patient(?:'s)?\b|\b(?:her|his)\s+(?:last|latest|"
                    r"previous|prior|current)\b|\bwas\s+(?:assigned|reported|found|seen)\b|\b(?:latest|most\s+recent|"
                    r"initial|first|previous|prior|earlier)\b", re.I)
_BARE_CATEGORY = re.compile(r"(?:^|\b(?:a|an|category|about|and|or|if|instead)\s+)([0-6][ABCXabcx]?)\b(?!\s*(?:mm|cm|%|"
                            r"years?|months?|pack))", re.I)
# words that make a short "ok ..." or "thanks, ..." a question, not small talk
_CONTENT = re.compile(r"\b(?:when|what|which|how\s+(?:long|often|about)|why|should|do\s+we|does|f/?u|follow[- ]?up|"
                      r"rescan|re-?image|repeat|scan|CT|next|interval|plan|risk|nodule|mm|cm|smok\w*|pack\w*|"
                      r"categor\w*|screen\w*|eligib\w*|biopsy|manage\w*|and\s+(?:if|now|then))\b|\?\s*$", re.I)
_ABOUT_ME = re.compile(r"\b(?:who\s+are\s+you|what\s+can\s+you\s+do|how\s+are\s+you)\b", re.I)
_MANAGEMENT = re.compile(r"\bfollow[- ]?(?:up|it|this)\b|\bmanage\w*|\bnext\s+step|\bwhat\s+(?:now|next)\b|"
                         r"\b(?:how|when)\s+(?:do|should)\s+we\b|\bsurveillance\b|\binterval\b|\brecommend\w*|"
                         r"\brepeat\s+(?:CT|scan|imaging)|\bplan\b", re.I)



def is_smalltalk(question: str) -> bool:
    """A greeting, thanks or a question about the assistant itself: no frame and no tools. "ok and when do
    we rescan?" is a follow-up, not thanks."""
    question = question or ""
    if not _SMALLTALK.search(question):
        return False
    if _ABOUT_ME.search(question):
        return True
    rest = re.sub(r"^\W*\w+", "", question)  # the words after the greeting
    return not _CONTENT.search(normalise(rest)) or bool(re.fullmatch(r"\W*(?:thanks?|thx|thank\s+you|ok(?:ay)?|great|"
                                                                    r"cheers)\W*[?!.]*\s*", question, re.I))


def is_follow_on(question: str, facts: TextFacts) -> bool:
    """A turn that changes a parameter of the previous question rather than asking a new one."""
    short = len(question) < 90
    new_case = bool(facts.sizes_mm and facts.mentions_nodule) or facts.lung_rads or facts.birads
    states_detail = (facts.smoking is not None or facts.risk is not None or facts.nodule_type is not None
                     or facts.pack_years is not None or facts.years_since_quit is not None
                     or facts.solid_component_mm is not None or facts.setting is not None or facts.known_cancer
                     or facts.immunocompromised or bool(facts.risk_factors) or facts.status is not None
                     or (facts.age is not None and not facts.eligibility))
    return short and (bool(_FOLLOW_ON.search(question)) or (not new_case and not facts.mentions_nodule
                                                           and not facts.sizes_mm and states_detail)
                      or (not new_case and facts.solid_component_mm is not None))


def _pick_size(facts: TextFacts, question: str) -> float | None:
    """The nodule size to use: the one said to be current, else the largest of several nodules, else the first."""
    if not facts.sizes_mm:
        return None
    question = normalise(question)
    if facts.prior_size_mm is not None:  # "previously 5 mm, now 7 mm": the current one
        current = [s for s in facts.sizes_mm if abs(s - facts.prior_size_mm) > 0.05]
        if current:
            return current[-1]
        if len(facts.sizes_mm) == 1:
            return None  # "was 5 mm" alone: the earlier size, not the nodule's size now
    now = re.search(r"\b(?:now|currently|today|grown\s+to|increased\s+to|measures?|measuring)\b[^.?!]{0,20}?"
                    r"(\d+(?:[.,]\d+)?)\s*(mm|cm)", question, re.I)
    if now:
        value = float(now.group(1).replace(",", ".")) * (10 if now.group(2).lower() == "cm" else 1)
        if any(abs(value - s) < 0.05 for s in facts.sizes_mm):
            return value
    if facts.count == "multiple":
        return max(facts.sizes_mm)
    return facts.sizes_mm[0]


def _risk(facts: TextFacts) -> tuple[str | None, str | None]:
    """(risk, why) from the patient's whole history as the text states it; (None, why) when it does not say
    enough or when the patient and the nodule pull both ways (a never smoker with a spiculated upper-lobe
    nodule: both Fleischner columns are shown, with why); (None, None) when nothing is said."""
    if facts.risk:
        return facts.risk, f"stated {facts.risk} risk"
    features = list(dict.fromkeys(facts.nodule_features))
    high: list[str] = []
    if facts.pack_years is not None and facts.smoking != "never" and (facts.pack_years >= 10 or facts.heavy_smoker):
        high.append(f"smoking history of {facts.pack_years:g} pack-years")
    elif facts.heavy_smoker:
        high.append("heavy smoking history")
    elif facts.smoking == "current" and facts.pack_years is None:
        high.append("current smoker")
    high += facts.risk_factors
    if high:
        return "high", ", ".join(dict.fromkeys(high + features))
    low = None
    if facts.pack_years is not None and facts.smoking != "never":
        low = f"minimal smoking history ({facts.pack_years:g} pack-years)"
    elif facts.smoking == "never":
        low = "never smoker, no other risk factor stated"
    if low and features:
        return None, (f"the patient's history favours low risk ({low.replace(', no other risk factor stated', '')}), "
                      f"but the nodule's {' and '.join(features)} may raise it")
    if low:
        return "low", low
    if features:
        return None, f"the nodule's {' and '.join(features)} may raise risk; the patient's history is not stated"
    return None, None


def _intent(facts: TextFacts, draft: FrameDraft | None, question: str, has_image: bool, has_patient: bool) -> str:
    if is_smalltalk(question):
        return "smalltalk"
    if CREATIVE.search(question):
        return "out_of_scope"  # a poem or a story: nothing to retrieve, nothing to cite
    if facts.eligibility and (facts.mentions_lung or facts.mentions_breast or facts.smoking or facts.pack_years
                              or _USPSTF.search(question)) and not (facts.sizes_mm and facts.mentions_nodule):
        return "screening"
    # "70M, 40 PY, LCS?": a screening question about a patient, no finding
    if facts.setting == "screening" and not facts.sizes_mm and not facts.mentions_nodule and not facts.no_nodule \
            and not (facts.lung_rads or facts.birads) and (facts.pack_years is not None or facts.smoking) \
            and question.rstrip().endswith("?"):
        return "screening"
    # "76F screening mammo?", "42F, mammo now or wait?": a mammogram for a woman of a stated age, with no
    # finding and no category
    if facts.mentions_breast and facts.age is not None and not facts.birads and not facts.sizes_mm \
            and not facts.mentions_nodule and not _BREAST_FINDING.search(question) \
            and (facts.setting == "screening" or (facts.sex == "female" and question.rstrip().endswith("?"))):
        return "screening"
    if has_image and not facts.sizes_mm and (_ABOUT_IMAGE.search(question) or asked_findings(question).findings):
        return "image"
    if has_patient and _PRIOR.search(question) and not facts.sizes_mm:
        return "prior"
    if facts.sizes_mm and (facts.mentions_nodule or facts.nodule_type or facts.prior_size_mm is not None
                           or (facts.setting == "screening" and not facts.mentions_breast)):
        return "followup"  # "LDCT: 4 -> 7 mm" names no nodule, and is one
    if facts.no_nodule and facts.setting == "screening":
        return "followup"
    if (facts.lung_rads or facts.birads) and not facts.sizes_mm:
        return "category"
    if facts.mentions_nodule and _MANAGEMENT.search(question):
        return "followup"  # a nodule's management without its size: the answer asks for it
    if facts.mentions_breast and _BREAST_FINDING.search(question) and not facts.eligibility:
        return "followup"  # a breast finding without its category: BI-RADS, and the category is asked
    if draft is not None and _draft_intent_fits(draft.intent, facts, question, has_image, has_patient):
        return draft.intent
    return "knowledge"


def _draft_intent_fits(intent: str, facts: TextFacts, question: str, has_image: bool, has_patient: bool) -> bool:
    """The model's intent stands only where the text could support it (a category needs a category named)."""
    if intent == "category":
        return bool(facts.lung_rads or facts.birads)
    if intent == "followup":
        return bool(facts.mentions_nodule or facts.sizes_mm or facts.no_nodule)
    if intent == "screening":
        return bool(facts.eligibility or (facts.setting == "screening" and (facts.age or facts.smoking)))
    if intent == "image":
        return has_image
    if intent == "prior":
        return has_patient
    # the rules own small talk (is_smalltalk): a model's "smalltalk" for "why is LDCT used ...?" is wrong
    return intent != "smalltalk"


def draft_could_reframe(question: str, has_image: bool, has_patient: bool) -> bool:
    """Whether a model's draft could turn a general reading of ``question`` into a guideline, image or
    prior-report one (the intents :func:`_draft_intent_fits` lets a draft set only where the text supports them)."""
    facts = read_text(question)
    return any(_draft_intent_fits(intent, facts, question, has_image, has_patient)
               for intent in ("category", "followup", "screening", "image", "prior"))


_BREAST_FINDING = re.compile(r"\b(?:mass|calc\w*|lesion|asymmetr\w*|distortion|cyst\w*|lump|nodul\w*|finding|"
                             r"density|densities|abnormal\w*|recall\w*|callback|biops\w*|bx)\b", re.I)
_USPSTF = re.compile(r"\bUSPSTF\b|\bTask\s+Force\b", re.I)


def _system(frame: CaseFrame, facts: TextFacts, draft: FrameDraft | None) -> str:
    if frame.intent == "screening":
        breast = facts.mentions_breast or (frame.sex == "female" and not facts.mentions_lung and not facts.smoking
                                           and facts.pack_years is None)
        return "uspstf_breast" if breast else "uspstf_lung"
    if frame.intent == "category":
        if facts.birads or (facts.mentions_breast and not facts.lung_rads):
            return "birads"
        if facts.lung_rads or facts.mentions_lung:
            return "lung_rads"
        return draft.system if draft is not None and draft.system in ("birads", "lung_rads") else "none"
    if frame.intent != "followup":
        return "none"
    if facts.birads or (facts.mentions_breast and not facts.lung_rads):
        return "birads"  # a breast finding: BI-RADS, never a lung rule (its category is asked when not named)
    if frame.organ is not None:
        return "none"  # a nodule outside the lung: the bundled nodule guidelines do not apply
    return "lung_rads" if frame.setting == "screening" else "fleischner"


def _setting(facts: TextFacts, frame: CaseFrame) -> None:
    if facts.setting:
        frame.setting = facts.setting
        return
    eligible_profile = (frame.age is not None and 50 <= frame.age <= 80
                        and ((frame.pack_years or 0) >= 20 or facts.heavy_smoker)
                        and not (frame.smoking == "former" and (frame.quit_years or 0) >= 15))
    if eligible_profile:
        frame.missing.append("setting")  # screening or incidental: both are plausible for this patient
    else:
        frame.setting = "incidental"
        frame.assumed.append("an incidental finding (no screening CT mentioned)")


def _take_text(frame: CaseFrame, facts: TextFacts, question: str) -> None:
    """Every value the text states overrides the frame (the previous turn's or the empty one)."""
    size = _pick_size(facts, question)
    if size is not None:
        frame.size_mm = size
        frame.no_nodule = False
    if facts.no_nodule:
        frame.no_nodule, frame.size_mm = True, None
    if facts.nodule_type and not (facts.nodule_type == "subsolid" and frame.nodule_type in ("part_solid",
                                                                                           "ground_glass")):
        frame.nodule_type = facts.nodule_type
    if facts.solid_component_mm is not None:
        frame.solid_mm = facts.solid_component_mm
    if facts.stable_months is not None:
        frame.stable_months = facts.stable_months
    if facts.follow_up_screen:
        frame.follow_up_screen = True
    for name in ("count", "status", "age", "pack_years", "smoking", "sex"):
        value = getattr(facts, name)
        if value is not None:
            setattr(frame, name, value)
    if facts.years_since_quit is not None:
        frame.quit_years = facts.years_since_quit
    if facts.lung_rads or facts.birads:
        frame.category = facts.lung_rads or facts.birads
    for flag in ("known_cancer", "immunocompromised", "calcified", "typical_perifissural", "radiograph_only"):
        if getattr(facts, flag):
            setattr(frame, flag, True)
    if facts.other_organ and facts.mentions_nodule and not facts.mentions_lung:
        frame.organ = facts.other_organ
    frame.notes += facts.notes


def _check_draft(frame: CaseFrame, draft: FrameDraft, facts: TextFacts, question: str) -> None:
    """Record where the model's draft disagrees with the text (the text's value is the one kept)."""
    if draft.size_mm is not None and frame.size_mm is not None and abs(draft.size_mm - frame.size_mm) > 0.05:
        frame.corrections.append(f"size_mm: {draft.size_mm:g} -> {frame.size_mm:g} (as the text states)")
    elif draft.size_mm is not None and frame.size_mm is None:
        frame.corrections.append(f"size_mm: {draft.size_mm:g} dropped (no size in the text)")
    for name in ("nodule_type", "count", "setting", "status", "smoking"):
        said, kept = getattr(draft, name), getattr(frame, name)
        if said is not None and kept is not None and said != kept:
            frame.corrections.append(f"{name}: {said} -> {kept} (as the text states)")
    if draft.risk is not None and draft.risk != frame.risk:
        kept = frame.risk or "not stated"
        frame.corrections.append(f"risk: {draft.risk} -> {kept} (risk is read from what the text says)")
    if draft.age is not None and frame.age is None and str(draft.age) not in question:
        frame.corrections.append(f"age: {draft.age} dropped (not in the text)")


def _take_measurements(frame: CaseFrame, measurements: list[dict]) -> None:
    """Lengths marked on the viewer: the size is the average of the long and short axes where both are given
    (as Fleischner and Lung-RADS measure), the type and the solid component as marked."""
    by_label: dict[str, float] = {}
    for m in measurements:
        label = str(m.get("label") or "long axis").lower()
        key = "solid" if "solid" in label else "short" if "short" in label else "long"
        by_label.setdefault(key, float(m["length_mm"]))
        if m.get("nodule_type") and frame.nodule_type is None:
            frame.nodule_type = m["nodule_type"]
        frame.notes += [w for w in m.get("warnings", []) if w not in frame.notes]
    if "long" in by_label and "short" in by_label:
        frame.size_mm = round((by_label["long"] + by_label["short"]) / 2, 1)
        frame.notes.append(f"measured long axis {by_label['long']:g} mm and short axis {by_label['short']:g} mm: "
                           f"average {frame.size_mm:g} mm")
    elif "long" in by_label or "short" in by_label:
        frame.size_mm = by_label.get("long", by_label.get("short"))
        frame.notes.append(f"measured {frame.size_mm:g} mm (one axis)")
    if "solid" in by_label:
        frame.solid_mm = by_label["solid"]
    if any(m.get("warnings") for m in measurements) and frame.intent == "followup":
        frame.radiograph_only = True  # a projection: no true size, and the nodule tables need CT
    frame.no_nodule = False


def _other_system(previous: CaseFrame, facts: TextFacts) -> bool:
    """The turn names a category of another organ's system ("and what does BI-RADS 4 mean?" after a lung
    nodule): a new question, not a change to the previous one."""
    breast = previous.system in ("birads", "uspstf_breast")
    breast_finding = facts.mentions_breast and not facts.known_cancer and bool(facts.sizes_mm or facts.eligibility)
    return bool((facts.birads or breast_finding) and not breast and previous.system != "none") \
        or bool(facts.lung_rads and breast)


def _answers_pending(previous: CaseFrame, facts: TextFacts, question: str) -> bool:
    """A short reply that gives what the previous answer asked for ("pure GGN" to "ground-glass or
    part-solid?", "solid bit ~4 mm" to "how large is the solid component?")."""
    new_size = [mm for mm in facts.sizes_mm if facts.prior_size_mm is None or abs(mm - facts.prior_size_mm) > 0.05]
    if len(question) > 60 or not previous.missing or (new_size and "size" not in previous.missing):
        return False
    gives = {"nodule type": facts.nodule_type in ("ground_glass", "part_solid"),
             "solid component size": facts.solid_component_mm is not None, "size": bool(facts.sizes_mm),
             "risk": bool(facts.risk or facts.smoking or facts.pack_years is not None or facts.risk_factors),
             "setting": facts.setting is not None, "age": facts.age is not None,
             "smoking history": facts.smoking is not None, "pack-years": facts.pack_years is not None,
             "years since quitting": facts.years_since_quit is not None,
             "BI-RADS category": facts.birads is not None, "status": facts.status is not None,
             "prior category": facts.lung_rads is not None}
    return any(gives.get(m) for m in previous.missing)


def read_case(question: str, draft: FrameDraft | None, previous: CaseFrame | None = None, *,
              has_image: bool = False, has_patient: bool = False, measurements: list[dict] | None = None) -> CaseFrame:
    """The checked frame of ``question`` (see the module docstring for the rules); ``measurements`` are the
    facts of the lengths marked on the viewer for this turn."""
    facts = read_text(question)
    new_risk = False
    follow_on = previous is not None and previous.intent in ("followup", "category", "screening") \
        and (is_follow_on(question, facts) or _answers_pending(previous, facts, question)) \
        and not _other_system(previous, facts)
    if follow_on and previous is not None:
        frame = dataclasses.replace(previous, missing=[], assumed=[], corrections=[], notes=[], source="previous")
        bare = _BARE_CATEGORY.search(question)
        if bare and previous.system in ("birads", "lung_rads") and not (facts.lung_rads or facts.birads):
            frame.category = bare.group(1).upper()  # "what about a 4A instead?"
        new_risk = bool(facts.smoking or facts.pack_years is not None or facts.risk or facts.risk_factors
                        or facts.nodule_features)
        if new_risk:
            frame.risk = frame.risk_basis = None  # new risk information: read the risk again
    else:
        frame = CaseFrame(source="model" if draft is not None else "text")
        frame.intent = _intent(facts, draft, question, has_image, has_patient)
        if draft is not None and frame.intent == "image":
            frame.finding = draft.finding
    _take_text(frame, facts, question)
    if measurements:
        if frame.intent in ("knowledge", "image") and _MANAGEMENT.search(question):
            frame.intent = "followup"  # "what follow-up?" about a measured nodule
        _take_measurements(frame, measurements)
    lung_nodule = frame.intent == "followup" and not facts.mentions_breast and not facts.birads and frame.organ is None
    if lung_nodule and frame.setting is None:
        _setting(facts, frame)
    elif facts.setting:
        frame.setting = facts.setting
    keep_risk = follow_on and frame.risk_basis is not None and not new_risk  # "ok and when do we rescan?"
    if frame.risk is None and not keep_risk:
        risk, why = _risk(dataclasses.replace(facts, smoking=frame.smoking, pack_years=frame.pack_years))
        frame.risk, frame.risk_basis = risk, why
    frame.system = _system(frame, facts, draft) if not follow_on else frame.system
    if follow_on and facts.setting:  # "and if it was on a screening CT?"
        frame.system = "lung_rads" if facts.setting == "screening" else "fleischner"
    if frame.system == "birads" and facts.birads:  # both systems named: each keeps its own category
        frame.category = facts.birads
    elif frame.system == "lung_rads" and facts.lung_rads:
        frame.category = facts.lung_rads
    if draft is not None:
        _check_draft(frame, draft, facts, question)
    _defaults_and_missing(frame)
    return frame


def _screening_decided(frame: CaseFrame) -> bool:
    """One stated criterion already rules lung screening out (USPSTF 2021): the rest need not be asked."""
    return ((frame.age is not None and not 50 <= frame.age <= 80) or frame.smoking == "never"
            or (frame.pack_years is not None and frame.pack_years < 20)
            or (frame.smoking == "former" and (frame.quit_years or 0) >= 15))


def _defaults_and_missing(frame: CaseFrame) -> None:
    """The usual reading of unstated details (stated in the answer) and what must be asked."""
    meaning_only = frame.intent == "category" and frame.category is not None and frame.size_mm is None
    if frame.system in ("fleischner", "lung_rads") and not frame.no_nodule and not meaning_only:
        if frame.size_mm is None:
            frame.missing.append("size")
        if frame.nodule_type == "subsolid":  # never assumed solid: pure ground-glass or part-solid is asked
            frame.missing.append("nodule type")
        elif frame.nodule_type is None:
            frame.nodule_type = "solid"
            frame.assumed.append("a solid nodule (type not stated)")
        if frame.count is None:
            frame.count = "single"
        small = frame.size_mm is not None and frame.size_mm < 5.5 and frame.status in (None, "baseline", "new")
        if frame.nodule_type == "part_solid" and frame.solid_mm is None and not small:
            frame.missing.append("solid component size")  # under 6 mm the tables do not need it
    # Fleischner does not apply (cancer, immunosuppression, under 35) or needs no risk (a typical perifissural
    # nodule): no risk to ask
    excluded = frame.known_cancer or frame.immunocompromised or (frame.age is not None and frame.age < 35) \
        or frame.typical_perifissural
    if frame.system == "fleischner" and frame.nodule_type == "solid" and frame.risk is None and not excluded \
            and (frame.size_mm is None or frame.size_mm < 8.5):
        frame.missing.append("risk")
    if frame.system == "lung_rads" and frame.status is None and not frame.no_nodule and not meaning_only:
        if frame.follow_up_screen:  # a later screen that does not say how the nodule changed: asked
            frame.missing.append("status")
        else:
            frame.status = "baseline"
            frame.assumed.append("the baseline screen (no prior screen mentioned)")
    if frame.system in ("uspstf_lung", "uspstf_breast"):
        # nothing about a patient: the question is who is eligible, answered with the criteria
        frame.criteria = all(v is None for v in (frame.age, frame.smoking, frame.pack_years, frame.quit_years))
    if frame.system == "uspstf_lung" and not frame.criteria and not _screening_decided(frame):
        for need, value in (("age", frame.age), ("smoking history", frame.smoking)):
            if value is None:
                frame.missing.append(need)
        if frame.smoking in ("current", "former") and frame.pack_years is None:
            frame.missing.append("pack-years")
        if frame.smoking == "former" and frame.quit_years is None:
            frame.missing.append("years since quitting")
    if frame.system == "uspstf_breast" and frame.age is None and not frame.criteria:
        frame.missing.append("age")
    if frame.system == "birads" and frame.category is None:
        frame.missing.append("BI-RADS category")
