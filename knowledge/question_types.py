"""What a question asks for (its type) and what a passage is about, so that retrieval can prefer the
passage of the asked type among passages on the same subject ("symptoms of X" against X's treatment).

Each type has two cue lists, written once here: how a *question* asks for it (full words, clinicians'
shorthand such as "tx", "sx", "f/u", lay phrasing such as "run in families", "how long will I live"),
and how a *passage or its heading* says it is of that type ("Signs and symptoms", "is inherited in an
autosomal recessive pattern", "Treatment options"). Cues are generic English and clinical words, never
the templates of one corpus.

:func:`question_types` reads a query; :func:`passage_types` scores a chunk from its heading path
(strong evidence: a section named "Treatment") and its text (weaker, saturating with the number of
cues), both as vectors over :data:`TYPES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QuestionType:
    name: str
    asks: re.Pattern[str]  # in a question
    says: re.Pattern[str]  # in a heading or a passage


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")", re.IGNORECASE)


TYPES: tuple[QuestionType, ...] = (
    QuestionType("definition",
                 _words(r"what(?:'s| is| are)\b(?! the (?:symptom|sign|cause|treatment|risk|outlook|prognosis))",
                        r"define", r"definition", r"meaning of", r"overview", r"explain", r"tell me about",
                        r"information (?:on|about)", r"describe"),
                 _words(r"is an? (?:rare |common |chronic |type |form |group |condition|disease|disorder)",
                        r"are a (?:group|type|family)", r"refers to", r"is defined as", r"overview",
                        r"what is", r"is a condition", r"is a disorder", r"is a disease")),
    QuestionType("symptoms",
                 _words(r"symptom", r"signs?\b", r"sx\b", r"present(?:s|ation)?\b", r"manifest", r"feel like",
                        r"clinical features", r"look like", r"warning signs", r"complain"),
                 _words(r"symptom", r"signs? (?:and|of|include)", r"present(?:s)? with", r"manifestation",
                        r"clinical features", r"may (?:experience|have|develop|notice)", r"characterized by")),
    QuestionType("cause",
                 _words(r"caus", r"why do", r"why does", r"etiolog", r"aetiolog", r"what leads to",
                        r"pathogenesis", r"trigger", r"due to", r"reason for"),
                 _words(r"caus", r"due to", r"results? from", r"triggered", r"etiolog", r"aetiolog",
                        r"responsible for", r"leads? to")),
    QuestionType("risk",
                 _words(r"risk", r"who (?:gets|is at|is likely|gets)", r"at risk", r"susceptib", r"more likely",
                        r"predispos", r"chance of getting"),
                 _words(r"risk factor", r"at (?:higher |increased )?risk", r"increases? (?:the |your )?risk",
                        r"more likely", r"susceptib", r"predispos")),
    QuestionType("diagnosis",
                 _words(r"diagnos", r"dx\b", r"test(?:s|ed|ing)?\b", r"work-?up", r"detect", r"find out if",
                        r"confirm", r"imaging for", r"how (?:is|are|do|can) .{0,40}(?:found|identified|checked)"),
                 _words(r"diagnos", r"tests?\b", r"exam(?:ination)?s?\b", r"biops", r"imaging", r"detect",
                        r"blood test", r"physical exam", r"scan\b")),
    QuestionType("treatment",
                 _words(r"treat", r"tx\b", r"therap", r"manag", r"mgmt", r"cure", r"medication", r"meds\b",
                        r"drugs? for", r"what helps", r"options? for", r"surgery for", r"how (?:is|are) .{0,40}handled"),
                 _words(r"treat", r"therap", r"surgery", r"medication", r"manag", r"chemotherapy",
                        r"radiation therapy", r"drugs?\b", r"options? (?:include|are)")),
    QuestionType("prognosis",
                 _words(r"prognos", r"outlook", r"surviv", r"life expectancy", r"how long (?:will|can|do)",
                        r"recover", r"chance of (?:recovery|survival|cure)", r"fatal", r"die\b", r"curable",
                        r"expect", r"long[- ]term"),
                 _words(r"prognos", r"outlook", r"surviv", r"life expectancy", r"recover", r"chance of",
                        r"fatal", r"life-threatening", r"long-term")),
    QuestionType("prevention",
                 _words(r"prevent", r"avoid", r"reduce (?:the |my |your )?(?:risk|chance)", r"lower (?:the |my )?risk",
                        r"stop .{0,20}from", r"protect", r"prophyla", r"vaccin"),
                 _words(r"prevent", r"avoid", r"reduce (?:the |your )?risk", r"lower (?:the |your )?risk",
                        r"protect", r"prophyla", r"vaccin")),
    QuestionType("inheritance",
                 _words(r"inherit", r"hereditar", r"run(?:s)? in (?:the )?famil", r"passed (?:down|on)",
                        r"genetic\b", r"familial", r"from (?:my|their|his|her) parents", r"kids? get it"),
                 _words(r"inherit", r"autosomal", r"x-linked", r"hereditar", r"passed (?:down|on|from)",
                        r"runs? in famil", r"familial", r"de novo")),
    QuestionType("genetics",
                 _words(r"genes?\b", r"mutation", r"genetic change", r"chromosom", r"variant"),
                 _words(r"genes?\b", r"mutations?", r"chromosom", r"variants?\b", r"encodes?", r"protein")),
    QuestionType("frequency",
                 _words(r"how (?:common|many|often does|frequent|rare)", r"prevalen", r"incidence",
                        r"frequen", r"number of (?:people|cases|patients)", r"statistic"),
                 _words(r"prevalen", r"incidence", r"affects? (?:about|approximately|an estimated|\d)",
                        r"\d[\d,]* (?:in|per|out of) [\d,]+", r"estimated", r"common", r"rare\b",
                        r"people (?:in|worldwide)")),
    QuestionType("stages",
                 _words(r"stag", r"grade", r"spread", r"metasta", r"how advanced"),
                 _words(r"stag", r"grade", r"spread", r"metasta", r"tnm")),
    QuestionType("research",
                 _words(r"research", r"clinical trial", r"stud(?:y|ies)", r"new treatments?", r"experimental"),
                 _words(r"research", r"clinical trial", r"stud(?:y|ies)", r"investigat", r"funded")),
    QuestionType("follow_up",
                 _words(r"follow[- ]?up", r"f/u", r"fu\b", r"interval", r"how often", r"when (?:should|do|to) .{0,30}"
                        r"(?:repeat|rescan|recheck|image|scan|return)", r"surveillance", r"repeat", r"monitor"),
                 _words(r"follow[- ]?up", r"interval", r"surveillance", r"every \d", r"repeat(?:ed)? (?:ct|imaging|in)",
                        r"\d+(?:-\d+)? (?:months|years)\b", r"annual", r"monitor")),
    QuestionType("eligibility",
                 _words(r"eligib", r"qualif", r"candidate", r"who should (?:be|get|have)", r"criteria",
                        r"indicat", r"should (?:i|she|he|they) (?:be|get|have)", r"recommended for"),
                 _words(r"eligib", r"criteria", r"candidate", r"recommended for", r"should (?:be|undergo)",
                        r"aged? \d", r"indicat")),
    QuestionType("complications",
                 _words(r"complication", r"side effect", r"adverse", r"what (?:can|could) happen", r"harm",
                        r"danger", r"risks of (?:the )?(?:treatment|surgery|procedure|test|screening)"),
                 _words(r"complication", r"side effect", r"adverse", r"harms?\b", r"overdiagnos", r"false[- ]positive")),
)
NAMES = tuple(t.name for t in TYPES)
VERSION = "1"  # stored beside each chunk's types: a change of the cues above makes readers recompute them


def question_types(query: str) -> np.ndarray:
    """Which types ``query`` asks for: a vector over :data:`TYPES`, 1 for each type whose question cues
    appear, divided by how many do (a question asking two things splits its weight); all zeros when it
    names none (then no type is preferred)."""
    hits = np.asarray([1.0 if t.asks.search(query) else 0.0 for t in TYPES], dtype=np.float32)
    specific = hits.copy()
    specific[0] = 0.0  # "what is ..." is only a definition when nothing more specific is asked
    if specific.any():
        hits = specific
    total = hits.sum()
    return hits / total if total else hits


def passage_types(heading: str, text: str, heading_weight: float = 2.0) -> np.ndarray:
    """How much a chunk is of each type: cues in its heading path count ``heading_weight`` each, cues
    in its text once each, saturating (x / (1 + x)) so that a long passage full of one word does not
    outweigh a section that is named for the type. Values in [0, 1)."""
    out = np.zeros(len(TYPES), dtype=np.float32)
    for i, t in enumerate(TYPES):
        x = heading_weight * len(t.says.findall(heading)) + len(t.says.findall(text))
        out[i] = x / (1.0 + x)
    return out


def encode(types: np.ndarray) -> str:
    """A chunk's type vector as stored in its metadata: the version, then two decimals per type."""
    return VERSION + ":" + ",".join(f"{x:.2f}".rstrip("0").rstrip(".") for x in types)


def decode(stored: object) -> np.ndarray | None:
    """The vector :func:`encode` stored, or None when absent, malformed or of another version."""
    if not isinstance(stored, str) or not stored.startswith(VERSION + ":"):
        return None
    try:
        values = np.asarray([float(x) for x in stored[len(VERSION) + 1:].split(",")], dtype=np.float32)
    except ValueError:
        return None
    return values if values.shape == (len(TYPES),) else None
