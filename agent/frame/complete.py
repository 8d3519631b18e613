"""Whether the rules' reading of a question is complete, or the model could add to it.

The rules read every question first (``read_case(question, None, ...)``). The model's draft is asked
for only where it could fill a field the rules left empty: :func:`reader.read_case` takes from a draft
nothing but the intent of a question the rules read as a general one, the finding a generic image
question asks about, and the guideline of a category named without its system. Everything else the
draft says is checked against the text and the text's value kept, so asking for it cannot change the
answer: a frame the rules read fully is answered with no LLM call (a calculator, a table, a clarifying
question, a fixed statement). A guideline frame missing a size or a smoking history is complete too:
the model may not invent what the text does not state, so the answer asks for it. So is an image question
that names no finding but states the modality and body part a bundle reads ("this breast ultrasound").

Should ``read_case`` come to take more from a draft, this module must name that field too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.frame.findings import TECHNIQUE, asked_findings, models_reading, stated_study
from agent.frame.model import CALCULATOR_OF, CaseFrame
from agent.frame.reader import draft_could_reframe

if TYPE_CHECKING:
    from tools.classifiers.coverage import Coverage

# intents whose frame the rules settle: the draft's intent is taken only for a "knowledge" reading
_SETTLED = ("followup", "screening", "category", "image", "prior", "smalltalk", "out_of_scope")
# words that make a question a clinical or imaging one (then the model's reading could only call it "knowledge")
_CLINICAL = re.compile(r"\b(?:(?:LD)?CT|MRI?|PET|x-?rays?|radiograph\w*|ultrasound|sonograph\w*|mammo\w*|imaging|"
                       r"scans?|screen\w*|radiation|dose|contrast|nodul\w*|lungs?|pulmonary|breasts?|chest|cancer\w*|"
                       r"tumou?rs?|malignan\w*|biops\w*|guidelines?|fleischner|lung-?rads|bi-?rads|uspstf|radiolog\w*|"
                       r"lesions?|follow-?up|smok\w*|pack-?years?)\b", re.I)


def model_fills(frame: CaseFrame, question: str, installed: Sequence[Coverage] = (), *, has_image: bool = False,
                has_patient: bool = False) -> str | None:
    """The field of ``frame`` (read by the rules alone) that the model's draft could fill, or None when the
    rules' frame holds all the plan needs; ``installed`` is what the installed classifiers cover (image
    questions only)."""
    if frame.source == "previous":
        return None  # a follow-up: the previous frame with what this turn states (a draft is not read)
    if frame.intent not in _SETTLED:
        if _CLINICAL.search(question) and not draft_could_reframe(question, has_image, has_patient):
            return None  # a general clinical question: retrieval and the model's prose, no draft first
        return "intent"  # the model may see a guideline question in unusual words, or one out of scope
    if frame.intent == "category" and frame.system not in CALCULATOR_OF:
        return "system"  # a category without its system ("what does category 3 mean?")
    if frame.intent == "image" and not TECHNIQUE.search(question) \
            and asked_findings(question, None, installed).generic \
            and not models_reading(stated_study(question), installed):
        return "finding"  # "what do you make of this?": the model may name the finding asked about
    return None
