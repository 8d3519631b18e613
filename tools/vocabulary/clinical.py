"""The clinical word lists a question reader needs, in one place: cancers, immunosuppression (drugs,
transplants, HIV, chemotherapy), examinations (screening, incidental, breast), nodule types and the
patient-level and nodule-level risk factors.

Each list is plain words; :func:`alternation` turns one into a regular-expression alternation, so a
reader (agent/frame/text.py) and the test corpus (bench/frame_corpus.py) draw on the same vocabulary.
Shorthand ("hx", "s/p", "MMF", "CT A/P") is expanded first by :mod:`tools.vocabulary.normalise`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# --- history that takes a patient out of the Fleischner tables -------------------------------------------
CANCER_TYPES = ("melanoma", "lymphoma", "Hodgkin", "Hodgkin's", "myelodysplastic", "plasmacytoma", "sarcoma", "leukemia", "leukaemia", "myeloma", "carcinoma", "mesothelioma",
                "seminoma", "neuroblastoma", "glioblastoma", "adenocarcinoma", "cholangiocarcinoma")
# cancer acronyms; those that are also words ("ALL", "all") count only in capitals
CANCER_ACRONYMS = ("NSCLC", "SCLC", "DCIS", "HCC", "RCC", "GIST", "AML", "CLL", "CML", "NHL", "DLBCL", "MCL", "SCC",
                   "NPC", "GBM")
CANCER_ACRONYMS_CAPITALS = ("ALL",)
CANCER_WORDS = ("cancer", "malignancy", "malignancies", "neoplasm", "tumour", "tumor", "metastases",
                "metastatic disease")
# words before a cancer word that make it the patient's own history
CANCER_HISTORY_CUES = ("history of", "known", "prior", "previous", "treated", "resected", "metastatic", "active",
                       "current", "recurrent", "remote", "stage", "survivor", "status post", "s/p", "on treatment for",
                       "undergoing treatment for", "diagnosed with", "underwent", "post", "in remission from",
                       "with", "has", "had", "for")
IMMUNOSUPPRESSANTS = ("tacrolimus", "mycophenolate", "mycophenolic", "azathioprine", "cyclosporine", "ciclosporin",
                      "sirolimus", "everolimus", "belatacept", "basiliximab", "rituximab", "methotrexate",
                      "cyclophosphamide", "prednisone", "prednisolone", "methylprednisolone", "dexamethasone",
                      "steroids", "corticosteroids", "infliximab", "adalimumab", "etanercept", "tofacitinib",
                      "fingolimod", "alemtuzumab", "leflunomide", "immunosuppressants", "immunosuppression",
                      "immunosuppressive", "biologics", "anti-rejection", "antirejection")
TRANSPLANTS = ("transplant", "transplanted", "transplantation", "allograft", "graft recipient")
IMMUNE_DISEASES = ("HIV", "AIDS", "neutropenia", "neutropenic", "immunodeficiency", "immunocompromised",
                   "immunosuppressed", "SCID", "CVID", "agammaglobulinemia")
CHEMOTHERAPY = ("chemotherapy", "chemo", "immunotherapy", "checkpoint inhibitor")

# --- examinations ----------------------------------------------------------------------------------------
SCREENING_EXAMS = ("LDCT", "low-dose CT", "low dose CT", "screening CT", "lung screening", "lung cancer screening",
                   "annual CT", "annual LDCT", "annual screening", "LCS")
# a CT done for something else: a nodule on it is incidental (Fleischner), whatever the patient's smoking
INCIDENTAL_EXAMS = ("CTA", "CTPA", "CT angiogram", "CT angiography", "CT pulmonary angiogram", "coronary CTA",
                    "CCTA", "cardiac CT", "coronary CT", "calcium score", "calcium scoring", "CT abdomen",
                    "CT abdomen and pelvis", "CT of the abdomen", "abdominal CT", "CT abd", "CT A/P", "CT AP",
                    "trauma CT", "staging CT", "pre-op CT", "preoperative CT", "neck CT", "CT neck", "spine CT",
                    "CT spine", "renal CT", "CT urogram", "PET-CT", "PET/CT", "CT for PE", "CT chest for PE")
BREAST_EXAMS = ("mammogram", "mammography", "mammo", "tomosynthesis", "DBT", "breast ultrasound", "breast US",
                "breast MRI", "MRI breast", "breast MR")

# --- nodule types -----------------------------------------------------------------------------------------
GROUND_GLASS_WORDS = ("ground-glass", "ground glass", "groundglass", "GGN", "GGO", "pGGN", "non-solid", "nonsolid")
PART_SOLID_WORDS = ("part-solid", "part solid", "partly solid", "semi-solid", "semisolid", "mixed density", "PSN")
SUBSOLID_WORDS = ("subsolid", "sub-solid")
# a nodule type as a calculator argument may be written ("GGN", "non_solid", "semisolid"): its canonical value
NODULE_TYPE_ALIASES = {
    "solid": "solid",
    "ground_glass": "ground_glass",
    "groundglass": "ground_glass",
    "ggn": "ground_glass",
    "ggo": "ground_glass",
    "pure_ground_glass": "ground_glass",
    "non_solid": "ground_glass",
    "nonsolid": "ground_glass",
    "part_solid": "part_solid",
    "partsolid": "part_solid",
    "partly_solid": "part_solid",
    "semi_solid": "part_solid",
    "semisolid": "part_solid",
}
# the solid part of a part-solid nodule: "solid component", "solid bit", "solid part"
SOLID_PART_NOUNS = ("component", "portion", "part", "core", "element", "bit", "focus", "area", "comp")

# --- risk (Fleischner): the patient's history, and features of the nodule ---------------------------------
PATIENT_RISK_FACTORS = {
    "asbestos/radon/uranium exposure": r"\basbestos|\bradon\b|\buranium\b",
    "family history of lung cancer": r"\bfamily\s+history\s+of\s+lung\s+cancer|\bfamily\s+hx\s+(?:of\s+)?lung|"
                                     r"\b(?:father|mother|brother|sister|sibling|parent|dad|mom|mum)\s+"
                                     r"(?:\w+\s+){0,3}lung\s+(?:cancer|ca)\b|\bFH\s+(?:of\s+)?lung\s+ca",
    "emphysema or pulmonary fibrosis": r"\bemphysema\w*|\bCOPD\b|\bpulmonary\s+fibrosis\b|\bILD\b|\bfibrotic\b|"
                                       r"\binterstitial\s+lung\s+disease\b",
}
NODULE_RISK_FEATURES = {
    "spiculated or irregular margins": r"\bspiculat\w*|\birregular\s+(?:margin|border|contour)",
    "upper-lobe location": r"\bupper[- ]lobe\b|\b[RL]UL\b|\bapical\b|\bapex\b",
}


# --- questions ---------------------------------------------------------------------------------------------
# a question about screening eligibility or the screening criteria (answered by the USPSTF tables, not by the
# nodule tables): used by the frame reader and by the routing hint
ELIGIBILITY = re.compile(r"\beligib\w*|\bqualif\w*|\bshould\s+(?:she|he|they|I|we|the\s+patient)\s+(?:be\s+)?"
                         r"(?:get\s+|have\s+)?screen|\bcandidate\s+for\s+(?:lung\s+cancer\s+|breast\s+cancer\s+)?"
                         r"screen|\bscreening\s+(?:recommended|indicated|appropriate)|\bstart\s+screening\b|"
                         r"\bneed\s+(?:a\s+)?screening\b|\bbe\s+screened\b|\bscreening\s+(?:criteria|eligibility|recommendations?)\b|"
                         r"\b(?:criteria|recommendations?|guidelines?)\s+for\s+(?:lung\s+|breast\s+)?(?:cancer\s+)?screening\b|"
                         r"\bwho\s+(?:is\s+eligible|qualifies|should\s+be\s+screened)\b|\b(?:what|which)\s+age\b[^.?!]{0,50}?"
                         r"\b(?:start|begin|stop)\w*|\bwhen\s+(?:to|should\s+\w+)\s+(?:start|begin|stop)\s+(?:screening|mammo\w*|"
                         r"LDCT)|\bscreening\s+(?:mammo\w*\s+)?(?:interval|frequency)\b|\bhow\s+often\s+(?:\w+\s+){0,3}"
                         r"(?:mammo\w*|screen\w*|LDCT)|\b(?:get|have|start|due\s+for)\s+(?:an?\s+|her\s+|his\s+)?"
                         r"(?:annual\s+|yearly\s+)?(?:screening\s+)?(?:mammo\w*|LDCT|low-dose\s+CT)\b|\bdue\s+for\s+"
                         r"(?:lung\s+|breast\s+)?(?:cancer\s+)?screening\b|\bscreen\s+(?:him|her|them|this\s+\w+|with\s+(?:an?\s+)?"
                         r"(?:LDCT|low-dose\s+CT|CT|mammo\w*))\b", re.I)
# a question about earlier studies or reports (and a change since them)
PRIOR_STUDY = re.compile(r"\b(prior|previous|earlier|last|first|old|baseline|before)\b.*\b(report|study|studies|"
                         r"ct|scan|imaging|exam\w*|x-?ray|radiograph|ultrasound|mammogra\w*|mri)\b|"
                         r"\b(compar\w*|change[ds]?|stable|grown|growth|interval)\b", re.I)


def alternation(words: Iterable[str]) -> str:
    """A regex alternation of ``words`` (longest first, spaces and hyphens interchangeable)."""
    parts = sorted({w for w in words}, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"[\s-]").replace(r"\-", r"[\s-]?") for w in parts)


def word_pattern(words: Iterable[str], flags: int = re.I) -> re.Pattern[str]:
    """``words`` as whole words."""
    return re.compile(rf"(?<![\w/-])(?:{alternation(words)})(?![\w])", flags)
