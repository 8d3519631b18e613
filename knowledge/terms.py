"""Word forms for lexical matching: British and American spellings, plural and verb endings, and
medical abbreviations, so that a query and a passage that name the same thing differently still meet.

* :func:`spelling` maps British spellings to American ones (oedema -> edema, haemorrhage ->
  hemorrhage, tumour -> tumor, paediatric -> pediatric, anaesthesia -> anesthesia ...);
* :func:`stem` strips plural and common verb endings conservatively (effusions -> effusion,
  opacities -> opacity, viruses -> virus, treated/treating -> treat, diagnosed -> diagnos);
* :class:`Abbreviations` knows the product's abbreviations (:mod:`tools.vocabulary.abbreviations`) and learns a corpus's own from the
  way documents define them ("acute lymphoblastic leukemia (ALL)"), and expands a query with the
  long form of each abbreviation it uses, or the abbreviation of a long form it spells out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from tools.vocabulary.abbreviations import MEDICAL, expand, long_forms

# --- spelling ---------------------------------------------------------------------------------------
_OUR_WORDS = frozenset(["tumour", "humour", "behaviour", "colour", "labour", "odour", "vapour", "favour", "rigour"])
_TRE_WORDS = frozenset(["litre", "centre", "fibre", "metre", "calibre", "millilitre", "centimetre", "millimetre", "micrometre"])
_SPELLING = [
    (re.compile(r"^an(a)?aesth"), "anesth"),  # anaesthesia, anaesthetic
    (re.compile(r"aem"), "em"),  # anaemia, leukaemia, ischaemia, haemorrhage, haematoma
    (re.compile(r"^haem"), "hem"),
    (re.compile(r"^oe(?=[a-z]{3})"), "e"),  # oedema, oesophagus, oestrogen
    (re.compile(r"oea(?=$|l)"), "ea"),  # diarrhoea, dyspnoea, gonorrhoea, diarrhoeal
    (re.compile(r"^foet"), "fet"),
    (re.compile(r"^coeli"), "celi"),
    (re.compile(r"paed"), "ped"),  # paediatric, orthopaedic
    (re.compile(r"isation$"), "ization"),
]


def spelling(token: str) -> str:
    """The American spelling of a lower-case token (tokens that are not British come back as they are)."""
    if len(token) < 4 or token.isdigit():
        return token
    if token in _OUR_WORDS or (token.endswith("ours") and token[:-1] in _OUR_WORDS):
        return token.replace("our", "or")
    if token in _TRE_WORDS or (token.endswith("tres") and token[:-1] in _TRE_WORDS):
        return token.replace("tre", "ter")
    for pattern, replacement in _SPELLING:
        token = pattern.sub(replacement, token)
    return token


# --- stemming -----------------------------------------------------------------------------------------
_KEEP_S = ("ss", "us", "is", "ys")


def stem(token: str) -> str:
    """A conservative suffix stripper for English medical text.

    Plurals: effusions -> effusion, opacities -> opacity, viruses -> virus, masses -> mass, sinuses ->
    sinus; -ss, -us, -is endings stay (mass, virus, diagnosis). Verb endings: treated, treating ->
    treat; diagnosed -> diagnos (as diagnose -> diagnos). Numbers and short tokens stay as they are."""
    if len(token) <= 3 or not token.isalpha():
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(("sses", "uses", "xes", "ches", "shes", "zes")):
        return token[:-2]
    if token.endswith("s") and not token.endswith(_KEEP_S):
        token = token[:-1]
    if token.endswith("ing") and len(token) > 6:
        base = token[:-3]
        return base[:-1] if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz" else base
    if token.endswith("ed") and len(token) > 5:
        base = token[:-2]
        return base[:-1] if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz" else base
    if token.endswith("e") and len(token) > 4 and not token.endswith(("ee", "ie", "le", "ye")):
        return token[:-1]  # diagnose -> diagnos, like diagnosed; cause -> caus, like caused
    return token


# --- abbreviations ------------------------------------------------------------------------------------
# The table itself is the product's one vocabulary (tools.vocabulary.abbreviations), shared with the
# case-frame reader; here only what retrieval adds: the abbreviations a corpus defines for itself.
_DEFINITION = re.compile(r"((?:[A-Za-z][\w'-]*[\s,]+){1,10})\(([A-Za-z][A-Za-z0-9-]{1,9})\)")
_WORD = re.compile(r"[a-z0-9]+")
_WRITTEN = re.compile(r"[A-Za-z0-9]+")


def written_words(text: str) -> list[str]:
    """A text's words as written (case kept), for :meth:`Abbreviations.expand`."""
    return _WRITTEN.findall(text)


