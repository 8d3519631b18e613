"""Abbreviations and clinician shorthand with their long forms: the one table of them in the project.

Two tables, one vocabulary:

* :data:`CLINICAL_SHORTHAND`: what a clinician types in a question ("67M", "40 PY", "1/2 ppd", "f/u?", "hx
  of melanoma", "s/p OHT on MMF", "BR3 on US", "CT A/P"); the question reader expands it before reading
  (:mod:`tools.vocabulary.normalise`). Keys are lower case. Some are ordinary words too ("us", "ca", "cat",
  "pt"): :data:`AFTER_A_NUMBER` and :data:`CAPITALS_ONLY` say when such a key counts, and
  :data:`WITH_A_CATEGORY` the category prefixes that count only before a category ("BR3", "LR 4A", "cat 2").
* :data:`MEDICAL`: abbreviations of examinations, diseases and anatomy as documents and reports write them
  ("CT", "COPD", "DCIS", "RUL"); knowledge-base retrieval expands a query with their long forms (and a
  long form with its abbreviation). :data:`ORDINARY_WORDS` are keys that are also English words ("all",
  "ms", "pe"): they count only when written in capitals.

:func:`expand` gives the long form of a term from either table; :func:`abbreviation_of` the abbreviation
of a long form.
"""

from __future__ import annotations

import re

CLINICAL_SHORTHAND: dict[str, str] = {
    # patient and history
    "yo": "years old", "y/o": "years old", "y.o.": "years old", "yoa": "years old",
    "pt": "patient", "pts": "patients",
    "hx": "history", "h/o": "history of", "pmh": "past medical history", "pmhx": "past medical history",
    "fhx": "family history", "fh": "family history",
    "s/p": "status post", "w/": "with", "w/o": "without", "r/o": "rule out", "c/w": "consistent with",
    "ca": "cancer", "mets": "metastases", "bx": "biopsy", "dx": "diagnosis",
    "chemo": "chemotherapy", "xrt": "radiotherapy", "rt": "radiotherapy",
    # smoking
    "py": "pack-years", "pys": "pack-years", "pk-yr": "pack-years", "pk-yrs": "pack-years", "pkyr": "pack-years",
    "pkyrs": "pack-years", "pack-yr": "pack-years", "pack-yrs": "pack-years", "p-y": "pack-years",
    "ppd": "packs per day", "pk/day": "packs per day", "pks/day": "packs per day", "packs/day": "packs per day",
    "pack/day": "packs per day", "cig": "cigarette", "cigs": "cigarettes",
    # time
    "yr": "years", "yrs": "years", "y": "years", "mo": "months", "mos": "months", "mths": "months",
    "wk": "weeks", "wks": "weeks",
    # follow-up
    "f/u": "follow-up", "fu": "follow-up", "f/up": "follow-up", "ff/u": "follow-up",
    # transplant and immunosuppression
    "txp": "transplant", "ltx": "lung transplant", "ktx": "kidney transplant", "rtx": "renal transplant",
    "oht": "orthotopic heart transplant", "olt": "orthotopic liver transplant", "sot": "solid organ transplant",
    "bmt": "bone marrow transplant", "hsct": "stem cell transplant", "sct": "stem cell transplant",
    "mmf": "mycophenolate", "fk506": "tacrolimus", "csa": "cyclosporine", "aza": "azathioprine",
    "mtx": "methotrexate",
    "plwh": "person living with HIV",
    # nodules and lungs
    "ggn": "ground-glass nodule", "ggns": "ground-glass nodules", "ggo": "ground-glass opacity",
    "ggos": "ground-glass opacities", "pggn": "pure ground-glass nodule", "psn": "part-solid nodule",
    "psns": "part-solid nodules", "ssn": "solid nodule", "ssns": "solid nodules",
    "spn": "solitary pulmonary nodule", "rul": "right upper lobe", "rml": "right middle lobe",
    "rll": "right lower lobe", "lul": "left upper lobe", "lll": "left lower lobe", "ling": "lingula",
    "copd": "chronic obstructive pulmonary disease", "ild": "interstitial lung disease",
    # examinations
    "ldct": "low-dose CT", "lcs": "lung cancer screening", "ctpa": "CT pulmonary angiogram",
    "cta": "CT angiogram", "ccta": "coronary CT angiogram", "cac": "coronary artery calcium",
    "ct a/p": "CT abdomen and pelvis", "ct ap": "CT abdomen and pelvis", "ctap": "CT abdomen and pelvis",
    "ct c/a/p": "CT chest, abdomen and pelvis", "ct cap": "CT chest, abdomen and pelvis",
    "cxr": "chest radiograph", "mammo": "mammogram", "mammos": "mammograms", "mmg": "mammogram",
    "dbt": "tomosynthesis", "us": "ultrasound", "u/s": "ultrasound", "uss": "ultrasound", "sono": "ultrasound",
    "pet/ct": "PET-CT",
    # categories
    "br": "BI-RADS", "birads": "BI-RADS", "bi rads": "BI-RADS", "lr": "Lung-RADS", "lungrads": "Lung-RADS",
    "lung rads": "Lung-RADS", "cat": "category",
    # guidelines
    "uspstf": "USPSTF", "acr": "ACR",
}

