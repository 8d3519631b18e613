"""What the words of a question state, read deterministically: sizes (units normalised to mm), nodule type,
count, setting, status, age, smoking history, risk factors, categories, exclusions and negations.

These readings check the LLM's case frame against the text (agent/frame/reader.py): a number the text
does not contain, a type it does not name or a setting it contradicts is corrected or dropped. Every
value here comes from a phrase in the text; nothing is guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tools.vocabulary.clinical import (
    BREAST_EXAMS,
    CANCER_ACRONYMS,
    CANCER_ACRONYMS_CAPITALS,
    CANCER_TYPES,
    CHEMOTHERAPY,
    ELIGIBILITY,
    GROUND_GLASS_WORDS,
    IMMUNE_DISEASES,
    IMMUNOSUPPRESSANTS,
    INCIDENTAL_EXAMS,
    NODULE_RISK_FEATURES,
    PART_SOLID_WORDS,
    PATIENT_RISK_FACTORS,
    SCREENING_EXAMS,
    SOLID_PART_NOUNS,
    SUBSOLID_WORDS,
    TRANSPLANTS,
    alternation,
)
from tools.vocabulary.normalise import normalise

_NUM = r"(\d+(?:[.,]\d+)?)"
_UNIT = r"(mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?)"
# "8 x 6 mm", "8x6mm", "1.2 x 0.9 cm", "8 by 6 mm"
_AXES = re.compile(rf"{_NUM}\s*(?:{_UNIT})?\s*(?:x|×|by)\s*{_NUM}\s*{_UNIT}\b", re.I)
_SIZE = re.compile(rf"(?<![\w.]){_NUM}\s*-?\s*{_UNIT}(?![\w])", re.I)
_PART_NOUN = alternation(SOLID_PART_NOUNS)
_SOLID_PART = re.compile(rf"\bsolid\s+(?:{_PART_NOUN})s?\b\s*(?:of|measuring|measures|is|=|:|which\s+is|that\s+is)?\s*"
                         rf"(?:about\s+|approximately\s+|roughly\s+|~\s*)?{_NUM}\s*{_UNIT}|{_NUM}\s*-?\s*{_UNIT}\s+"
                         rf"solid\s+(?:{_PART_NOUN})\b|\b(?:with|w/)\s+(?:an?\s+)?(?:about\s+)?{_NUM}\s*{_UNIT}\s+solid\b"
                         rf"(?!\s+(?:nodule|lesion|mass|opacit|SSN|component|portion|part|bit|core))", re.I)
_NO_SOLID_PART = re.compile(rf"\b(?:no|without)\s+(?:a\s+|any\s+)?solid\s+(?:{_PART_NOUN})", re.I)

_GROUND_GLASS = re.compile(rf"\b(?:pure\s+)?(?:{alternation(GROUND_GLASS_WORDS)})s?\b|\b(?:pure\s+)?GG\b", re.I)
_PART_SOLID = re.compile(rf"\b(?:{alternation(PART_SOLID_WORDS)})s?\b|\bmixed\b|"
                         rf"\b(?:{alternation(SUBSOLID_WORDS)})\b[^.?!]*\bsolid\s+(?:component|portion|part)", re.I)
_SUBSOLID = re.compile(rf"\b(?:{alternation(SUBSOLID_WORDS)})\b", re.I)
_SOLID = re.compile(r"\bpart[- ]?solid\b|\bpartly[- ]solid\b|\bsemi[- ]?solid\b|\bmixed(?:[- ]density)?\b|"
                         r"\bPSN\b|\bsub-?solid\b[^.?!]*\bsolid\s+(?:component|portion|part)", re.I)
_SUBSOLID = re.compile(r"\bsub-?solid\b", re.I)
_SOLID = re.compile(r"(?<![-\w])solid\b|\bSSNs?\b", re.I)
_NOT_SOLID_CONTEXT = re.compile(rf"\b(part|partly|semi|non|sub)[- ]?solid\b|\bsolid\s+(?:{_PART_NOUN})\b", re.I)

_PLURAL = re.compile(r"\bnodules\b|\bGGNs\b|\bGGOs\b|\bSSNs\b", re.I)
_MULTIPLE = re.compile(r"\blargest\b|\bmultiple\b|\bseveral\b|\bnumerous\b|\b(two|three|four|five|2|3|4|5)\s+"
                       r"(?:\w+\s+){0,2}nodules\b|\bbilateral\s+nodul|\bmultifocal\b|\bfew\s+nodules\b", re.I)
_SINGLE = re.compile(r"\b(solitary|single|isolated|one|a|an)\s+(?:\w+[- ]?){0,4}nodule\b(?!s)|\bSPN\b", re.I)
_NO_NODULE = re.compile(r"\bno\s+(?:\w+\s+){0,3}nodules?\b|\bwithout\s+(?:any\s+)?(?:\w+\s+){0,2}nodules?\b|"
                        r"\bnodules?\s+(?:are|were)\s+(?:absent|not\s+seen)|\bnegative\s+(?:screen|scan|LDCT|CT)\b|"
                        r"\bnothing\s+(?:found|seen)\b|\bclear\s+lungs\b|\bno\s+(?:lung|pulmonary)\s+(?:findings|"
                        r"abnormalit)", re.I)

_SCREENING = re.compile(rf"\b(?:{alternation(SCREENING_EXAMS)})\b|\bscreening\b|\bLDCT\b|\blow[- ]dose\s+CT\b|\blung[- ]?RADS\b|\bannual\s+(?:CT|scan|LDCT)\b|"
                        r"\bscreen(?:ed)?\s+for\s+lung\b|\bLCS\b", re.I)
# a CT done for another reason ("CT chest for PE", "CT of the abdomen and pelvis for diverticulitis")
_FOR_REASON = (r"\b(?:CT|CTA|scan|imaging|study)\s+(?:\w+\s+){0,4}?(?:for|to\s+(?:evaluate|assess|rule\s+out|exclude)|"
               r"r/o|rule\s+out|done\s+for|ordered\s+for|because\s+of)\s+(?!(?:lung\s+cancer\s+)?screen|lung\s+cancer\b)"
               r"(?!a\s+(?:lung\s+)?nodule)(?!(?:the\s+)?nodule)(?!follow)(?!\d)"
               r"(?!(?:a|an|this|the|his|her|my|our)\s+(?:\d|\w+-year|patient|pt\b|man\b|woman\b|male|female|"
               r"smoker|former|current|heavy|high-risk|eligible))")
_INCIDENTAL = re.compile(rf"\b(?:{alternation(INCIDENTAL_EXAMS)})\b|{_FOR_REASON}|\bincidental(?:ly)?\b|\b(?:found|seen|noted|detected|discovered)\s+(?:on|at)\s+"
                         r"(?:a|an|her|his|the)?\s*(?:\w+\s+){0,3}(?:CT|CTA|CTPA|scan|angiogra\w*)\s+(?:for|of|done|"
                         r"performed|obtained)\b|\bCTPA\b|\bCT\s+(?:angiogra\w*|abdomen|of\s+the\s+abdomen|for\s+"
                         r"(?:trauma|PE|pulmonary\s+embol\w*|abdominal|chest\s+pain|cough|staging))|\btrauma\s+CT\b|"
                         r"\b(?:cardiac|coronary|abdominal|renal|spine)\s+CT\b|\bon\s+(?:a\s+)?(?:staging\s+)?"
                         r"(?:CT\s+)?(?:abdomen|abdominal)\b", re.I)
_NOT_SCREENING = re.compile(r"\bnot\s+(?:a\s+|on\s+(?:a\s+)?|from\s+(?:a\s+)?)?(?:lung\s+cancer\s+)?screening\b|"
                            r"\bnon-?screening\b", re.I)

_STATUS = (
    ("slowly_growing", re.compile(r"\bslow(?:ly)?[- ]grow\w*\b", re.I)),
    ("growing", re.compile(r"\bgr[eo]w(?:n|ing|th|s)?\b|\benlarg\w*\b|\bincreas\w*\s+in\s+size\b|\bbigger\b|"
                           r"\blarger\s+than\s+(?:before|previous|prior|last)", re.I)),
    ("new", re.compile(r"\bnew(?:ly)?\b(?!\s+(?:patient|question|case))|\bnot\s+(?:seen|present)\s+(?:on|at)\s+"
                       r"(?:the\s+)?(?:prior|previous|last)", re.I)),
    ("stable", re.compile(r"\bstable\b|\bunchanged\b|\bno\s+(?:interval\s+)?(?:change|growth)\b", re.I)),
    ("baseline", re.compile(r"\bbaseline\b|\bfirst\s+(?:screening|LDCT|scan|CT)\b|\binitial\s+(?:screening|LDCT|"
                            r"scan|CT)\b|\bno\s+prior\b", re.I)),
)

_SEX = re.compile(r"\b(female|woman|lady|she|her|male|man|gentleman|he|his)\b", re.I)
_AGE = re.compile(r"\b(\d{1,3})\s*[- ]?(?:years?|yrs?|y)[- ]?(?:old|o)\b|\baged?\s+(\d{1,3})\b|\b(\d{1,3})\s*(?:yo|y/o|"
                  r"y\.o\.)\b|\b(\d{2})\s*(?:M|F|m|f)\b(?!\w)|\bage\s*(?:of\s*|:\s*)?(\d{1,3})\b|\bin\s+(?:her|his)\s+"
                  r"(\d)0s\b|(?:^|,\s*|\b(?:smoker|woman|man|male|female|patient)\s*,\s*)([1-9]\d)(?=\s*(?:,|;|\.\s|$))|"
                  r"\b(?:he|she|patient|pt)\s*(?:'s|is)\s+([1-9]\d)\b(?!\s*(?:mm|cm|%|pack|years\s+ago|x))",
                  re.I)
_PACK_YEARS = re.compile(rf"{_NUM}\s*[- ]?(?:pack[- ]?years?|pack[- ]?yrs?|pk[- ]?yrs?|PY)\b|"
                         rf"{_NUM}\s*[- ]?pack[- ]year\b", re.I)
_PPD = re.compile(r"(?P<n>\d+(?:[.,]\d+)?|one|two|three|half\s+a|a)\s+packs?\s*(?:a|per|/)\s*day\s*[,;]?\s*(?:for\s+|"
                  r"over\s+|x\s*)?(?:about\s+|the\s+(?:last|past)\s+)?(?P<y>\d+(?:[.,]\d+)?)\s*(?:years?|yrs?)"
                  r"(?![\s-]*(?:old|ago))", re.I)
_QUIT = re.compile(rf"\b(?:quit|stopped|gave\s+up|ceased)\s+(?:smoking\s+)?(?:about\s+)?{_NUM}\s*(?:years?|yrs?)\s+"
                   rf"(?:ago|back|prior|previously)|\b(?:quit|stopped)\s+(?:smoking\s+)?(?:about\s+)?{_NUM}\s*years?\b"
                   rf"(?!\s+(?:of|smok|after))|"
                   rf"\b(?:quit|stopped)\s+(?:smoking\s+)?{_NUM}\s*(?:years?|yrs?)\s+ago|\bex-?smoker\s+(?:for|of)\s+"
                   rf"{_NUM}\s*(?:years?|yrs?)|\b(?:former|ex-?)\s*smoker[^.?!]{{0,30}}?\bquit\s+{_NUM}\s*(?:years?|yrs?)",
                   re.I)
_NEVER = re.compile(r"\bdenies\s+(?:any\s+)?(?:tobacco|smoking|cigarette\w*)|\bno\s+(?:history\s+of\s+)?tobacco\b|"
                    r"\bnever\s+used\s+tobacco|\btobacco\s*(?::|-)\s*(?:never|none)\b|\bnever[- ]smok\w*|\bnon-?smok\w*|\bnever\s+(?:been\s+a\s+)?smok\w*|\bno\s+(?:history\s+of\s+)?"
                    r"smoking(?:\s+history)?\b|\bdoes\s*(?:n't|\s+not)\s+smoke\b|\blifelong\s+non", re.I)
_FORMER = re.compile(r"\bex-?smoker\b|\bformer(?:ly)?\s+(?:\w+\s+)?smok\w*|\bquit\s+(?:smoking|\d)|\bstopped\s+smoking\b|"
                     r"\bused\s+to\s+smoke\b|\bgave\s+up\s+smoking\b", re.I)
_CURRENT = re.compile(r"\bcurrent(?:ly)?\s+(?:\w+\s+)?smok\w*|\bactive\s+smoker\b|\bstill\s+smokes\b|\bsmokes\b|"
                      r"\bsmoker\b|\bsmoking\b|\bsmoked\b", re.I)
_HEAVY = re.compile(r"\bheavy\s+(?:\w+\s+)?smok\w*|\blong[- ]?(?:time|standing|term)\s+smok\w*|\bchain[- ]smok\w*|"
                    r"\bsmoked\s+(?:for\s+)?(?:decades|\d{2}\s+years)", re.I)

_RISK_EXPLICIT = re.compile(r"\b(low|high|average|intermediate)[- ]risk\b|\brisk\s+(?:is\s+|category\s+)?(low|high)\b",
                            re.I)
# the patient's own risk factors decide the risk; a nodule's features only "may raise" it (Fleischner 2017)
_RISK_FACTORS = tuple((name, re.compile(p, re.I)) for name, p in PATIENT_RISK_FACTORS.items())
_NODULE_FEATURES = tuple((name, re.compile(p, re.I)) for name, p in NODULE_RISK_FEATURES.items())
_NEGATED_FACTOR = re.compile(r"\b(?:no|not|without|non-?)\s+(?:\w+\s+){0,2}$", re.I)

_LUNG_RADS = re.compile(r"\blung[- ]?rads\s*(?:v?20\d\d\s*)?(?:category\s*)?(0|1|2|3|4\s*[ABXabx]|4)S?\b|"
                        r"\blung[- ]?rads\s+(?:modifier\s+)?((?-i:S))\b|\b((?-i:S))\s+modifier\b|\bmodifier\s+((?-i:S))\b|"
                        r"\bLR\s*-?\s*(0|1|2|3|4[ABXabx])\b", re.I)
_BIRADS = re.compile(r"\bbi[- ]?rads\s*(?:category\s*)?(0|1|2|3|4\s*[ABCabc]?|5|6)\b", re.I)
# a category named without its system ("category 2 on a screening mammogram", "4X on a lung screening
# report"): the system comes from the context, or from the category itself (4C, 5, 6: BI-RADS; 4X: Lung-RADS)
_BARE_CATEGORY = re.compile(r"\bcategory\s+(0|1|2|3|4[ABCXabcx]?|5|6)\b|(?<![\w.-])(4[ABCXabcx])\b(?!\s*(?:mm|cm))", re.I)

# the patient's own cancer: a cancer type ("resected stage III melanoma"), or a cancer word with a history
# cue ("history of breast cancer", "s/p lobectomy for adenocarcinoma"); never a family member's, a screening
# programme's ("lung cancer screening") or a risk ("risk of malignancy")
_CANCER_TYPE = re.compile(rf"\b(?:{alternation(CANCER_TYPES + CANCER_ACRONYMS)})s?\b|"
                          rf"(?-i:\b(?:{'|'.join(CANCER_ACRONYMS_CAPITALS)})\b)", re.I)
_CANCER = re.compile(r"\b(?:known|history\s+of|prior|previous|treated|resected|metastatic|active|current|recurrent|remote|"
                     r"stage\s+(?:[0-4]|I{1,3}V?|IV)[ABCabc]?|survivor\s+of|status\s+post|diagnosed\s+with|in\s+remission"
                     r"|(?:has|had|with)\s+(?:a\s+)?(?:treated\s+|resected\s+)?)\s+(?:\w+\s+){0,3}?(?:cancer|carcinoma|"
                     r"malignan\w*|neoplasm|tumou?r)|\b\w+\s+cancer\s+survivor|\bmetastas[ie]s\b|\bmetastatic\b|"
                     r"\boncology\s+patient\b|\bon\s+chemo\w*|\bundergoing\s+chemo\w*|\bstaging\s+CT\b|\bprimary\s+"
                     r"(?:tumou?r|cancer)\b|\b(?:mastectomy|lobectomy|colectomy|nephrectomy|prostatectomy|"
                     r"lumpectomy|resection)\s+for\b|\b(?:breast|colon|colorectal|rectal|lung|renal|kidney|"
                     r"prostate|thyroid|ovarian|pancreatic|bladder|esophageal|gastric|head\s+and\s+neck|skin|"
                     r"testicular|cervical|uterine|endometrial)\s+(?:cancer|carcinoma)\b(?!\s+screen)(?!\s+risk)",
                     re.I)
_NO_CANCER = re.compile(r"\bno\s+(?:known\s+|personal\s+|history\s+of\s+|prior\s+|hx\s+of\s+)?(?:history\s+of\s+)?"
                        r"(?:cancer|malignan\w*)", re.I)
_NOT_OWN_CANCER = re.compile(r"\b(?:family|father|mother|brother|sister|sibling|parent|dad|mom|mum|aunt|uncle|"
                             r"grand\w+)\b[^.;]{0,40}$|\b(?:no|denies|without|negative\s+for|rule\s+out|"
                             r"r/o|risk\s+of|concern\s+for|suspicious\s+for|probability\s+of|likelihood\s+of)\s+"
                             r"(?:\w+\s+){0,3}$", re.I)
_IMMUNO = re.compile(rf"\bimmuno(?:compromis|suppress|deficien)\w*|\b(?:{alternation(IMMUNOSUPPRESSANTS)})\b|"
                     rf"\b(?:{alternation(TRANSPLANTS)})\w*|\b(?:{alternation(IMMUNE_DISEASES)})\b|"
                     rf"\b(?:{alternation(CHEMOTHERAPY)})\b", re.I)
_NO_IMMUNO = re.compile(r"\b(?:not|no|never|denies)\s+(?:\w+\s+)?immuno(?:compromis|suppress)\w*|\bimmunocompetent\b|"
                        r"\bHIV[\s-]*(?:neg\w*|-(?!\w))|\bno\s+(?:history\s+of\s+)?(?:HIV|transplant|chemo\w*)\b", re.I)
_CALCIFIED = re.compile(r"(?<!non-)(?<!non )\b(?:calcified|calcification|benign\s+calcif\w*|fat[- ]containing|"
                        r"contains\s+fat|hamartoma|granuloma)\b", re.I)
_NON_CALCIFIED = re.compile(r"\bnon-?\s*calcified\b|\bwithout\s+calcification\b|\bno\s+calcification\b", re.I)
_PERIFISSURAL = re.compile(r"\bperi-?fissural\b|\bjuxta-?fissural\b|\bintrapulmonary\s+lymph\s+node\b|\bfissural\s+"
                           r"nodule\b", re.I)
_TYPICAL_PFN = re.compile(r"\b(?:typical|classic)\s+(?:\w+\s+){0,2}(?:peri-?fissural|juxta-?fissural|lymph\s+node)|"
                          r"\b(?:triangular|lentiform|oval|flat)\b[^.?!]*\b(?:fissure|peri-?fissural)\b|"
                          r"\bperi-?fissural\b[^.?!]{0,20}(?<!a)\btypical\b", re.I)
_NEGATED_PFN = re.compile(r"\b(?:not|no|without|non|atypical)\s+(?:\w+\s+){0,2}peri-?fissural", re.I)

_RADIOGRAPH = re.compile(r"\bchest\s+x-?ray|\bCXR\b|\bradiograph\w*|\bplain\s+film|\bx-?ray\b", re.I)
_CT = re.compile(r"\b(?:LD)?CT(?:PA|A)?\b|\bcomputed\s+tomograph\w*", re.I)
_NO_CT = re.compile(r"\b(?:no|without|before\s+(?:a|any))\s+(?:\w+\s+)?CT\b|\bCT\s+(?:is\s+)?(?:not\s+(?:yet\s+)?done|pending)|"
                    r"\bnot\s+(?:yet\s+)?had\s+(?:a\s+)?CT\b|\bonly\s+on\s+(?:a\s+|the\s+)?(?:chest\s+)?(?:x-?ray|radiograph)",
                    re.I)
_NODULE = re.compile(r"\bnodul\w*|\bgranulomas?\b|\bGGNs?\b|\bGGOs?\b|\bSPNs?\b|\bSSNs?\b|\bPSNs?\b|\bopacit\w*\b|\blesions?\b|"
                     r"\bmass\b", re.I)
_LUNG = re.compile(r"\blung|\bLCS\b|\bpulmonary\b|\bchest\b|\bthorax|\bthoracic\b|\bLDCT\b|\bCTPA\b|\blobe\b|\b[RL][UML]L\b|"
                   r"\bbronch\w*|\bpleura\w*|\bfissur\w*", re.I)
_BREAST = re.compile(rf"\bbreast|\bmammo\w*|\bbi[- ]?rads\b|\b(?:{alternation(BREAST_EXAMS)})\b|\baxilla\w*|"
                     r"\bnipple\b|\bareola\w*|\bretroareolar\b|\bo'?\s*clock\b|\bfibroadenoma\b", re.I)
_ULTRASOUND = re.compile(r"\bultrasound\b|\bsonograph\w*|\bsono\b", re.I)
_BREAST_HISTORY = re.compile(r"\bbreast\s+(?:cancer|carcinoma|ca|malignancy|neoplasm)\b|\b(?:mastectomy|lumpectomy)\b",
                             re.I)
# an organ as the site of the finding; history ("kidney transplant recipient", "renal failure") is not one
_OTHER_ORGAN = re.compile(r"\b(liver|hepatic|renal|kidney|adrenal|thyroid|pancrea\w*|spleen|splenic|ovar\w*|"
                          r"prostate|bone|brain|pituitary|skin)\b(?!\s+(?:transplant\w*|failure|disease|"
                          r"insufficiency|function|stones?|marrow|(?:cell\s+)?(?:carcinoma|cancer|ca|tumou?r|"
                          r"malignancy|metastas\w+)|colic|injury|protocol))", re.I)


def _num(text: str) -> float:
    return float(text.replace(",", "."))


def _to_mm(value: float, unit: str) -> float:
    return value * 10 if unit.lower().startswith("c") else value


def _spans_overlap(a: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(a[0] < b[1] and b[0] < a[1] for b in spans)


@dataclass
class TextFacts:
    """What the text states. ``notes`` say how a value was read ("1.2 cm = 12 mm")."""

    sizes_mm: list[float] = field(default_factory=list)   # every nodule size stated, mm, averaged per x-pair
    solid_component_mm: float | None = None
    nodule_type: str | None = None         # solid | part_solid | ground_glass | subsolid (type not said)
    count: str | None = None               # single | multiple
    no_nodule: bool = False
    setting: str | None = None             # screening | incidental
    eligibility: bool = False              # asks whether screening is indicated
    status: str | None = None              # baseline | new | growing | slowly_growing | stable
    age: int | None = None
    pack_years: float | None = None
    smoking: str | None = None             # never | former | current
    heavy_smoker: bool = False
    years_since_quit: float | None = None
    risk: str | None = None                # stated explicitly: low | high
    risk_factors: list[str] = field(default_factory=list)       # the patient's (smoking apart)
    nodule_features: list[str] = field(default_factory=list)    # the nodule's: spiculation, upper lobe
    sex: str | None = None                 # female | male
    stable_months: float | None = None     # "stable for 2 years"
    prior_size_mm: float | None = None     # "previously 5 mm, now 7 mm": the earlier size
    ppd_since_age: tuple[float, int] | None = None   # (packs a day, starting age): pack-years once the age is read
    follow_up_screen: bool = False         # "on a follow-up screening CT", "previously seen": not a baseline
    lung_rads: str | None = None
    birads: str | None = None
    known_cancer: bool = False
    immunocompromised: bool = False
    calcified: bool = False
    perifissural: bool = False
    typical_perifissural: bool = False
    radiograph_only: bool = False          # the nodule was seen on a radiograph, not (yet) on CT
    mentions_nodule: bool = False
    mentions_lung: bool = False
    mentions_breast: bool = False
    other_organ: str | None = None
    notes: list[str] = field(default_factory=list)


def _read_sizes(text: str, facts: TextFacts) -> None:
    used: list[tuple[int, int]] = []
    solid = _SOLID_PART.search(text)
    if solid:
        groups = solid.groups()
        value, unit = next((groups[i], groups[i + 1]) for i in range(0, len(groups), 2) if groups[i])
        facts.solid_component_mm = round(_to_mm(_num(value), unit), 2)
        used.append(solid.span())
        if unit.lower().startswith("c"):
            facts.notes.append(f"solid component {value} cm = {facts.solid_component_mm:g} mm")
    for m in _AXES.finditer(text):
        if _spans_overlap(m.span(), used):
            continue
        a_unit = m.group(2) or m.group(4)
        a, b = _to_mm(_num(m.group(1)), a_unit), _to_mm(_num(m.group(3)), m.group(4))
        mean = round((a + b) / 2, 2)
        facts.sizes_mm.append(mean)
        facts.notes.append(f"average of {a:g} and {b:g} mm = {mean:g} mm")
        used.append(m.span())
    for m in _SIZE.finditer(text):
        if _spans_overlap(m.span(), used) or _DURATION_AFTER.match(text, m.end()):
            continue
        value, unit = _num(m.group(1)), m.group(2)
        mm = round(_to_mm(value, unit), 2)
        facts.sizes_mm.append(mm)
        if unit.lower().startswith("c"):
            facts.notes.append(f"{m.group(1)} cm = {mm:g} mm")


_DURATION_AFTER = re.compile(r"\s*(?:ago|old)\b")


def _plausible_sizes(facts: TextFacts) -> None:
    """A "size" over 30 cm is not a finding's size (a misread number): dropped."""
    facts.sizes_mm = [mm for mm in facts.sizes_mm if 0 < mm <= 300]
    if facts.solid_component_mm is not None and not 0 < facts.solid_component_mm <= 300:
        facts.solid_component_mm = None


