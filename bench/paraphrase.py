"""Questions rephrased the way clinicians and patients write them, generated from what a question asks
(MedQuAD's qtype annotation) and its subject (the focus), never from the question's own template:
the template is dropped, words reordered, the asked-for type written as shorthand ("tx", "sx", "dx",
"f/u") or in lay words, the subject lower-cased, its parenthesised alias or its abbreviation used instead
of the long form, and a typo now and then. One paraphrase per question, chosen by a seeded hash, so a
run is repeatable and the paraphrases are spread over every phrasing.
"""

from __future__ import annotations

import hashlib
import re

from tools.vocabulary.abbreviations import abbreviation_of

# per MedQuAD qtype: phrasings with {x} for the subject; a mix of terse clinician notes and lay questions
PHRASINGS: dict[str, tuple[str, ...]] = {
    "information": ("{x}?", "{x} - overview", "tell me about {x}", "{x}, what is it", "explain {x} briefly",
                    "what does {x} mean", "info on {x} pls"),
    "symptoms": ("{x} sx", "{x} presentation", "how does {x} present", "signs of {x}?",
                 "what would a patient with {x} notice", "{x} clinical features", "does {x} cause pain or other sx"),
    "causes": ("etiology of {x}", "{x} - why does it happen", "what leads to {x}", "{x} cause?",
               "why do people get {x}", "pathogenesis {x}"),
    "treatment": ("{x} tx", "{x} management", "how do you manage {x}", "options for treating {x}",
                  "what helps with {x}", "{x}: therapy?", "mgmt of {x}"),
    "exams and tests": ("{x} dx", "workup for suspected {x}", "how is {x} diagnosed", "tests to confirm {x}",
                        "{x} diagnostic tests", "how do they find out if it's {x}"),
    "outlook": ("{x} prognosis", "how long can someone live with {x}", "{x} - long term outlook",
                "survival with {x}", "will I recover from {x}", "{x} life expectancy"),
    "susceptibility": ("risk factors for {x}", "who gets {x}", "{x} - who is at risk",
                       "am I likely to get {x}", "{x} risk groups"),
    "prevention": ("can {x} be prevented", "{x} prevention", "how to avoid {x}", "lower my risk of {x}",
                   "{x} prophylaxis"),
    "research": ("{x} clinical trials", "new research on {x}", "{x} - current studies",
                 "experimental treatments for {x}"),
    "stages": ("{x} staging", "stages of {x}", "how is {x} staged", "{x} spread / stage"),
    "complications": ("{x} complications", "what can go wrong with {x}", "{x} - possible harms"),
    "frequency": ("how common is {x}", "{x} prevalence", "how many people have {x}"),
    "inheritance": ("does {x} run in families", "is {x} hereditary", "{x} inheritance pattern"),
    "genetic changes": ("genes involved in {x}", "{x} mutations"),
    "considerations": ("{x} - what else should I know", "things to consider with {x}", "{x} practical advice"),
}
_TYPOS = ((r"ph", "f"), (r"ae", "e"), (r"ll", "l"), (r"ss", "s"), (r"tion\b", "tion"))


def _pick(key: str, n: int, salt: str) -> int:
    return int(hashlib.sha256(f"{salt}\x00{key}".encode()).hexdigest()[:8], 16) % n


def subject(focus: str, key: str) -> str:
    """The focus as someone would type it: its abbreviation or alias now and then, lower case, a typo."""
    focus = " ".join(focus.split())
    alias = re.search(r"\(([^)]+)\)\s*$", focus)
    base = re.sub(r"\s*\([^)]*\)\s*$", "", focus) or focus
    choice = _pick(key, 6, "subject")
    short = abbreviation_of(base)
    if choice == 0 and alias:
        base = alias.group(1)
    elif choice == 1 and short:
        base = short.upper()
    if choice != 1 or not short:
        base = base.lower()
    if _pick(key, 5, "typo") == 0:  # one in five with a misspelling of a long word
        words = base.split()
        longest = max(range(len(words)), key=lambda i: len(words[i])) if words else 0
        if words and len(words[longest]) > 7:
            w = words[longest]
            for pattern, repl in _TYPOS:
                if re.search(pattern, w) and repl != pattern:
                    w = re.sub(pattern, repl, w, count=1)
                    break
            else:
                i = len(w) // 2
                w = w[:i] + w[i + 1] + w[i] + w[i + 2:]  # two letters swapped
            words[longest] = w
            base = " ".join(words)
    return base


def paraphrase(question: str, qtype: str, focus: str, seed: int = 7) -> str | None:
    """One rephrasing of ``question`` (asking ``qtype`` about ``focus``), or None for a type without
    phrasings."""
    options = PHRASINGS.get(qtype)
    if not options:
        return None
    key = f"{seed}\x00{question}"
    return options[_pick(key, len(options), "phrasing")].format(x=subject(focus, key))