def _initials_match(abbr: str, words: list[str]) -> int:
    """How many of ``words`` (from the end) the abbreviation spells out; 0 when it does not fit.
    Schwartz and Hearst's rule, simplified: the abbreviation's first letter starts the first word,
    and its letters appear in order in the words."""
    letters = [c for c in abbr.lower() if c.isalpha()]
    if len(letters) < 2:
        return 0
    for n in range(1, min(len(words), len(letters) + 3) + 1):
        span = words[-n:]
        if not span[0].startswith(letters[0]):
            continue
        text, pos = " ".join(span), 0
        for c in letters:
            pos = text.find(c, pos)
            if pos < 0:
                break
            pos += 1
        else:
            if len(span) >= len(letters) - 1:
                return n
    return 0


class Abbreviations:
    """Abbreviation -> long form: the product's vocabulary (:mod:`tools.vocabulary.abbreviations`) and the
    definitions found in a corpus."""

    def __init__(self, learned: dict[str, str] | None = None) -> None:
        self.learned: dict[str, str] = {k: v for k, v in (learned or {}).items() if k not in MEDICAL}
        self.short: dict[tuple[str, ...], str] = {**long_forms(),
                                                  **{tuple(_WORD.findall(v)): k for k, v in self.learned.items()}}

    @classmethod
    def learn(cls, texts: Iterable[str], min_count: int = 1) -> Abbreviations:
        """Abbreviations that ``texts`` define ("long form (ABBR)"); the most frequent long form wins."""
        seen: dict[str, Counter[str]] = {}
        for text in texts:
            for m in _DEFINITION.finditer(text):
                abbr = m.group(2)
                if not any(c.isupper() for c in abbr[1:] + abbr[0]) or abbr.lower() in ("i", "ii", "iii"):
                    continue
                words = _WORD.findall(m.group(1).lower())
                n = _initials_match(abbr, words)
                if n:
                    seen.setdefault(abbr.lower(), Counter())[" ".join(words[-n:])] += 1
        learned = {a: c.most_common(1)[0][0] for a, c in seen.items() if c.most_common(1)[0][1] >= min_count}
        return cls(learned)

    def expand(self, tokens: list[str]) -> list[str]:
        """Words to add to a query's ``tokens`` (its words as written): long forms of its abbreviations
        and abbreviations of the long forms it spells out. An abbreviation that is also an ordinary
        word ("ALL", "US") counts only when written in capitals, and a learned one only then too."""
        extra: list[str] = []
        for written in tokens:
            long = expand(written)
            if long is None and written.isupper() and len(written) > 1:
                long = self.learned.get(written.lower())
            if long is not None:
                extra.extend(_WORD.findall(long.lower()))
        tokens = [t.lower() for t in tokens]
        for words, abbr in self.short.items():
            n = len(words)
            if n > 1 and any(tuple(tokens[i:i + n]) == words for i in range(len(tokens) - n + 1)):
                extra.append(abbr)
        return extra

    def long_form(self, abbreviation: str) -> str | None:
        """The long form of an abbreviation: the product's vocabulary first, then this corpus's own."""
        key = abbreviation.lower()
        return MEDICAL.get(key) or self.learned.get(key)

    def __len__(self) -> int:
        return len(MEDICAL) + len(self.learned)