def _read_type(text: str, facts: TextFacts) -> None:
    if _PART_SOLID.search(text) or facts.solid_component_mm is not None:
        facts.nodule_type = "part_solid"
    elif _GROUND_GLASS.search(text):
        facts.nodule_type = "ground_glass"
    elif _SUBSOLID.search(text):
        facts.nodule_type = "subsolid"
    else:
        solid_words = [m for m in _SOLID.finditer(text)
                       if not any(n.start() <= m.start() < n.end() for n in _NOT_SOLID_CONTEXT.finditer(text))]
        if solid_words:
            facts.nodule_type = "solid"
    if facts.nodule_type in ("part_solid", "subsolid") and facts.solid_component_mm is None \
            and _NO_SOLID_PART.search(text):
        facts.nodule_type = "ground_glass"  # "subsolid, no solid component": pure ground-glass
    if facts.nodule_type == "part_solid" and facts.solid_component_mm is None:
        facts.notes.append("part-solid nodule without a stated solid-component size")


# "1 ppd since age 20": the years come from the age (read after it)
_SINCE_AGE = re.compile(r"(\d+(?:[.,]\d+)?)\s+packs?\s+per\s+day\s+since\s+(?:(?:the\s+)?age\s+(?:of\s+)?|"
                        r"(?:she|he)\s+was\s+)(\d{2})\b", re.I)


