"""Organ against system in the verifier (issue 20, item 4): a lung rule applied to a breast finding, or BI-RADS to
a lung nodule, is a contradiction: removed from the answer and counted as contradicted."""

from __future__ import annotations

import pytest

from agent.answer import compose
from agent.contradiction import applied_systems, finding_organ, organ_mismatch
from agent.evidence import Ledger
from agent.verify import verify


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.add("calculator", "fleischner_followup", "Fleischner Society", title="Fleischner 2017",
               quote="rule: single solid nodule >8 mm; recommendation: consider CT at 3 months, PET/CT or tissue "
                     "sampling", facts={"result": {"recommendation": "consider CT at 3 months, PET/CT or tissue "
                                                                     "sampling"}})
    ledger.add("calculator", "birads_category", "American College of Radiology", title="ACR BI-RADS Atlas",
               quote="category: 3; name: Probably benign; management: short-interval follow-up at 6 months",
               facts={"result": {"category": "3", "management": "short-interval follow-up at 6 months"}})
    return ledger


BREAST_Q = "BR3 on US - 9 mm oval circumscribed mass, 41F"
LUNG_Q = "9 mm solid nodule in the RUL, 67M, 40 PY"


@pytest.mark.parametrize("sentence, question, reason", [
    # the case: the lung rule for a nodule over 8 mm given for a breast mass read on ultrasound
    ("For a solid nodule over 8 mm, consider CT at 3 months, PET/CT or tissue sampling [E1].", BREAST_Q, "breast finding"),
    ("Per Fleischner, CT at 3 months [E1].", BREAST_Q, "breast finding"),
    # BI-RADS management given for a lung nodule
    ("Short-interval follow-up at 6 months, BI-RADS 3 [E2].", LUNG_Q, "lung finding"),
    ("Category 3, probably benign: follow-up at 6 months [E2].", LUNG_Q, "lung finding"),
    # the sentence's own anatomy decides, whatever the question
    ("The breast mass needs CT at 3 months per Fleischner [E1].", "", "breast finding"),
])
def test_a_rule_for_the_other_organ_is_contradicted(sentence, question, reason):
    check = verify(sentence, _ledger(), question)
    assert check.sentences[0].status == "contradicted", check.sentences[0]
    assert reason in check.sentences[0].reason


@pytest.mark.parametrize("sentence, question", [
    ("For a solid nodule over 8 mm, consider CT at 3 months, PET/CT or tissue sampling [E1].", LUNG_Q),
    ("Short-interval follow-up at 6 months, BI-RADS 3 [E2].", BREAST_Q),
    # saying that a rule does not apply is not applying it
    ("Fleischner does not apply to a breast mass; BI-RADS 3 means follow-up at 6 months [E2].", BREAST_Q),
    # a history of breast cancer is not a breast finding: the lung rule for the lung nodule stands
    ("Consider CT at 3 months, PET/CT or tissue sampling [E1].", "history of breast cancer, 9 mm solid nodule"),
    # a question naming both organs says nothing about which one a sentence is about
    ("Consider CT at 3 months, PET/CT or tissue sampling [E1].", "9 mm lung nodule; her mammogram was BI-RADS 2"),
])
def test_the_right_organ_or_an_unclear_one_is_not_a_contradiction(sentence, question):
    check = verify(sentence, _ledger(), question)
    assert check.sentences[0].status != "contradicted", check.sentences[0]


def test_the_composed_answer_drops_the_mismatch_and_counts_it():
    ledger = _ledger()
    answer = ("BI-RADS 3 means probably benign: short-interval follow-up at 6 months [E2]. "
              "Per Fleischner, consider CT at 3 months, PET/CT or tissue sampling [E1].")
    shown = compose(answer, ledger, ledger.items, BREAST_Q, [], None)
    assert len(shown.contradicted) == 1 and "Fleischner" in shown.contradicted[0]
    assert "Fleischner" not in shown.answer and "6 months" in shown.answer


def test_parts_on_bad_and_empty_input():
    assert finding_organ("", "") is None
    assert finding_organ("a 9 mm nodule", "") is None  # a nodule alone names no organ
    assert finding_organ("left breast mass", "") == "breast" and finding_organ("RUL nodule", "") == "lung"
    assert applied_systems("", []) == set()
    assert organ_mismatch("", [], "") is None
    assert organ_mismatch("CT at 3 months [E1].", [], BREAST_Q) is None  # nothing cited, nothing applied
