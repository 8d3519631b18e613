"""The shared abbreviation vocabulary: long forms, ordinary words only in capitals, long form -> abbreviation."""

from __future__ import annotations

from tools.vocabulary.abbreviations import MEDICAL, abbreviation_of, expand, long_form


def test_expand_reads_both_tables():
    assert expand("COPD") == expand("copd") == "chronic obstructive pulmonary disease"
    assert expand("CT") == "computed tomography" and expand("ct") == "computed tomography"
    assert expand("hx") == "history" and long_form("F/U") == "follow-up"
    assert expand("unknownword") is None


def test_ordinary_words_count_only_in_capitals():
    for word in ("all", "us", "ms", "pe", "pt"):
        assert expand(word) is None, word
    assert expand("ALL") == "acute lymphoblastic leukemia" and expand("US") == "ultrasound"
    assert expand("PT") == "patient"
    assert expand("py") is None  # pack-years only after a number: the question reader's job, not a term


def test_abbreviation_of_a_long_form():
    assert abbreviation_of("Chronic Obstructive Pulmonary Disease") == "copd"
    assert abbreviation_of("ductal carcinoma in situ") == "dcis"
    assert abbreviation_of("pneumonia") is None
    assert all(k == k.lower() for k in MEDICAL)