def _read_smoking(text: str, facts: TextFacts) -> None:
    py = _PACK_YEARS.search(text)
    if py:
        facts.pack_years = _num(py.group(1) or py.group(2))
    else:
        ppd = _PPD.search(text)
        if ppd:
            n = ppd.group("n").lower()
            words = {"one": 1.0, "a": 1.0, "two": 2.0, "three": 3.0}
            packs = 0.5 if n.startswith("half") else words[n] if n in words else _num(n)
            facts.pack_years = round(packs * _num(ppd.group("y")), 1)
            facts.notes.append(f"{ppd.group(0).strip()} = {facts.pack_years:g} pack-years")
    since = _SINCE_AGE.search(text)
    if facts.pack_years is None and since:
        facts.ppd_since_age = (_num(since.group(1)), int(since.group(2)))
    quit_m = _QUIT.search(text)
    if quit_m:
        facts.years_since_quit = _num(next(g for g in quit_m.groups() if g))
    if _NEVER.search(text):
        facts.smoking = "never"
    elif _FORMER.search(text) or facts.years_since_quit is not None:
        facts.smoking = "former"
    elif _CURRENT.search(text) or facts.pack_years:
        facts.smoking = "current"
    facts.heavy_smoker = bool(_HEAVY.search(text))


def _read_risk(text: str, facts: TextFacts) -> None:
    explicit = [m.group(1) or m.group(2) for m in _RISK_EXPLICIT.finditer(text)]
    stated = {r.lower() for r in explicit if r and r.lower() in ("low", "high")}
    if len(stated) == 1:
        facts.risk = stated.pop()
    for names, table in ((facts.risk_factors, _RISK_FACTORS), (facts.nodule_features, _NODULE_FEATURES)):
        for name, pattern in table:
            for m in pattern.finditer(text):
                if not _NEGATED_FACTOR.search(text[max(0, m.start() - 25): m.start()]):
                    names.append(name)
                    break


