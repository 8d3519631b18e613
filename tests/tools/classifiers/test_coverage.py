"""What a bundle covers is read from its metadata (tools/classifiers/coverage.py): the bundled ones say it,
a user's bundle may say it or fall back to its labels, and a malformed block is a BundleError."""

from __future__ import annotations

import pytest

from tools.classifiers.bundle import Bundle
from tools.classifiers.config import ClassifierConfig
from tools.classifiers.coverage import CoveredFinding, term_regex
from tools.classifiers.registry import get_bundle, list_models
from tools.errors import BundleError

from .helpers import TINY_NET, tiny_metadata, write_tiny_bundle


def test_the_bundled_models_state_what_they_cover():
    covered = {b.name: b.coverage for b in list_models()}
    assert covered["pneumonia-cxr"].finding_names == ("pneumonia",)
    assert covered["brain-mri-tumour"].finding_names == ("tumour type",)
    assert covered["breast-us"].finding_names == ("breast malignancy",)
    assert covered["pneumonia-cxr"].modalities == ("CR", "DX") and "CHEST" in covered["pneumonia-cxr"].body_parts
    assert "given that a tumour is present" in covered["brain-mri-tumour"].summary
    for c in covered.values():  # every bundled model says what it reads, in words
        assert c.summary and c.tool_hint and c.modality and c.body_part
    # which models are meant for a modality and body part a question names
    assert [n for n, c in covered.items() if c.reads("US", "BREAST")] == ["breast-us"]
    assert [n for n, c in covered.items() if c.reads("MR", "HEAD")] == ["brain-mri-tumour"]
    assert [n for n, c in covered.items() if c.reads("dx", None)] == ["pneumonia-cxr"]
    assert not any(c.reads("CT", "CHEST") for c in covered.values())
    assert sorted(n for n, c in covered.items() if c.reads()) == sorted(covered)


def test_a_user_bundle_states_a_new_finding_with_its_words(tmp_path):
    meta = tiny_metadata("pectus-cxr", labels=["normal", "pectus"])
    meta["coverage"] = {"findings": [{"name": "pectus excavatum", "terms": ["funnel chest", "sunken chest", "pectus*"]}],
                        "modality": "chest radiograph", "body_part": "chest",
                        "summary": "pectus excavatum on a frontal chest radiograph", "tool_hint": "pectus excavatum"}
    write_tiny_bundle(tmp_path, "pectus-cxr", metadata=meta)
    coverage = get_bundle("pectus-cxr", ClassifierConfig(model_dirs=(tmp_path,))).coverage
    assert coverage.covers("Pectus Excavatum") and not coverage.covers("pneumonia")
    pattern = coverage.findings[0].pattern()
    for text in ("a funnel chest?", "Sunken-chest deformity", "pectus carinatum or excavatum", "PECTUS EXCAVATUM"):
        assert pattern.search(text), text
    for text in ("funnel chests-x", "a chest", "expectus"):
        assert not pattern.search(text), text


def test_a_bundle_without_a_coverage_block_covers_what_its_labels_name(tmp_path):
    write_tiny_bundle(tmp_path, "ptx", metadata=tiny_metadata("ptx", labels=["no_pneumothorax", "pneumothorax"]))
    meta = tiny_metadata("tri", labels=["cyst", "solid_mass", "normal"])
    write_tiny_bundle(tmp_path, "tri", metadata=meta, net={**TINY_NET, "num_classes": 3})
    config = ClassifierConfig(model_dirs=(tmp_path,))
    ptx = get_bundle("ptx", config).coverage
    assert ptx.finding_names == ("pneumothorax",) and ptx.summary == "test bundle" and ptx.modalities == ("CR", "DX")
    assert get_bundle("tri", config).coverage.finding_names == ("cyst", "solid mass", "normal")


@pytest.mark.parametrize(("coverage", "message"), [
    ("pneumonia", "must be an object"),
    ({"findings": []}, "at least one finding"),
    ({"findings": "pneumonia"}, "at least one finding"),
    ({"findings": [42]}, "a name or an object"),
    ({"findings": [{"terms": ["x"]}]}, "needs a 'name'"),
    ({"findings": [{"name": "a(b|c)*"}]}, "needs a 'name'"),
    ({"findings": [{"name": "x", "terms": "x"}]}, "'terms' must be a list"),
    ({"findings": [{"name": "x", "terms": ["(?i).*"]}]}, "not a plain phrase"),
    ({"findings": [{"name": "x", "terms": [""]}]}, "not a plain phrase"),
    ({"findings": [{"name": "x", "synonyms": ["y"]}]}, "unknown keys"),
    ({"findings": ["x", "X"]}, "twice"),
    ({"findings": ["x"], "summary": 3}, "coverage.summary"),
    ({"findings": ["x"], "summary": "s" * 500}, "coverage.summary"),
    ({"findings": ["x"], "colour": "red"}, "unknown keys"),
])
def test_malformed_coverage_is_a_bundle_error(tmp_path, coverage, message):
    meta = tiny_metadata("broken")
    meta["coverage"] = coverage
    write_tiny_bundle(tmp_path, "broken", metadata=meta)
    with pytest.raises(BundleError, match=message):
        Bundle.read(tmp_path / "broken")
    config = ClassifierConfig(model_dirs=(tmp_path,))
    assert "broken" not in [b.name for b in list_models(config)]  # skipped in listings, with a warning
    with pytest.raises(BundleError, match="broken"):  # and explained when asked for by name
        get_bundle("broken", config)


def test_terms_are_plain_phrases_matched_as_whole_words():
    import re

    assert re.search(term_regex("ground glass"), "ground-glass opacity")
    assert not re.search(term_regex("mass"), "massive")
    assert re.search(term_regex("mass*"), "massive")
    assert CoveredFinding("x", ("a.b",)).pattern().search("a.b") and not CoveredFinding("x", ("a.b",)).pattern().search("axb")
