"""A user's own classifier bundle (RADCONSULT_MODEL_DIRS) is planned for and answers its finding through the
agent, exactly like a bundled one: what it covers is read from its metadata. Real MONAI networks with saved
weights in a temporary folder, a real DICOM, the real tools; the chat model is scripted (orchestration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.consultation import Consultation
from agent.settings import Settings
from agent.wiring import imaging_config
from tests.agent.fakes import ScriptedBackend, frame, real_tools
from tests.conftest import shared_file
from tests.tools.classifiers.helpers import tiny_metadata, write_tiny_bundle

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _user_bundles(root: Path) -> Path:
    ptx = tiny_metadata("ptx-user", labels=["no_pneumothorax", "pneumothorax"])
    ptx["coverage"] = {"findings": ["pneumothorax"], "modality": "chest radiograph", "body_part": "chest",
                       "summary": "pneumothorax on an adult chest radiograph (a site's own model)",
                       "tool_hint": "pneumothorax on a chest X-ray"}
    ptx["intended_use_rules"] = {"modalities": ["CR", "DX"], "body_parts": ["CHEST"]}
    pectus = tiny_metadata("pectus-user", labels=["normal", "pectus"])
    pectus["coverage"] = {"findings": [{"name": "pectus excavatum", "terms": ["funnel chest", "sunken chest"]}],
                          "summary": "pectus excavatum on a frontal chest radiograph", "tool_hint": "pectus excavatum"}
    pectus["intended_use_rules"] = {"modalities": ["CR", "DX"], "body_parts": ["CHEST"]}
    write_tiny_bundle(root, "ptx-user", metadata=ptx)
    write_tiny_bundle(root, "pectus-user", metadata=pectus)
    assert (root / "ptx-user" / "models" / "model.pt").is_file()
    return root


@pytest.fixture
def user_settings(settings, tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("RADCONSULT_MODEL_DIRS", str(_user_bundles(tmp_path / "site-models")))
    monkeypatch.setenv("RADCONSULT_DEVICE", "cpu")
    return Settings(data_dir=settings.data_dir)


def _ask(settings: Settings, question: str, draft, case: str):
    from tools.imaging import load

    study = load(shared_file("cxr/siim_cxr_no_pneumothorax.dcm"), imaging_config(settings))
    backend = ScriptedBackend([draft])
    tools = real_tools(settings)
    c = Consultation(settings, backend=backend, tools=tools)
    return c.ask(case, question, images=[study]), backend, tools


def test_a_user_bundle_answers_the_finding_its_metadata_names(user_settings):
    res, backend, tools = _ask(user_settings, "Is there a pneumothorax?", frame(intent="image", finding="pneumothorax"),
                               "u1")
    classify = [t for t in res.tool_calls if t.name == "classify_study"]
    assert [t.name for t in res.tool_calls] == ["read_case", "classify_study"] and classify[0].ok
    assert classify[0].arguments["model"] == "ptx-user"
    assert "ptx-user 0.0.1 reads study S1 as" in res.answer and "P(pneumothorax) = " in res.answer
    assert "No installed model assesses" not in res.answer
    # the rules read the finding from the bundle's own words and the answer is rendered: no model call at all
    assert backend.requests == [] and res.frame.source == "rules"
    spec = tools["classify_study"]  # the model sees the user's bundle, with its own hint in the argument model
    assert "ptx-user" in spec.description and len(spec.description) <= 300
    assert "ptx-user (pneumothorax on a chest X-ray)" in spec.args_model.model_fields["model"].description
    assert "ptx-user" in spec.schema().parameters["properties"]["model"]["enum"]


def test_a_new_finding_is_recognised_by_the_words_its_bundle_gives(user_settings):
    res, _, _ = _ask(user_settings, "Does this film show a funnel chest?", frame(intent="image"), "u2")
    assert [t.arguments.get("model") for t in res.tool_calls if t.name == "classify_study"] == ["pectus-user"]
    assert "pectus-user 0.0.1 reads study S1 as" in res.answer


def test_a_finding_no_bundle_covers_lists_the_user_bundles_too(user_settings):
    res, _, _ = _ask(user_settings, "Is the heart enlarged?", frame(intent="image", finding="cardiomegaly"), "u3")
    assert "No installed model assesses cardiomegaly" in res.answer
    assert "pneumothorax on an adult chest radiograph (a site's own model) (ptx-user)" in res.answer
    assert [t.name for t in res.tool_calls] == ["read_case"]


def test_a_user_bundle_with_malformed_coverage_is_skipped_and_named_when_asked_for(settings, tmp_path, monkeypatch):
    from tools.classifiers.registry import get_bundle
    from tools.errors import BundleError

    meta = tiny_metadata("ptx-broken", labels=["no_pneumothorax", "pneumothorax"])
    meta["coverage"] = {"findings": [{"name": "pneumothorax", "terms": ["(?:ptx|.*)"]}]}
    write_tiny_bundle(tmp_path / "site-models", "ptx-broken", metadata=meta)
    monkeypatch.setenv("RADCONSULT_MODEL_DIRS", str(tmp_path / "site-models"))
    s = Settings(data_dir=settings.data_dir)
    res, _, _ = _ask(s, "Is there a pneumothorax?", frame(intent="image", finding="pneumothorax"), "u4")
    assert "No installed model assesses pneumothorax" in res.answer  # declined, never run unchecked
    from agent.wiring import classifier_config

    with pytest.raises(BundleError, match="not a plain phrase"):
        get_bundle("ptx-broken", classifier_config(s))