def _read_context(text: str, facts: TextFacts) -> None:
    if _NOT_SCREENING.search(text):
        facts.setting = "incidental"
    elif _SCREENING.search(text) and not _INCIDENTAL.search(text) and not re.search(r"\bfleischner\b", text, re.I):
        facts.setting = "screening"
    elif _INCIDENTAL.search(text):
        facts.setting = "incidental"
    elif _SCREENING.search(text):  # "Fleischner" named for a nodule found on screening: still a screening CT
        facts.setting = "screening"
    elif re.search(r"\bfleischner\b", text, re.I):
        facts.setting = "incidental"
    facts.eligibility = bool(ELIGIBILITY.search(text))
    for status, pattern in _STATUS:
        if pattern.search(text):
            facts.status = status
            break
    _read_growth(text, facts)
    lr = _LUNG_RADS.search(text)
    if lr:
        facts.lung_rads = re.sub(r"\s+", "", next(g for g in lr.groups() if g)).upper()
    bi = _BIRADS.search(text)
    if bi:
        facts.birads = re.sub(r"\s+", "", bi.group(1)).upper()
    if not (facts.lung_rads or facts.birads):
        _read_bare_category(text, facts)
    facts.known_cancer = _own_cancer(text)
    facts.immunocompromised = bool(_IMMUNO.search(text)) and not _NO_IMMUNO.search(text)
    facts.calcified = bool(_CALCIFIED.search(text)) and not _NON_CALCIFIED.search(text)
    facts.perifissural = bool(_PERIFISSURAL.search(text)) and not _NEGATED_PFN.search(text)
    facts.typical_perifissural = facts.perifissural and bool(_TYPICAL_PFN.search(text))


