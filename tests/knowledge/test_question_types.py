"""Question types: what a question asks for, phrased many ways, and what a passage is about."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.question_types import NAMES, passage_types, question_types

ASKS = {
    "treatment": ["What are the treatments for gout?", "gout tx", "mgmt of gout", "how do you manage gout",
                  "options for treating gout", "what helps with gout?"],
    "symptoms": ["What are the symptoms of gout?", "gout sx", "how does gout present", "signs of gout?"],
    "cause": ["What causes gout?", "etiology of gout", "why do people get gout", "what leads to gout"],
    "prognosis": ["What is the outlook for gout?", "gout prognosis", "how long can someone live with gout",
                  "life expectancy with gout"],
    "inheritance": ["Is gout inherited?", "does gout run in families", "is it hereditary"],
    "frequency": ["How many people are affected by gout?", "how common is gout", "gout prevalence"],
    "follow_up": ["f/u interval for a 7 mm nodule?", "how often should the nodule be rescanned",
                  "when to repeat CT for a GGN"],
    "eligibility": ["who should be screened for lung cancer", "is she eligible for LDCT", "screening criteria"],
    "diagnosis": ["How to diagnose gout?", "workup for suspected gout", "gout dx"],
}


@pytest.mark.parametrize(("kind", "question"), [(k, q) for k, qs in ASKS.items() for q in qs])
def test_question_types_recognised_in_many_phrasings(kind, question):
    vec = question_types(question)
    assert vec[NAMES.index(kind)] > 0, (question, dict(zip(NAMES, vec.round(2), strict=True)))
    assert abs(float(vec.sum()) - 1.0) < 1e-6


def test_no_type_named_means_no_preference():
    assert not question_types("gout").any()
    assert question_types("What is gout?")[NAMES.index("definition")] == 1.0


def test_passage_types_heading_outweighs_text():
    named = passage_types("Treatment Options", "Patients are seen in clinic.")
    mentioned = passage_types("", "The treatment was discussed.")
    t = NAMES.index("treatment")
    assert named[t] > mentioned[t] > 0 and np.all(named < 1.0)
    genes = passage_types("", "This condition is inherited in an autosomal recessive pattern.")
    assert int(np.argmax(genes)) == NAMES.index("inheritance")


def test_stored_types_round_trip_and_stale_ones_are_recomputed():
    from knowledge.question_types import decode, encode

    vec = passage_types("Treatment", "Surgery and chemotherapy are options.")
    assert np.allclose(decode(encode(vec)), vec, atol=0.005)
    for stale in (None, "", "0:" + encode(vec)[2:], encode(vec)[:-4], "1:a,b"):
        assert decode(stale) is None
