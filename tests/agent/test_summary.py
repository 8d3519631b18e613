"""The cited diagnostic summary: deterministic sections from the ledger, LLM only for the Impression."""

from __future__ import annotations

import json

import pytest

from agent.consultation import Consultation
from agent.summary import LIMITATIONS
from tests.agent.fakes import ScriptedBackend, call, fake_tools, text
from tools.errors import InputError


def case(settings, impression: str):
    backend = ScriptedBackend([
        call("search_prior_reports", query="nodule"),
        call("fleischner_followup", size_mm=7),
        text("The nodule was 5 mm before [E1]. CT at 6-12 months, then consider CT at 18-24 months [E2]."),
        text(impression),
    ])
    consult = Consultation(settings, backend=backend, tools=fake_tools(), read_frames=False)
    consult.ask("c1", "Follow-up for this 7 mm nodule?", patient="DEMO-0001")
    return consult


def test_sections_and_references(settings):
    consult = case(settings, "A stable 5 mm nodule was reported before [E1]. CT at 6-12 months is advised [E2].")
    s = consult.summary("c1")
    assert s.clinical_question == ["Follow-up for this 7 mm nodule?"]
    assert s.comparison[0].cites == ["E1"] and "2023-03-14" in s.comparison[0].text
    assert s.recommendations[0].cites == ["E2"] and "6-12 months" in s.recommendations[0].text
    assert s.impression_source == "llm" and len(s.impression) == 2
    assert s.limitations == LIMITATIONS and "not a diagnosis" in s.limitations[0]
    assert [r["id"] for r in s.references] == ["E1", "E2"] and s.references[0]["n"] == 1
    md = s.to_markdown()
    for heading in ("## Clinical question", "## Technique", "## Findings", "## Comparison", "## Impression",
                    "## Recommendations", "## Limitations", "## References"):
        assert heading in md
    assert md.index("## Findings") < md.index("## Impression") < md.index("## References")
    json.dumps(s.to_dict())  # JSON-able


def test_uncited_impression_is_replaced_by_a_deterministic_one(settings):
    consult = case(settings, "The patient has lung cancer and needs surgery.")
    s = consult.summary("c1")
    assert s.impression_source == "deterministic"
    assert all(line.cites for line in s.impression)
    assert "The patient has lung cancer and needs surgery." in s.unsupported_sentences
    assert "lung cancer" not in s.to_markdown()


def test_summary_of_an_empty_case_is_an_input_error(settings):
    consult = Consultation(settings, backend=ScriptedBackend([]), tools=fake_tools(), read_frames=False)
    with pytest.raises(InputError):
        consult.summary("never-asked")


def test_deterministic_impression_points_to_sections_instead_of_repeating_them():
    from agent.evidence import Ledger
    from agent.summary import _deterministic_impression, _finding_line

    ledger = Ledger()
    ledger.add("classifier", "classify_study", "pneumonia-cxr", quote="P(pneumonia) = 0.05",
               facts={"model": "pneumonia-cxr", "version": "1.0.0", "study": "S1", "label": "normal",
                      "probabilities": {"pneumonia": 0.05}, "caution": "adult patient"})
    ledger.add("classifier", "classify_study", "breast-us", facts={"model": "breast-us", "study": "S2",
                                                                   "abstained": True, "abstain_reason": "not US"})
    ledger.add("calculator", "fleischner_followup", "Fleischner Society 2017", title="Fleischner 2017",
               quote="CT at 6-12 months, then consider CT at 18-24 months")
    lines = _deterministic_impression(ledger)
    assert [line.cites for line in lines] == [["E1"], ["E2"], ["E3"]]
    assert "reads study S1 as normal, with a caution" in lines[0].text and "abstained" in lines[1].text
    assert "Fleischner 2017 applies" in lines[2].text and "6-12 months" not in lines[2].text
    assert lines[0].text != _finding_line(ledger.get("E1")).text and "0.05" not in lines[0].text