_BEFORE = r"(?:previously|prior(?:ly)?|before|was|were|earlier|last\s+(?:year|time|scan|CT|LDCT)|initially|from|at\s+baseline)"
_NOW = r"(?:now|currently|today|to|measures|measuring|has\s+grown\s+to|increased\s+to|is)"
_GROWTH = re.compile(rf"\b{_BEFORE}\b[^.?!;]{{0,40}}?{_NUM}\s*{_UNIT}[^.?!;]{{0,60}}?\b{_NOW}\b[^.?!;\d]{{0,15}}?"
                     rf"{_NUM}\s*{_UNIT}", re.I)
_GROWTH_AFTER = re.compile(rf"{_NUM}\s*{_UNIT}\s*(?:,\s*)?(?:\(|,)?\s*(?:up|increased|grown)\s+from\s+{_NUM}\s*{_UNIT}",
                           re.I)
_STABLE_FOR = re.compile(r"\b(?:stable|unchanged|no\s+(?:interval\s+)?(?:change|growth))\s+(?:for|over|since|x)?\s*"
                         r"(?:about\s+|the\s+(?:last|past)\s+)?(\d+(?:[.,]\d+)?)\s*(years?|months?)", re.I)
_FOLLOW_UP_SCREEN = re.compile(r"\b(?:follow[- ]?up|repeat|subsequent|interval|second|2nd|third|3rd)\s+(?:annual\s+)?"
                               r"(?:screening\s+|low-dose\s+)?(?:CT|LDCT|scan|screen)\b|\bpreviously\s+(?:seen|noted|"
                               r"reported|identified)\b|\b(?:known|existing)\s+(?:\w+\s+)?nodule\b", re.I)


