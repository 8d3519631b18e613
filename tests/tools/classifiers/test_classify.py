"""classify() on real MedMNIST images with the bundled models: selection, abstention, caution, OOD,
saliency and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import pydicom_file
from tools.classifiers.inference import Finding, classify, classify_many
from tools.errors import InvalidImageError, NoApplicableModelError, UnknownNameError

from .helpers import cxr_meta, medmnist, study_from

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def pneu():
    return medmnist("pneumoniamnist")


@pytest.fixture(scope="module")
def breast():
    return medmnist("breastmnist")


def test_paediatric_cxr_is_classified_with_card(pneu, settings):
    images, labels = pneu
    f = classify(study_from(images[0], **cxr_meta()), settings=settings)
    assert isinstance(f, Finding)
    assert f.model == "pneumonia-cxr" and "modality CR" in f.model_selection
    assert not f.abstain and f.abstain_reason is None
    assert abs(sum(f.probabilities.values()) - 1) < 1e-3
    assert f.probability == f.probabilities["pneumonia"]
    assert f.label == ("pneumonia" if f.probability >= f.threshold else "normal")
    assert f.model_card["metrics"]["test"]["n"] == 624 and f.model_card["training_data"]
    assert f.ood_score is not None and f.ood_threshold is not None
    assert f.device == "cpu" and f.disclaimer
    d = f.as_dict()
    assert d["model_card"]["intended_use"] and "saliency" not in d


def test_predictions_agree_with_labels_on_real_test_images(pneu, breast, settings):
    for (images, labels), meta, pos in ((pneu, cxr_meta(), "pneumonia"),
                                        (breast, {"modality": "US", "body_part": "BREAST"}, "malignant")):
        idx = np.random.default_rng(0).choice(len(labels), 40, replace=False)
        found = classify_many([study_from(images[i], **meta) for i in idx], settings=settings)
        bundle_labels = list(found[0].labels)
        truth = [bundle_labels[labels[i]] for i in idx]
        acc = np.mean([f.label == t for f, t in zip(found, truth, strict=True)])
        assert acc >= 0.7, (found[0].model, acc)
        assert found[0].positive_label == pos


def test_batched_equals_single(pneu, settings):
    images, _ = pneu
    studies = [study_from(images[i], **cxr_meta()) for i in range(5)]
    batch = classify_many(studies, settings=settings)
    for s, b in zip(studies, batch, strict=True):
        assert abs(classify(s, settings=settings).probability - b.probability) < 1e-4


def test_adult_gets_caution_not_abstention(pneu, settings):
    f = classify(study_from(pneu[0][1], **cxr_meta(patient_age_years=62.0)), settings=settings)
    assert not f.abstain and f.probability is not None
    assert "adult" in f.caution and "1-5" in f.caution


@pytest.mark.parametrize("meta, reason", [
    (cxr_meta(view_position="LL"), "lateral"),
    (cxr_meta(modality="CT"), "CT"),
    (cxr_meta(body_part="KNEE"), "KNEE"),
    ({"modality": "US", "body_part": "BREAST"}, "US"),
])
def test_pneumonia_model_abstains_outside_intended_use(pneu, settings, meta, reason):
    f = classify(study_from(pneu[0][2], **meta), model="pneumonia-cxr", settings=settings)
    assert f.abstain and reason in f.abstain_reason
    assert f.probability is None and f.label is None and f.probabilities == {}
    assert f.model_card["intended_use"]
    assert "abstained" in f.text()


@pytest.mark.parametrize("meta", [cxr_meta(), {"modality": "US"}, {"modality": "US", "body_part": "THYROID"},
                                  {"modality": "MR", "body_part": "BREAST"}])
def test_breast_model_abstains_on_anything_but_breast_us(breast, settings, meta):
    f = classify(study_from(breast[0][0], **meta), model="breast-us", settings=settings)
    assert f.abstain and f.abstain_reason


def test_model_selection_from_metadata(breast, settings):
    f = classify(study_from(breast[0][0], modality="US", body_part="BREAST"), settings=settings)
    assert f.model == "breast-us" and not f.abstain
    f = classify(study_from(breast[0][0], modality="US", study_description="US BREAST LEFT"), settings=settings)
    assert f.model == "breast-us" and not f.abstain
    # US with no body part: the breast model is the only candidate, and it abstains
    f = classify(study_from(breast[0][0], modality="US"), settings=settings)
    assert f.model == "breast-us" and f.abstain and "no body part" in f.abstain_reason


def test_no_metadata_needs_a_named_model(pneu, settings):
    study = study_from(pneu[0][0], modality="OT")
    with pytest.raises(NoApplicableModelError, match="--model"):
        classify(study, settings=settings)
    f = classify(study, model="pneumonia-cxr", settings=settings)
    assert not f.abstain and "no modality recorded" in f.caution
    with pytest.raises(NoApplicableModelError, match="CT"):
        classify(study_from(pneu[0][0], modality="CT"), settings=settings)


def test_unknown_model_name(pneu, settings):
    with pytest.raises(UnknownNameError, match="pneumonia-cxr"):
        classify(study_from(pneu[0][0], **cxr_meta()), model="pneumonia", settings=settings)


def test_bad_pixels_are_typed_errors(settings):
    with pytest.raises(InvalidImageError, match="constant"):
        classify(study_from(np.full((64, 64), 7, np.uint8), **cxr_meta()), settings=settings)
    vol = np.random.default_rng(0).integers(0, 255, (5, 64, 64)).astype(np.uint8)
    with pytest.raises(InvalidImageError, match="frames"):
        classify(study_from(vol, **cxr_meta()), settings=settings)
    with pytest.raises(InvalidImageError, match="empty"):
        classify(study_from(np.zeros((0, 5), np.uint8), **cxr_meta()), settings=settings)


def test_saliency_at_original_resolution(pneu, settings, tmp_path):
    # a real image upsampled to a non-square size: the map must align with the original pixels
    img = np.asarray(Image.fromarray(pneu[0][5]).resize((84, 100), Image.BILINEAR))
    out = tmp_path / "cam.png"
    f = classify(study_from(img, **cxr_meta()), settings=settings, saliency_png=out)
    assert f.saliency.shape == (100, 84)
    assert f.saliency.min() >= 0 and f.saliency.max() <= 1 and f.saliency.max() > 0
    assert np.all(f.saliency[:8] == 0) and np.all(f.saliency[-8:] == 0)  # outside the centre square
    png = Image.open(out)
    assert png.size == (84, 100) and png.mode == "RGB"
    assert f.saliency_png == str(out)
    with pytest.raises(InvalidImageError):
        classify(study_from(np.full((9, 9), 1, np.uint8), **cxr_meta()), settings=settings, saliency=True)


def test_ood_scores_other_sources_higher(pneu, settings):
    """CT and MR slices (pydicom test data), shown to the CXR model as if they were chest radiographs."""
    import pydicom

    in_dist = [classify(study_from(pneu[0][i], **cxr_meta()), settings=settings).ood_score for i in range(20)]
    scores = []
    for name in ("CT_small.dcm", "MR_small.dcm"):
        arr = pydicom.dcmread(pydicom_file(name)).pixel_array.astype(np.float32)
        disp = (arr - arr.min()) / (arr.max() - arr.min())
        f = classify(study_from((disp * 255).astype(np.uint8), modality="OT"), model="pneumonia-cxr",
                     settings=settings)
        scores.append(f.ood_score)
    assert min(scores) > np.median(in_dist)
