"""Clinician shorthand in a question, rewritten into the plain words the question reader reads.

"67M, 1/2 ppd x 45 yrs, quit 2011, BR3 on US, f/u?" becomes "67-year-old male, 0.5 packs per day for 45
years, quit 15 years ago, BI-RADS 3 on ultrasound, follow-up?". Every rewrite keeps the numbers the text
states (a fraction is written as its decimal, a calendar year as the years since it); nothing is added.
The abbreviation table is :data:`tools.vocabulary.abbreviations.CLINICAL_SHORTHAND`; the order of the
rewrites below matters (categories and ages before the generic table, "x" as "for" after units).
"""

from __future__ import annotations

import datetime as _dt
import re

from tools.vocabulary.abbreviations import AFTER_A_NUMBER, CAPITALS_ONLY, CLINICAL_SHORTHAND, WITH_A_CATEGORY

# abbreviations the reader's own patterns already know (or read better short): never expanded
_KEEP = frozenset({"copd", "ild", "ldct", "lcs", "ctpa", "cta", "cxr", "ggn", "ggns", "ggo", "ggos", "pggn", "psn",
                   "psns", "ssn", "ssns", "spn", "rul", "rml", "rll", "lul", "lll", "ling", "pet/ct", "uspstf", "acr",
                   "chemo", "rt", "cac", "birads", "bi rads", "lungrads", "lung rads", "cig", "cigs"})
_FRACTIONS = {"1/2": "0.5", "½": "0.5", "1/4": "0.25", "¼": "0.25", "3/4": "0.75", "¾": "0.75", "1/3": "0.33"}
# words typed with one letter wrong, missing, extra or swapped are read as these (five letters or more)
_KNOWN_WORDS = ("nodule", "nodules", "solid", "ground", "glass", "smoker", "smoked", "smoking", "screening",
                "incidental", "incidentally", "spiculated", "mammogram", "mammograms", "never-smoker", "ultrasound", "follow-up", "calcified",
                "component", "pack-years", "packs", "years", "months", "growing", "stable", "baseline", "previous",
                "previously", "measures", "melanoma", "transplant", "history", "category", "eligible",
                "subsolid", "sub-solid", "part-solid", "nonsolid", "non-solid", "non-smoker", "nonsmoker", "smokes", "former", "current", "never", "cancer", "tacrolimus", "mycophenolate",
                "azathioprine", "cyclosporine", "lymphoma", "emphysema", "patient", "female", "woman")


def _this_year() -> int:
    return _dt.date.today().year


_CATEGORY_PATTERNS = (
    # "BR3", "BR 4a", "BR-0", "BIRADS 3", "Bi Rads 4C": BI-RADS
    (re.compile(r"(?<![\w-])(?:BR|bi[\s-]?rads)\s*[-:]?\s*([0-6](?:\s?[ABCabc])?)(?![\w])", re.I),
     lambda m: f"BI-RADS {m.group(1).replace(' ', '').upper()}"),
    # "LR 4A", "LR4X", "LR-2", "lungrads 3", "Lung RADS 4B": Lung-RADS (LI-RADS writes LR too: see _liver)
    (re.compile(r"(?<![\w-])(?:LR|lung[\s-]?rads)\s*[-:]?\s*([0-4](?:\s?[ABXSabxs])?)(?![\w])", re.I),
     lambda m: f"Lung-RADS {m.group(1).replace(' ', '').upper()}"),
    # "cat 2", "cat. 4A", "cat2", "Cat-3": category
    (re.compile(r"(?<![\w-])cat\.?\s*[-:]?\s*([0-6](?:[ABCXabcx])?)(?![\w])", re.I),
     lambda m: f"category {m.group(1).upper()}"),
)
_LIVER = re.compile(r"\bliver\b|\bhepat\w*|\bHCC\b|\bcirrho\w*|\bLI-?RADS\b", re.I)

_SEX = {"m": "male", "f": "female", "male": "male", "female": "female", "man": "man", "woman": "woman"}
# "67M", "67 M", "67yo F", "58 yo F", "67 y/o male", "41f,": age then sex
_AGE_SEX = re.compile(r"(?<![\w.])(\d{1,3})\s*(?:-?\s*(?:yo|y/o|y\.o\.|yrs?\s*old|years?[\s-]old|year-old|y)\s*)?"
                      r"(?:(M|F)|(m|f)(?=\s*[,;.)]|\s*$|\s+(?:with|who|smoker|non|never|ex|former|current|pt|"
                      r"patient|hx|h/o|s/p)\b)|(male|female|man|woman)\b)(?![\w])")