# "9 mm solid nodule, previously 6 mm": the current size first
_GROWTH_BACK = re.compile(rf"{_NUM}\s*{_UNIT}[^.?!;\d]{{0,40}}?\b(?:previously|prior(?:ly)?|was|before|up\s+from|"
                          rf"compared\s+(?:with|to))\s+(?:\w+\s+){{0,2}}?{_NUM}\s*{_UNIT}", re.I)


_PRIOR_SIZE = re.compile(rf"(?<!\bif\s)(?<!\bit\s)\b(?:was|previously|prior(?:ly)?|initially|at\s+baseline)\s+"
                         rf"(?:\w+\s+){{0,2}}?{_NUM}\s*{_UNIT}", re.I)


def _read_growth(text: str, facts: TextFacts) -> None:
    """An earlier and a current size ("previously 5 mm, now 7 mm"): growing (or stable when equal), with the
    current size kept as the nodule's size by the reader; "stable for 2 years": stable, and for how long."""
    m = _GROWTH.search(text)
    before = now = None
    if m:
        before, now = _to_mm(_num(m.group(1)), m.group(2)), _to_mm(_num(m.group(3)), m.group(4))
    else:
        m = _GROWTH_AFTER.search(text) or _GROWTH_BACK.search(text)
        if m:
            now, before = _to_mm(_num(m.group(1)), m.group(2)), _to_mm(_num(m.group(3)), m.group(4))
    if before is not None and now is not None and before != now:
        facts.prior_size_mm = before
        if now > before:
            facts.status = "growing"
            facts.notes.append(f"grew from {before:g} mm to {now:g} mm")
    elif before is not None and now == before:
        facts.status = "stable"
    elif before is None:
        only = _PRIOR_SIZE.search(text)  # "it's grown, was 5 mm": the earlier size, with no current one stated
        if only and len(facts.sizes_mm) == 1:
            facts.prior_size_mm = _to_mm(_num(only.group(1)), only.group(2))
    stable = _STABLE_FOR.search(text)
    if stable and facts.status in (None, "stable"):
        facts.status = "stable"
        value = _num(stable.group(1))
        facts.stable_months = value * 12 if stable.group(2).lower().startswith("y") else value
    facts.follow_up_screen = bool(_FOLLOW_UP_SCREEN.search(text))