# keys that mean the long form only right after a number ("40 PY", "67 yo", "1.5 ppd", "3 mo")
AFTER_A_NUMBER = frozenset({"py", "pys", "pk-yr", "pk-yrs", "pkyr", "pkyrs", "pack-yr", "pack-yrs", "p-y",
                            "yo", "y/o", "y.o.", "yoa", "yr", "yrs", "y", "mo", "mos", "mths", "wk", "wks",
                            "ppd", "pk/day", "pks/day", "packs/day", "pack/day"})
# keys that are ordinary English words in lower case: they count only as written in capitals
CAPITALS_ONLY = frozenset({"us", "pt", "pts", "rt", "fh", "ling", "sot", "sct", "olt"})
# category prefixes: "BR3", "BR 4a", "LR-4A", "cat 2" (never a bare "br" or "cat")
WITH_A_CATEGORY = frozenset({"br", "lr", "cat"})


def long_form(abbreviation: str) -> str | None:
    """The long form of ``abbreviation`` (any case) in :data:`CLINICAL_SHORTHAND`, or None."""
    return CLINICAL_SHORTHAND.get(abbreviation.lower())


# examinations, diseases and anatomy as documents write them (moved here from knowledge/terms.py)
MEDICAL: dict[str, str] = {
    "ct": "computed tomography", "cta": "computed tomography angiography", "mri": "magnetic resonance imaging",
    "mr": "magnetic resonance", "mra": "magnetic resonance angiography", "pet": "positron emission tomography",
    "us": "ultrasound", "cxr": "chest radiograph", "xr": "radiograph", "ldct": "low dose computed tomography",
    "hrct": "high resolution computed tomography", "ggn": "ground glass nodule", "ggo": "ground glass opacity",
    "ssn": "solid nodule", "psn": "part solid nodule", "suv": "standardized uptake value",
    "copd": "chronic obstructive pulmonary disease", "pe": "pulmonary embolism", "dvt": "deep vein thrombosis",
    "ild": "interstitial lung disease", "ipf": "idiopathic pulmonary fibrosis", "tb": "tuberculosis",
    "nsclc": "non small cell lung cancer", "sclc": "small cell lung cancer", "rul": "right upper lobe",
    "rml": "right middle lobe", "rll": "right lower lobe", "lul": "left upper lobe", "lll": "left lower lobe",
    "dcis": "ductal carcinoma in situ", "fna": "fine needle aspiration", "mammo": "mammography",
    "dbt": "digital breast tomosynthesis", "psa": "prostate specific antigen", "bph": "benign prostatic hyperplasia",
    "ckd": "chronic kidney disease", "chf": "congestive heart failure", "mi": "myocardial infarction",
    "cad": "coronary artery disease", "afib": "atrial fibrillation", "ards": "acute respiratory distress syndrome",
    "uti": "urinary tract infection", "gerd": "gastroesophageal reflux disease", "ibd": "inflammatory bowel disease",
    "ibs": "irritable bowel syndrome", "hiv": "human immunodeficiency virus", "ms": "multiple sclerosis",
    "als": "amyotrophic lateral sclerosis", "tia": "transient ischemic attack", "cva": "cerebrovascular accident",
    "bmi": "body mass index", "htn": "hypertension", "dm": "diabetes mellitus",
    "all": "acute lymphoblastic leukemia", "aml": "acute myeloid leukemia", "cll": "chronic lymphocytic leukemia",
    "cml": "chronic myeloid leukemia", "nhl": "non hodgkin lymphoma", "hcc": "hepatocellular carcinoma",
    "rcc": "renal cell carcinoma", "gist": "gastrointestinal stromal tumor", "sle": "systemic lupus erythematosus",
    "ra": "rheumatoid arthritis", "oa": "osteoarthritis", "pad": "peripheral artery disease",
    "aaa": "abdominal aortic aneurysm", "osa": "obstructive sleep apnea", "pcos": "polycystic ovary syndrome",
    "adhd": "attention deficit hyperactivity disorder", "ptsd": "post traumatic stress disorder",
    "sids": "sudden infant death syndrome", "std": "sexually transmitted disease",
    "sti": "sexually transmitted infection", "hpv": "human papillomavirus", "hbv": "hepatitis b virus",
    "hcv": "hepatitis c virus", "cf": "cystic fibrosis", "cp": "cerebral palsy", "tbi": "traumatic brain injury",
    "sah": "subarachnoid hemorrhage", "ich": "intracerebral hemorrhage", "bp": "blood pressure",
    "hrt": "hormone replacement therapy", "ed": "erectile dysfunction", "ckd-mbd": "chronic kidney disease mineral bone disorder",
}
# keys of MEDICAL that are ordinary words (or too ambiguous) in lower case: they count only in capitals
ORDINARY_WORDS = frozenset(["all", "us", "ms", "pe", "mr", "mi", "dm", "ra", "oa", "cp", "cf", "ed", "bp", "pad",
                            "std", "pet", "aaa"])