# "F 62", "M, 67", "F/62", "female 62": sex then age (a number without a unit after it)
_SEX_AGE = re.compile(r"(?<![\w/'])(?<!old )(M|F|m|f|[Mm]ale|[Ff]emale|[Ww]oman|[Mm]an)\s*[,/]?\s*(\d{2})(?!\w)(?!\.\d)(?!\s*(?:mm|cm|%|"
                      r"y\s*ago|years?\s+ago|pack|py|PY|x|×|by|-?\s*(?:yo|y/o|year|yr)))")
_PACK_YEARS = re.compile(r"(\d+(?:[.,]\d+)?)\s*[- ]?(?:pys?|pk[- ]?yrs?|pkyrs?|pack[- ]?yrs?|pack[- ]?years?|p-y|"
                         r"pack[- ]?year[- ]history)(?![\w])", re.I)
_PY_BEFORE = re.compile(r"(?<![\w-])(?<!\d )(?:PY|pack[- ]?years?|pk[- ]?yrs?)\s*[:=]\s*(\d+(?:[.,]\d+)?)"
                        r"(?!\s*(?:mm|cm|%|x\b|years?\s+old|yo\b))", re.I)
_PPD = re.compile(r"(?<![A-Za-z/])(ppd|pk/day|pks/day|packs?/day|packs?/d|packs?\s+(?:a|per|each|/)\s*day|"
                  r"pack\s+daily|packs\s+daily)(?![\w])", re.I)
_TIME_UNITS = (("years", r"years?|yrs?|y"), ("months", r"months?|mos?|mths?"), ("weeks", r"weeks?|wks?"))
# "x 45 years", "X 2 yrs": "for" (never between two numbers: "8 x 6 mm")
_X_FOR = re.compile(r"(?<=[A-Za-z)])\s*[x×]\s*(?=\d+(?:[.,]\d+)?\s*(?:years|months|weeks)\b)")
# "20 yrs x 1 ppd", "30 years at 1 pack per day": packs before years
_YEARS_THEN_PPD = re.compile(r"(\d+(?:[.,]\d+)?)\s*years?\s*(?:x|×|at|of|@)\s*(\d+(?:[.,]\d+)?)\s*packs per day|"
                             r"\b(?:for|over|smoked(?:\s+for)?)\s+(\d+(?:[.,]\d+)?)\s*years?\s*[,;]?\s*(?:x\s*|at\s+|@\s*)?"
                             r"(\d+(?:[.,]\d+)?)\s*packs per day", re.I)
_STABLE_SINCE = re.compile(r"\b(stable|unchanged)\s+since\s+((?:19|20)\d\d)\b", re.I)
_QUIT_YEAR = re.compile(r"\b(quit|stopped|gave\s+up|ex-?smoker\s+since|former\s+smoker\s+since|non-?smoker\s+since|"
                        r"quit\s+smoking|stopped\s+smoking)\s+(?:in\s+|since\s+)?((?:19|20)\d\d)\b", re.I)
_QUIT_FOR = re.compile(r"\b(?:smoke[- ]free|abstinent|hasn't\s+smoked|has\s+not\s+smoked|not\s+smoked)\s+(?:for\s+|in\s+)?"
                       r"(?:the\s+(?:last|past)\s+)?(\d+(?:[.,]\d+)?)\s*years", re.I)
_QUIT_SINCE = re.compile(r"(\d+(?:[.,]\d+)?)\s*years\s+since\s+(?:quitting|quit|stopping|cessation)", re.I)
_EXAM_FORMS = (
    (re.compile(r"\bCT\s*(?:A/P|AP|abd(?:omen)?\s*/\s*pel(?:vis)?|abd\.?\s*(?:and|&|\+)\s*pel(?:vis)?|abdo\s+pelvis|"
                r"abd(?:omen)?[\s-]+pelvis)(?![\w/])|\bCTAP\b", re.I), "CT abdomen and pelvis"),
    (re.compile(r"\bCT\s*(?:C/A/P|CAP)\b", re.I), "CT chest, abdomen and pelvis"),
    (re.compile(r"\bCCTA\b|\bcoronary\s+CTA\b", re.I), "coronary CT angiogram"),
    (re.compile(r"\bCT\s+abd\b\.?", re.I), "CT abdomen"),
)
# "liver tx", "BM tx": a transplant ("tx" alone is also "treatment")
_ORGAN_TX = re.compile(r"\b(lung|liver|kidney|renal|heart|cardiac|pancreas|BM|bone\s+marrow|stem\s+cell|islet|"
                       r"organ)\s+tx\b", re.I)