def _read_bare_category(text: str, facts: TextFacts) -> None:
    m = _BARE_CATEGORY.search(text)
    if not m:
        return
    cat = (m.group(1) or m.group(2)).upper()
    # a category on ultrasound or MRI is BI-RADS (Lung-RADS reads CT only)
    breast = bool(_BREAST.search(text) or re.search(r"\bultrasound\b|\bsonograph\w*|\bMRI?\b", text, re.I))
    lung = bool(_LUNG.search(text) or _SCREENING.search(text))
    if cat.endswith("X") or (lung and not breast and not cat.endswith("C") and cat not in ("5", "6")):
        facts.lung_rads = cat
    elif breast or cat.endswith("C") or cat in ("5", "6"):
        facts.birads = cat


def _own_cancer(text: str) -> bool:
    """The patient's own cancer history (see _CANCER); negated or a relative's does not count."""
    for pattern in (_CANCER, _CANCER_TYPE):
        for m in pattern.finditer(text):
            before = text[max(0, m.start() - 60): m.start()]
            clause = re.split(r"[.;]|\bbut\b", before)[-1]
            if _NOT_OWN_CANCER.search(clause) or _NO_CANCER.search(text[max(0, m.start() - 30): m.end()]):
                continue
            if re.match(r"\s*(?:screening|risk)\b", text[m.end():]):
                continue
            return True
    return False


