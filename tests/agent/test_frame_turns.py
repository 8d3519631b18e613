"""Turns through the case frame, with the real tools and calculators over a scripted model: the frame is
checked against the text, guideline answers are rendered from the calculator, a missing parameter gets a
question, contradicted sentences never reach the clinician, and uncovered image findings are declined."""

from __future__ import annotations

from agent.consultation import Consultation
from agent.wiring import imaging_config
from tests.agent.fakes import ScriptedBackend, frame, one_guideline_passage, real_tools, text
from tests.conftest import shared_file


def consult(settings, steps):
    backend = ScriptedBackend(steps)
    return Consultation(settings, backend=backend, tools=real_tools(settings)), backend


def test_guideline_answer_comes_from_the_calculator_not_the_model(settings):
    # a draft that reads 1.1 cm as 1.1 mm and guesses low risk is never asked for: the rules read it all
    c, backend = consult(settings, [frame(intent="followup", system="fleischner", size_mm=1.1, nodule_type="solid",
                                          risk="low")])
    res = c.ask("f1", "Solitary solid nodule 1.1 cm in a 68-year-old smoker, found on CT for abdominal pain. Next?")
    assert backend.requests == []  # deterministic first: no LLM call at all
    assert res.frame is not None and (res.frame.size_mm, res.frame.risk, res.frame.source) == (11.0, "high", "rules")
    assert [t.name for t in res.tool_calls] == ["read_case", "fleischner_followup"]
    assert res.tool_calls[1].auto and res.tool_calls[1].evidence_ids == ("E1",)
    assert "Fleischner 2017, single solid nodule > 8 mm" in res.answer
    assert "Consider CT at 3 months, PET/CT, or tissue sampling [E1]." in res.answer
    assert "1.1 cm = 11 mm" in res.answer and res.unsupported_sentences == () and res.contradicted_sentences == ()
    assert res.to_dict()["frame"]["size_mm"] == 11.0


def test_a_missing_risk_is_asked_with_both_columns_shown(settings):
    c, _ = consult(settings, [frame(intent="followup", size_mm=7, nodule_type="solid", risk="low")])
    res = c.ask("f2", "7 mm solid nodule on CT, follow-up interval?")
    assert res.clarifying_question and "low or high risk" in res.clarifying_question
    assert "low risk: CT at 6-12 months, then consider CT at 18-24 months [E1]" in res.answer
    assert "high risk: CT at 6-12 months, then CT at 18-24 months [E1]" in res.answer
    assert res.answer.rstrip().endswith("?") and res.frame.source == "rules" and not res.frame.corrections


def test_a_follow_up_turn_keeps_the_case_and_changes_the_risk(settings):
    c, _ = consult(settings, [frame(intent="followup"), frame(intent="followup")])
    first = c.ask("f3", "Incidental 7 mm solid nodule in a 50-year-old woman who never smoked. Follow-up?")
    assert "low risk (never smoker" in first.answer and "then consider CT at 18-24 months" in first.answer
    second = c.ask("f3", "and if she smoked?")
    assert (second.frame.size_mm, second.frame.risk, second.frame.source) == (7.0, "high", "previous")
    assert "high risk" in second.answer and "CT at 6-12 months, then CT at 18-24 months [E2]" in second.answer


def test_pack_years_do_not_route_an_incidental_nodule_to_screening(settings):
    c, _ = consult(settings, [frame(intent="screening", system="uspstf_lung", pack_years=40)])
    res = c.ask("f4", "Incidental 9 mm solid nodule on a CT for abdominal pain; 40 pack-years. What next?")
    assert [t.name for t in res.tool_calls][1:] == ["fleischner_followup"] and "eligible" not in res.answer.lower()


def test_screening_ct_without_nodules_is_category_1(settings):
    c, _ = consult(settings, [frame(intent="category", system="lung_rads", category="2")])
    res = c.ask("f5", "Screening CT negative, no nodules found. What category do we report?")
    assert "category 1 (negative" in res.answer and "12 months" in res.answer and "category 2" not in res.answer


def test_a_contradicted_sentence_is_removed_and_recorded(settings, monkeypatch):
    """A knowledge answer: the model's prose around the retrieved section, with one wrong interval."""
    from agent.evidence import Ledger

    one_guideline_passage(monkeypatch, source="f.md", organisation="Fleischner Society", title="Fleischner 2017",
                          year=2017, section="Subsolid nodules: single > Single pure ground-glass nodule 6 mm or larger",
                          quote="Single pure ground-glass nodule 6 mm or larger: CT at 6 to 12 months to confirm "
                                "persistence, then CT every 2 years until 5 years.")
    c, _ = consult(settings, [frame(intent="knowledge"),
                              text("Persistent pure ground-glass nodules of 6 mm or more are followed with CT every "
                                   "2 years until 5 years [E1]. The first CT is at 3 months [E1].")])
    res = c.ask("f6", "How are persistent pure ground-glass nodules followed?")
    assert "The first CT is at 3 months [E1]." in res.contradicted_sentences
    assert "3 months" not in res.answer and "every 2 years until 5 years [E1]" in res.answer
    assert res.to_dict()["contradicted_sentences"] == ["The first CT is at 3 months [E1]."]
    assert isinstance(Ledger(list(res.evidence)), Ledger)