_ABOUT = re.compile(r"[~≈]\s*(?=\d)|\bapprox\.?\s+(?=\d)|\bca\.\s+(?=\d)", re.I)
_SHORTHAND_KEYS = sorted((k for k in CLINICAL_SHORTHAND if k not in _KEEP and k not in WITH_A_CATEGORY
                          and k not in AFTER_A_NUMBER), key=len, reverse=True)
_TABLE = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(k) for k in _SHORTHAND_KEYS) + r")(?![\w/])", re.I)
_WORDS = re.compile(r"[A-Za-z][A-Za-z-]{4,}")


def _edit1(a: str, b: str) -> bool:
    """``a`` is ``b`` with one letter changed, missing, added or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


_KNOWN = frozenset(_KNOWN_WORDS)


def _typo(m: re.Match[str]) -> str:
    word = m.group(0)
    low = word.lower()
    if low in _KNOWN or len(low) < 5:
        return word
    fixes = [k for k in _KNOWN_WORDS if abs(len(k) - len(low)) <= 1 and k[0] == low[0] and _edit1(low, k)]
    return fixes[0] if len(fixes) == 1 else word


def _table(m: re.Match[str]) -> str:
    word = m.group(1)
    key = word.lower()
    if key in CAPITALS_ONLY and not word.isupper():
        return word
    if key == "ca" and word == "ca" and m.end() < len(m.string) and m.string[m.end():m.end() + 1] == ".":
        return word
    return CLINICAL_SHORTHAND[key]


def _age_sex(m: re.Match[str]) -> str:
    age = int(m.group(1))
    if not 1 <= age <= 110:
        return m.group(0)
    sex = _SEX[(m.group(2) or m.group(3) or m.group(4)).lower()]
    return f"{age}-year-old {sex}"


def normalise(text: str, *, year: int | None = None) -> str:
    """``text`` with its shorthand written out (see the module docstring); ``year`` is the current year for
    "quit in 2010" (today's by default)."""
    t = " ".join((text or "").replace("\u2013", "-").replace("\u2014", "-").split())
    t = _ABOUT.sub("about ", t)
    for frac, dec in _FRACTIONS.items():
        t = re.sub(rf"(?<![\d/]){re.escape(frac)}(?![\d/])(?=\s*(?:ppd|pk|pack|a\s+pack))", dec, t, flags=re.I)
    t = re.sub(r"\bhalf\s+(?:a\s+)?(?=ppd\b|pack)", "0.5 ", t, flags=re.I)
    liver = bool(_LIVER.search(t))
    for n, (pattern, repl) in enumerate(_CATEGORY_PATTERNS):
        if n == 1 and liver:
            continue
        t = pattern.sub(repl, t)
    t = _PY_BEFORE.sub(lambda m: f"{m.group(1)} pack-years", t)
    t = _PACK_YEARS.sub(lambda m: f"{m.group(1)} pack-years", t)
    t = _PPD.sub("packs per day", t)
    t = re.sub(r"(\d)(?=packs per day)", r"\1 ", t)
    t = _AGE_SEX.sub(_age_sex, t)
    t = _SEX_AGE.sub(lambda m: f"{m.group(2)}-year-old {_SEX[m.group(1).lower()]}", t)
    for long_form, units in _TIME_UNITS:
        t = re.sub(rf"(\d(?:[.,]\d+)?)\s*-?\s*(?:{units})(?![\w/])(?![-\s]*(?:o\b|old\b))", rf"\1 {long_form}", t,
                   flags=re.I)
    t = re.sub(r"(\d)\s*(?:yo|y/o|y\.o\.)(?![\w])", r"\1 years old", t, flags=re.I)
    t = _X_FOR.sub(" for ", t)
    t = _YEARS_THEN_PPD.sub(lambda m: f"{m.group(2) or m.group(4)} packs per day for {m.group(1) or m.group(3)} years",
                            t)
    now = year or _this_year()
    t = _QUIT_YEAR.sub(lambda m: (f"quit {now - int(m.group(2))} years ago" if 0 <= now - int(m.group(2)) <= 90
                                  else m.group(0)), t)
    t = _STABLE_SINCE.sub(lambda m: (f"{m.group(1)} for {now - int(m.group(2))} years"
                                     if 0 < now - int(m.group(2)) <= 50 else m.group(0)), t)
    t = _QUIT_FOR.sub(lambda m: f"quit {m.group(1)} years ago", t)
    t = _QUIT_SINCE.sub(lambda m: f"quit {m.group(1)} years ago", t)
    t = _ORGAN_TX.sub(lambda m: f"{m.group(1)} transplant", t)
    for pattern, repl in _EXAM_FORMS:
        t = pattern.sub(repl, t)
    t = _TABLE.sub(_table, t)
    t = _WORDS.sub(_typo, t)
    return t
