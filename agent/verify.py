"""Citation verifier: every cited id exists and supports its sentence; uncited clinical claims are marked.

Support is lexical, and a cited sentence must not contradict its evidence (agent/contradiction.py:
intervals, categories, probabilities, labels, negations). Lexical support: the sentence's content words (lower-cased, cut to a 5-letter stem) must overlap
the cited evidence's text (quote, title, section, facts), and every number in the sentence must occur
in the cited evidence. Cheap, deterministic and explainable: the verifier says *why* a sentence is
unsupported. A sentence is a clinical claim when it names a clinical or imaging concept or a
measurement; greetings, offers of help and the decision-support disclaimer are not claims.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.contradiction import contradiction
from agent.evidence import Evidence, Ledger

CITE = re.compile(r"\[(E\d+(?:\s*[,;]\s*E?\d+)*)\]")
_WORD = re.compile(r"[a-z][a-z\-]+|\d+(?:\.\d+)?")
_STOP = set(["a", "an", "the", "and", "or", "of", "to", "in", "on", "for", "with", "without", "by", "from", "at", "as", "is", "are", "was", "were", "be", "been", "being", "this", "that", "these", "those", "it", "its", "their", "there", "here", "which", "who", "whom", "whose", "what", "when", "where", "why", "how", "not", "no", "yes", "can", "could", "may", "might", "should", "would", "will", "shall", "do", "does", "did", "done", "has", "have", "had", "than", "then", "also", "only", "such", "into", "over", "under", "about", "between", "per", "very", "more", "most", "less", "least", "other", "any", "all", "some", "each", "both", "either", "neither", "your", "you", "we", "our", "i", "me", "my", "they", "them", "he", "she", "his", "her", "e", "g", "ie", "eg", "based", "according", "using", "use", "used", "shows", "show", "showed", "suggests", "suggest", "see", "seen"])
_CLINICAL = re.compile(
    r"\b(nodul\w*|mass\w*|lesion\w*|pneumon\w*|cardiomegal\w*|effusion|pneumothorax|opacit\w*|consolidat\w*|"
    r"atelecta\w*|edema|fracture\w*|tumou?r\w*|cancer\w*|malignan\w*|benign\w*|metasta\w*|biops\w*|"
    r"follow[- ]?up|surveillance|screen\w*|ct|ldct|mri|pet|mammogra\w*|ultrasound|tomosynthesis|radiograph\w*|"
    r"x-?ray\w*|bi-?rads|lung-?rads|fleischner|uspstf|category|probabilit\w*|likelihood|risk|"
    r"finding\w*|abnormal\w*|normal|suspicious|diagnos\w*|recommend\w*|guideline\w*|months?|years?|mm|cm|"
    r"pack-?years?|smok\w*|calcifi\w*|solid|ground-?glass|part-?solid|heart|lungs?|breasts?|chest|pleura\w*|"
    r"classifier|model|prior|report\w*|study|image|modality|view|abstain\w*|caution)\b", re.I)
_NOT_CLAIM = re.compile(
    r"^(hello|hi|thanks|thank you|you're welcome|i can help|i'm|i am|how can i|feel free|let me know|"
    r"please (attach|provide|ask|consult)|i could not|i cannot|i can't|sorry)\b|"
    # the agent's own statements about how it read the question and what its tools cover
    r"^(read as|assumed|not done|no installed model|the installed models|the bundled (nodule )?guidelines|"
    r"i am radconsult|you're welcome|hello\. i am|ask again whenever|"
    r"no patient is attached|the recommendation depends on)\b|"
    r"decision support|not a diagnosis|clinician (decides|must)|consult (a|your) (radiologist|clinician|physician)",
    re.I)


@dataclass
class SentenceCheck:
    text: str
    cited: list[str]
    status: str          # supported | unsupported | contradicted | empty | no_claim
    reason: str = ""


@dataclass
class Verification:
    sentences: list[SentenceCheck] = field(default_factory=list)
    invalid_ids: list[str] = field(default_factory=list)

    @property
    def unsupported(self) -> list[str]:
        return [s.text for s in self.sentences if s.status == "unsupported"]

    @property
    def cited_ids(self) -> list[str]:
        seen: list[str] = []
        for s in self.sentences:
            for c in s.cited:
                if c not in seen:
                    seen.append(c)
        return seen

    @property
    def citation_validity(self) -> float | None:
        """Share of (sentence, cited id) pairs whose id exists and supports the sentence; None if no citations."""
        pairs = sum(len(s.cited) for s in self.sentences)
        if not pairs:
            return None
        bad = sum(1 for s in self.sentences for c in s.cited
                  if c in self.invalid_ids or s.status == "contradicted"
                  or (s.status == "unsupported" and "does not support" in s.reason))
        return 1 - bad / pairs

    @property
    def claim_count(self) -> int:
        return sum(1 for s in self.sentences if s.status != "no_claim")

    def marked_answer(self) -> str:
        """The answer with each unsupported sentence visibly marked."""
        out = []
        for s in self.sentences:
            out.append(f"{s.text} [{s.status}: {s.reason}]" if s.status in ("unsupported", "contradicted") else s.text)
        return " ".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"sentences": [asdict(s) for s in self.sentences], "invalid_ids": self.invalid_ids,
                "unsupported_sentences": self.unsupported, "citation_validity": self.citation_validity}


def split_sentences(text: str) -> list[str]:
    """Sentences, line by line: a line break (a list item, a paragraph) always ends a sentence."""
    out: list[str] = []
    for line in re.split(r"\n+", text):
        line = re.sub(r"\s+", " ", re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", "", line)).strip()
        parts = re.split(r"(?<=[.!?])\s+(?=[A-Z(\"'\[*])|(?<=\])\s+(?=[A-Z])", line)
        out += [p.strip() for p in parts if p.strip() and re.search(r"\w", p)]
    return out


def _stems(text: str) -> set[str]:
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP and not w.isdigit() and len(w) > 2}


def _numbers(text: str) -> set[str]:
    """The numbers in ``text``, written one way ("8.0" and "8" are the same number)."""
    return {f"{float(n):g}" for n in re.findall(r"(?<![E\w])\d+(?:\.\d+)?", text)}


def _support_numbers(text: str) -> set[str]:
    """The numbers of evidence text, with each probability also as a percentage (0.03 supports "3%")."""
    nums = _numbers(text)
    for n in list(nums):
        value = float(n)
        if 0 < value < 1:
            pct = round(value * 100, 1)
            nums.add(f"{pct:g}")
    return nums


def parse_ids(token: str) -> list[str]:
    return [("E" + x.lstrip("Ee")) for x in re.split(r"\s*[,;]\s*", token.strip())]


_DANGLING = re.compile(r"\b(as|of|to|at|in|for|with|is|are|was|were|by|the|a|an|and|or|from|than|be)\W*$", re.I)


_RECOMMENDS = re.compile(r"\b(?:is|are)\s+(?:not\s+)?(?:recommended|needed|advised|required|indicated|necessary)\b|"
                         r"\bshould\s+(?:be|have|undergo|get|receive|repeat)\b|\bno\s+(?:further\s+)?follow[- ]?up\b|"
                         r"\b(?:I|we)\s+recommend\b|^\W*(?:recommend|consider|repeat|obtain|perform)\b", re.I)
_REPORTED = re.compile(r"\b(?:report|reports|radiologist|reader|study|it|they)\s+(?:\w+\s+){0,3}(?:recommended|advised|"
                       r"suggested|stated|said|noted)\b|\bwas\s+(?:recommended|advised|suggested)\b|\b(?:dated|on)\s+"
                       r"\d{4}-\d{2}-\d{2}", re.I)


def recommends(plain: str) -> bool:
    """The sentence itself recommends a course of action (not a report's recommendation, told as such)."""
    return bool(_RECOMMENDS.search(plain)) and not _REPORTED.search(plain)


def is_empty(plain: str) -> bool:
    """A sentence with no content of its own: only markers, or cut off ("The follow-up is recommended as")."""
    words = re.findall(r"[A-Za-z]{2,}", plain)
    return len(words) < 2 or bool(_DANGLING.search(plain.strip().rstrip(".!?:;, ")))


def is_claim(sentence: str) -> bool:
    plain = CITE.sub("", sentence).strip()
    if plain.endswith("?") or _NOT_CLAIM.search(plain):
        return False
    return names_clinical_concept(plain)


def names_clinical_concept(text: str) -> bool:
    """True when ``text`` names a clinical or imaging concept or a measurement (a clinical topic)."""
    return bool(_CLINICAL.search(text) or re.search(r"\d+(\.\d+)?\s*(%|mm|cm|months?|years?)", text))


_RESTATE_NEUTRAL = {"patie", "descr", "prese", "quest", "case", "perso", "indiv", "consi", "curre", "repor"}


_YES_NO = re.compile(r"^\W*(is|are|was|were|do|does|did|has|have|had|can|could|should|would|will|may|might)\b",
                     re.I)


def restates(sentence: str, question: str) -> bool:
    """True when ``sentence`` only repeats what the user said ("The patient has a 7 mm solid nodule."):
    every number and every content stem come from the question, apart from words that add nothing
    ("patient", "described"). The user's own facts need no source; any new word makes it a claim."""
    if not question or _YES_NO.match(question):  # "Was it stable?" -> "It was stable." is an answer
        return False
    words, nums = _stems(sentence), _numbers(sentence)
    if not words or not nums or nums - _numbers(question):  # the user's measurements, repeated
        return False
    return not (words - _stems(question) - _RESTATE_NEUTRAL)


def check_sentence(sentence: str, ledger: Ledger, question: str = "") -> SentenceCheck:
    """Numbers the user gave in ``question`` (a nodule's size) may be repeated without evidence."""
    ids: list[str] = []
    for token in CITE.findall(sentence):
        ids += parse_ids(token)
    plain = CITE.sub("", sentence)
    if ids and is_empty(plain):
        return SentenceCheck(sentence, ids, "empty", "says nothing but its citation")
    if not ids:
        if is_claim(sentence):
            if restates(plain, question):
                return SentenceCheck(sentence, [], "no_claim", "restates the question")
            return SentenceCheck(sentence, [], "unsupported", "clinical statement without a citation")
        return SentenceCheck(sentence, [], "no_claim")
    missing = [i for i in ids if i not in ledger]
    if missing:
        return SentenceCheck(sentence, ids, "unsupported", f"cites {', '.join(missing)}, which does not exist")
    evidence: list[Evidence] = [e for i in ids if (e := ledger.get(i)) is not None]
    support = " ".join(e.support_text() for e in evidence)
    words = _stems(plain)
    overlap = words & _stems(support)
    nums = _numbers(plain) - _support_numbers(support) - _numbers(question)
    if words and not overlap:
        return SentenceCheck(sentence, ids, "unsupported", f"cited {', '.join(ids)} does not support this sentence")
    conflict = contradiction(plain, evidence, question)
    if conflict:
        return SentenceCheck(sentence, ids, "contradicted", conflict)
    if recommends(plain) and not any(e.kind in ("guideline", "calculator") for e in evidence):
        return SentenceCheck(sentence, ids, "unsupported", "a recommendation must rest on a guideline or calculator, "
                                                           "not on a report's or a header's own text")
    if nums:
        return SentenceCheck(sentence, ids, "unsupported",
                             f"number(s) {', '.join(sorted(nums))} not found in {', '.join(ids)} (does not support)")
    return SentenceCheck(sentence, ids, "supported")


def verify(answer: str, ledger: Ledger, question: str = "") -> Verification:
    result = Verification()
    for sentence in split_sentences(answer):
        check = check_sentence(sentence, ledger, question)
        result.sentences.append(check)
        for c in check.cited:
            if c not in ledger and c not in result.invalid_ids:
                result.invalid_ids.append(c)
    return result


# sentence spans in the original text (formatting kept), split like split_sentences
_SPAN_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'\[*])|\n+")


def _spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SPAN_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def best_support(sentence: str, ledger: Ledger, question: str = "", min_overlap: int = 3,
                 min_share: float = 0.6) -> Evidence | None:
    """The evidence item that clearly supports an uncited ``sentence``, or None.

    Stricter than the check of a cited sentence: at least ``min_overlap`` content stems and
    ``min_share`` of the sentence's stems occur in the item, and every number in the sentence (other
    than the question's) occurs in it. Ties go to the earliest item.
    """
    words = _stems(sentence)
    if len(words) < min_overlap:
        return None
    nums = _numbers(sentence) - _numbers(question)
    best, best_share = None, 0.0
    for e in ledger.items:
        support = e.support_text()
        if nums - _numbers(support):
            continue
        hit = words & _stems(support)
        share = len(hit) / len(words)
        if len(hit) >= min_overlap and share >= min_share and share > best_share:
            best, best_share = e, share
    return best


def attribute(answer: str, ledger: Ledger, question: str = "") -> tuple[str, list[str]]:
    """Cite the evidence behind uncited clinical sentences that one ledger item clearly supports.

    Small models often state a tool's result correctly but forget the [En] marker. The id is
    inserted before the sentence's closing punctuation; the sentences changed are returned so the
    turn can record that the verifier, not the model, added these citations. Sentences without
    such support stay uncited and are marked unsupported as before.
    """
    added: list[str] = []
    out, last = [], 0
    for a, b in _spans(answer):
        sentence = answer[a:b]
        plain = sentence.strip()
        if CITE.search(plain) or not is_claim(plain):
            continue
        ev = best_support(plain, ledger, question)
        if ev is None:
            continue
        stripped = sentence.rstrip()
        end = a + len(stripped)
        cut = end - 1 if stripped[-1:] in ".!?" else end
        out.append(answer[last:cut] + f" [{ev.id}]")
        last = cut
        added.append(plain)
    out.append(answer[last:])
    return "".join(out), added