_WORD = re.compile(r"[a-z0-9]+")


def expand(term: str, written_in_capitals: bool | None = None) -> str | None:
    """The long form of an abbreviation (:data:`MEDICAL` first, then :data:`CLINICAL_SHORTHAND`), or None.
    A key that is also an ordinary word counts only when written in capitals (``written_in_capitals``;
    by default read from ``term`` itself)."""
    key = term.lower()
    capitals = term.isupper() and len(term) > 1 if written_in_capitals is None else written_in_capitals
    if key in MEDICAL:
        return MEDICAL[key] if capitals or key not in ORDINARY_WORDS else None
    if key in CLINICAL_SHORTHAND and key not in AFTER_A_NUMBER and key not in WITH_A_CATEGORY:
        return CLINICAL_SHORTHAND[key] if capitals or key not in CAPITALS_ONLY else None
    return None


def _key(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


_BY_LONG_FORM: dict[tuple[str, ...], str] = {}
for _table in (CLINICAL_SHORTHAND, MEDICAL):  # MEDICAL last: its abbreviation wins for a shared long form
    for _abbr, _long in _table.items():
        if len(_key(_long)) > 1 and _WORD.fullmatch(_abbr):
            _BY_LONG_FORM[_key(_long)] = _abbr


def abbreviation_of(long_form_text: str) -> str | None:
    """The abbreviation of a long form ("chronic obstructive pulmonary disease" -> "copd"), or None."""
    return _BY_LONG_FORM.get(_key(long_form_text))


def long_forms() -> dict[tuple[str, ...], str]:
    """Every multi-word long form (as a tuple of lower-case words) with its abbreviation."""
    return dict(_BY_LONG_FORM)