def test_an_image_finding_no_model_covers_is_declined(settings):
    from tools.imaging import load

    study = load(shared_file("cxr/nih_00000001_000_cardiomegaly.png"), imaging_config(settings))
    c, backend = consult(settings, [frame(intent="image", finding="cardiomegaly")])
    res = c.ask("f7", "Is the heart enlarged?", images=[study])
    assert "No installed model assesses cardiomegaly" in res.answer and "pneumonia" in res.answer
    assert [t.name for t in res.tool_calls] == ["read_case"] and backend.requests == []  # the rules read it
    assert "enlarged [" not in res.answer  # no finding is stated, cited or not


def test_a_classifier_result_is_reported_from_the_result(settings):
    from tools.imaging import load

    study = load(shared_file("cxr/nih_00000001_000_cardiomegaly.png"), imaging_config(settings))
    c, _ = consult(settings, [frame(intent="image", finding="pneumonia")])
    res = c.ask("f8", "Any signs of pneumonia?", images=[study])
    assert [t.name for t in res.tool_calls] == ["read_case", "classify_study"]
    assert "pneumonia-cxr" in res.answer and "P(pneumonia) = " in res.answer and "Caution:" in res.answer
    assert res.saliency and res.saliency[0].array.shape == study.display.shape[:2]


def test_measurements_on_the_viewer_feed_the_calculator(settings):
    """Two lengths marked on a real CT slice: the size is their average, both are cited with the rule."""
    from tests.conftest import pydicom_file
    from tools.imaging import load
    from tools.measure import measure

    study = load(pydicom_file("CT_small.dcm"), imaging_config(settings))
    row, col = study.spacing[-2:]
    long_axis = measure(study, 0, (10, 20), (10 + 8.0 / col, 20), label="long axis", nodule_type="solid")
    short_axis = measure(study, 0, (30, 30), (30, 30 + 6.0 / row), label="short axis")
    assert abs(long_axis.length_mm - 8.0) < 0.01 and abs(short_axis.length_mm - 6.0) < 0.01
    c, _ = consult(settings, [frame(intent="followup")])
    res = c.ask("f9", "Incidental nodule in a never smoker, 55 years. What follow-up?", images=[study],
                measurements=[long_axis, short_axis])
    assert res.frame.size_mm == 7.0 and res.frame.nodule_type == "solid" and res.frame.risk == "low"
    assert "Measured on study S1: long axis 8 mm, short axis 6 mm [E1, E2]." in res.answer
    assert "single solid nodule 6-8 mm, low risk" in res.answer and "[E3]" in res.answer
    assert [e.kind for e in res.citations] == ["measurement", "measurement", "calculator"]


def test_a_length_without_pixel_spacing_is_refused(settings):
    import pytest

    from tools.imaging import load
    from tools.measure import MeasurementError, measure

    png = load(shared_file("cxr/nih_00027426_000_no_finding.png"), imaging_config(settings))
    with pytest.raises(MeasurementError, match="no pixel spacing"):
        measure(png, 0, (10, 10), (50, 50))
    with pytest.raises(MeasurementError, match="outside"):
        measure(png, 0, (10, 10), (5000, 50))


def test_a_tumour_type_answer_carries_the_scope_its_bundle_states(settings):
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    from tests.tools.classifiers.helpers import CHENG, study_from
    from tools.classifiers.registry import get_bundle

    with tarfile.open(shared_file(CHENG)) as tf:
        image = np.asarray(Image.open(io.BytesIO(tf.extractfile("figshare_cheng_brain_tumor/glioma/740.jpg").read())))
    study = study_from(image, modality="MR", body_part="HEAD", series_description="T1 POST GD")
    c, _ = consult(settings, [frame(intent="image", finding="tumour type")])
    res = c.ask("f9", "What type of tumour is this?", images=[study])
    assert [t.arguments.get("model") for t in res.tool_calls if t.name == "classify_study"] == ["brain-mri-tumour"]
    statement = get_bundle("brain-mri-tumour").statement
    assert statement and f"Scope of brain-mri-tumour {get_bundle('brain-mri-tumour').version}: {statement}" in res.answer
