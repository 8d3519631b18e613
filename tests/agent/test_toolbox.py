"""The agent's tools over the real pure functions (imaging, classifier, calculators, knowledge base) and the registry."""

from __future__ import annotations

import pytest

from agent.evidence import Ledger
from agent.toolbox import AttachedStudy
from agent.wiring import imaging_config
from tests.agent.fakes import real_context, real_tools
from tests.conftest import pydicom_file, shared_file
from tools.errors import ToolArgumentError, ToolExecutionError


@pytest.fixture
def tools(settings):
    return real_tools(settings)


def test_every_tool_has_a_schema(tools):
    assert {"inspect_study", "classify_study", "search_guidelines", "search_prior_reports", "fleischner_followup",
            "lung_rads_category", "birads_category"} <= set(tools)
    prior = tools["search_prior_reports"].schema().parameters
    assert "patient" not in prior["properties"]  # the model can never choose a patient
    for t in tools.values():
        assert t.schema().parameters["type"] == "object"


def test_fleischner_evidence_cites_its_section(tools, settings):
    ledger = Ledger()
    e = tools["fleischner_followup"].run({"size_mm": 7, "nodule_type": "solid", "risk": "low",
                                          "solid_component_mm": 0, "patient_age_years": 0}, real_context(settings),
                                         ledger)[0]
    assert e.kind == "calculator" and e.id == "E1"
    assert "6-12 months" in e.quote and e.section and "6 to 8 mm" in e.section and e.url
    assert e.facts["inputs"]["size_mm"] == 7.0 and e.facts["inputs"]["patient_age_years"] is None


def test_bad_arguments_are_argument_errors(tools, settings):
    with pytest.raises(ToolArgumentError, match="nodule_type"):
        tools["fleischner_followup"].run({"size_mm": 7, "nodule_type": "round"}, real_context(settings), Ledger())
    with pytest.raises(ToolArgumentError):
        tools["search_guidelines"].run({"query": "x", "patient": "DEMO-0002"}, real_context(settings), Ledger())


def test_inspect_real_dicom(tools, settings):
    from tools.imaging import load

    study = load(pydicom_file("CT_small.dcm"), imaging_config(settings))
    e = tools["inspect_study"].run({}, real_context(settings, studies=[AttachedStudy("S1", study, "CT")]), Ledger())[0]
    assert e.kind == "dicom" and e.facts["modality"] == "CT" and "modality: CT" in e.quote


def test_classify_real_image(tools, settings):
    from tools.imaging import load

    study = load(shared_file("cxr/nih_00027426_000_no_finding.png"), imaging_config(settings))
    ctx = real_context(settings, studies=[AttachedStudy("S1", study, "OT")])
    e = tools["classify_study"].run({"model": "pneumonia-cxr"}, ctx, Ledger())[0]
    assert e.kind == "classifier" and e.facts["model"] == "pneumonia-cxr" and e.facts["version"]
    assert 0 <= e.facts["probabilities"]["pneumonia"] <= 1 and "P(pneumonia)" in e.quote
    assert e.facts["model_card"]


def test_tools_without_an_image_or_patient_fail_clearly(tools, settings):
    with pytest.raises(ToolExecutionError, match="no image"):
        tools["classify_study"].run({}, real_context(settings), Ledger())
    with pytest.raises(ToolExecutionError, match="no patient"):
        tools["search_prior_reports"].run({"query": "nodule"}, real_context(settings), Ledger())


@pytest.mark.slow  # builds the bundled knowledge base (embeds the corpus)
def test_guideline_and_prior_report_search(tools, settings):
    ledger = Ledger()
    g = tools["search_guidelines"].run({"query": "BI-RADS 3 probably benign management"}, real_context(settings),
                                       ledger)
    assert g and all(e.kind == "guideline" and e.quote and e.source for e in g)
    ctx = real_context(settings, patient_key="DEMO-0001")
    p = tools["search_prior_reports"].run({"query": "breast ultrasound fibroadenoma"}, ctx, ledger)
    assert p and all(e.kind == "prior_report" and e.date for e in p)
    assert not any("fibroadenoma" in e.quote.lower() for e in p)  # DEMO-0002's finding never leaks


def test_tumour_type_question_on_an_mr_slice_reaches_the_brain_model(tools, settings):
    """'What kind of tumour is this?' on an MR head slice: the classify tool picks brain-mri-tumour from the
    image's metadata, and its evidence says that the model only tells the type, given a tumour."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    from tests.tools.classifiers.helpers import CHENG, study_from

    with tarfile.open(shared_file(CHENG)) as tf:
        image = np.asarray(Image.open(io.BytesIO(tf.extractfile("figshare_cheng_brain_tumor/glioma/740.jpg").read())))
    study = study_from(image, modality="MR", body_part="HEAD", series_description="T1 POST GD")
    schema = tools["classify_study"].schema()
    assert "tumour type" in schema.description and "never whether there is one" in schema.description
    assert "brain-mri-tumour" in str(schema.parameters["properties"]["model"])
    e = tools["classify_study"].run({}, real_context(settings, studies=[AttachedStudy("S1", study, "MR")]), Ledger())[0]
    assert e.facts["model"] == "brain-mri-tumour" and e.facts["label"] in ("meningioma", "glioma", "pituitary")
    assert "cannot tell whether a tumour is present" in e.quote


def test_the_classify_description_fits_its_limit_whatever_is_installed():
    from agent.toolbox.imaging import classify_description
    from tools.classifiers.coverage import Coverage, CoveredFinding

    few = [Coverage("a-model", (CoveredFinding("x"),), "x on y", "x on a y image")]
    assert "a-model" not in classify_description(few) and "x on a y image" in classify_description(few)
    many = [Coverage(f"model-{k}", (CoveredFinding("x"),), "s", "a long hint that says what this model reads " * 2)
            for k in range(12)]
    text = classify_description(many)
    assert len(text) <= 300 and text.endswith("optional saliency.")
    assert "model-11" in text or "classifier on an attached study." in text
    assert len(classify_description([])) <= 300