def read_text(text: str) -> TextFacts:
    """Everything ``text`` states explicitly (see :class:`TextFacts`); shorthand is written out first
    (:func:`tools.vocabulary.normalise.normalise`)."""
    facts = TextFacts()
    text = normalise(text)
    _read_sizes(text, facts)
    _plausible_sizes(facts)
    _read_type(text, facts)
    if _NO_NODULE.search(text):
        facts.no_nodule = True
    # "several/two nodules", "the largest": several; a nodule with its article or size: one; a bare plural
    # ("does Fleischner apply to nodules found on screening?") only when nothing says one
    if _MULTIPLE.search(text) and not facts.no_nodule:
        facts.count = "multiple"
    elif _SINGLE.search(text):
        facts.count = "single"
    elif _PLURAL.search(text) and not facts.no_nodule:
        facts.count = "multiple"
    _read_smoking(text, facts)
    _read_risk(text, facts)
    _read_context(text, facts)
    sex = {w.lower() for w in _SEX.findall(text)}
    female, male = sex & {"female", "woman", "lady", "she", "her"}, sex & {"male", "man", "gentleman", "he", "his"}
    facts.sex = "female" if female and not male else "male" if male and not female else None
    for m in _AGE.finditer(text):
        value = next((g for g in m.groups() if g), None)
        if value is None:
            continue
        age = int(value) * (10 if m.group(6) else 1)
        if 0 < age < 120:
            facts.age = age + (5 if m.group(6) else 0)
            break
    if facts.ppd_since_age and facts.age:
        packs, start = facts.ppd_since_age
        years = facts.age - start - (facts.years_since_quit or 0)
        if years > 0:
            facts.pack_years = round(packs * years, 1)
            facts.smoking = facts.smoking or ("former" if facts.years_since_quit else "current")
            facts.notes.append(f"{packs:g} packs per day from age {start} to {start + years:g} = "
                               f"{facts.pack_years:g} pack-years")
    facts.mentions_nodule = bool(_NODULE.search(text))
    facts.radiograph_only = bool(_RADIOGRAPH.search(text)) and (not _CT.search(text) or bool(_NO_CT.search(text)))
    facts.mentions_lung = bool(_LUNG.search(text))
    # a breast-cancer history is not a breast finding: with a lung nodule in the question it is history
    history_free = _BREAST_HISTORY.sub(" ", text)
    facts.mentions_breast = bool(_BREAST.search(history_free)) or (bool(_BREAST.search(text)) and not facts.mentions_lung
                                                                   and not facts.mentions_nodule)
    organ = _OTHER_ORGAN.search(text)
    facts.other_organ = organ.group(1).lower() if organ else None
    if _ULTRASOUND.search(text) and not facts.mentions_lung and not facts.other_organ and not facts.lung_rads \
            and not facts.radiograph_only:
        facts.mentions_breast = True  # a mass on ultrasound with no other organ named: the breast (never the lung)
    return facts
