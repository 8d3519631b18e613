"""classify() with the bundled models on real images: selection, abstention, caution, OOD, saliency and
bad input. pneumonia-cxr reads Kermany test images, brain-mri-tumour Cheng fold-5 slices (both held out
from training and selection), breast-us BreastMNIST test images."""

from __future__ import annotations

import csv
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import pydicom_file, shared_file
from tools.classifiers.config import ClassifierConfig
from tools.classifiers.inference import Finding, classify, classify_many
from tools.errors import InvalidImageError, NoApplicableModelError, UnknownNameError

from .helpers import CHENG, KERMANY, cxr_meta, medmnist, study_from

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CPU = ClassifierConfig(device="cpu")
MRI = {"modality": "MR", "body_part": "HEAD", "series_description": "T1 AX POST GD"}
LABELS = ("meningioma", "glioma", "pituitary")


def _grey(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


@pytest.fixture(scope="module")
def cxr() -> tuple[list[np.ndarray], np.ndarray]:
    """20 normal and 20 pneumonia images of the Kermany test split, as 224x224 uint8."""
    images, labels = [], []
    with tarfile.open(shared_file(KERMANY)) as tf:
        names = sorted(n for n in tf.getnames() if "/test/" in n and n.endswith(".jpeg"))
        for cls, label in (("NORMAL", 0), ("PNEUMONIA", 1)):
            for name in [n for n in names if f"/test/{cls}/" in n][::9][:20]:
                images.append(_grey(tf.extractfile(name).read()))
                labels.append(label)
    return images, np.array(labels)


@pytest.fixture(scope="module")
def mri() -> tuple[list[np.ndarray], np.ndarray]:
    """30 fold-5 (test) slices of the Cheng data set, 10 per class, as 512x512 uint8."""
    images, labels = [], []
    with tarfile.open(shared_file(CHENG)) as tf:
        rows = list(csv.DictReader(io.StringIO(
            tf.extractfile("figshare_cheng_brain_tumor/metadata.csv").read().decode())))
        for k, cls in enumerate(LABELS):
            for row in [r for r in rows if r["cv_fold"] == "5" and r["class"] == cls][::7][:10]:
                images.append(_grey(tf.extractfile(f"figshare_cheng_brain_tumor/{row['path']}").read()))
                labels.append(k)
    return images, np.array(labels)


@pytest.fixture(scope="module")
def breast():
    return medmnist("breastmnist")


def test_paediatric_cxr_is_classified_with_card(cxr):
    f = classify(study_from(cxr[0][0], **cxr_meta()), config=CPU)
    assert isinstance(f, Finding)
    assert f.model == "pneumonia-cxr" and f.model_version == "2.0.0" and "modality CR" in f.model_selection
    assert not f.abstain and f.abstain_reason is None
    assert abs(sum(f.probabilities.values()) - 1) < 1e-3
    assert f.probability == f.probabilities["pneumonia"]
    assert f.label == ("pneumonia" if f.probability >= f.threshold else "normal")
    card = f.model_card
    assert card["metrics"]["test"]["n"] == 624 and "Kermany" in card["training_data"]
    assert "CC BY 4.0" in card["data_licence"]
    assert f.ood_score is not None and f.ood_threshold is not None
    assert f.device == "cpu" and f.disclaimer and f.statement is None
    d = f.to_dict()
    assert d["model_card"]["intended_use"] and "saliency" not in d


def test_predictions_agree_with_labels_on_held_out_images(cxr, mri, breast):
    f = classify_many([study_from(img, **cxr_meta()) for img in cxr[0]], config=CPU)
    acc = np.mean([x.label == ("normal", "pneumonia")[y] for x, y in zip(f, cxr[1], strict=True)])
    assert acc >= 0.8, acc  # balanced accuracy on all 624 test films: 0.877 (card); 40 films vary by ~0.05
    f = classify_many([study_from(img, **MRI) for img in mri[0]], config=CPU)
    assert {x.model for x in f} == {"brain-mri-tumour"}
    acc = np.mean([x.label == LABELS[y] for x, y in zip(f, mri[1], strict=True)])
    assert acc >= 0.8, acc  # fold-5 accuracy 0.854 (card); this sample is small
    images, labels = breast
    idx = np.random.default_rng(0).choice(len(labels), 40, replace=False)
    f = classify_many([study_from(images[i], modality="US", body_part="BREAST") for i in idx], config=CPU)
    acc = np.mean([x.label == x.labels[labels[i]] for x, i in zip(f, idx, strict=True)])
    assert acc >= 0.7 and f[0].positive_label == "malignant"


def test_brain_result_is_the_type_only_and_says_so(mri):
    f = classify(study_from(mri[0][0], **MRI), config=CPU)
    assert f.model == "brain-mri-tumour" and "modality MR and body part HEAD" in f.model_selection
    assert f.threshold is None and f.label in LABELS and f.positive_label == f.label
    assert f.probability == max(f.probabilities.values())
    assert "cannot tell whether a tumour is present" in f.statement
    assert f.statement in f.text() and f.to_dict()["statement"] == f.statement
    assert "tumour is present" in f.model_card["result_statement"]
    # the description of the study names the head instead of BodyPartExamined
    f = classify(study_from(mri[0][0], modality="MR", study_description="MRI BRAIN WITH CONTRAST"), config=CPU)
    assert not f.abstain


def test_batched_equals_single(cxr, mri):
    studies = [study_from(img, **cxr_meta()) for img in cxr[0][:3]] + [study_from(img, **MRI) for img in mri[0][:3]]
    batch = classify_many(studies, config=CPU)
    for s, b in zip(studies, batch, strict=True):
        assert abs(classify(s, config=CPU).probability - b.probability) < 1e-4


def test_adult_gets_caution_not_abstention(cxr):
    f = classify(study_from(cxr[0][1], **cxr_meta(patient_age_years=62.0)), config=CPU)
    assert not f.abstain and f.probability is not None
    assert "adult" in f.caution and "1-5" in f.caution


def test_other_mr_sequences_get_a_caution(mri):
    f = classify(study_from(mri[0][1], modality="MR", body_part="BRAIN", series_description="AX T2 FLAIR"),
                 config=CPU)
    assert not f.abstain and "T2/FLAIR" in f.caution and "contrast-enhanced T1" in f.caution


@pytest.mark.parametrize("meta, reason", [
    (cxr_meta(view_position="LL"), "lateral"),
    (cxr_meta(modality="CT"), "CT"),
    (cxr_meta(body_part="KNEE"), "KNEE"),
    ({"modality": "US", "body_part": "BREAST"}, "US"),
    (MRI, "MR"),
])
def test_pneumonia_model_abstains_outside_intended_use(cxr, meta, reason):
    f = classify(study_from(cxr[0][2], **meta), model="pneumonia-cxr", config=CPU)
    assert f.abstain and reason in f.abstain_reason
    assert f.probability is None and f.label is None and f.probabilities == {}
    assert f.model_card["intended_use"] and "abstained" in f.text()


@pytest.mark.parametrize("meta, reason", [
    (cxr_meta(), "CR"),
    ({"modality": "CT", "body_part": "HEAD"}, "CT"),
    ({"modality": "MR", "body_part": "KNEE"}, "KNEE"),
    ({"modality": "MR"}, "no body part"),
])
def test_brain_model_abstains_on_anything_but_mr_of_the_head(mri, meta, reason):
    f = classify(study_from(mri[0][0], **meta), model="brain-mri-tumour", config=CPU)
    assert f.abstain and reason in f.abstain_reason and f.label is None
    assert f.statement and f.statement in f.text()


@pytest.mark.parametrize("meta", [cxr_meta(), {"modality": "US"}, {"modality": "US", "body_part": "THYROID"},
                                  {"modality": "MR", "body_part": "BREAST"}])
def test_breast_model_abstains_on_anything_but_breast_us(breast, meta):
    f = classify(study_from(breast[0][0], **meta), model="breast-us", config=CPU)
    assert f.abstain and f.abstain_reason


def test_model_selection_from_metadata(breast, mri):
    f = classify(study_from(breast[0][0], modality="US", body_part="BREAST"), config=CPU)
    assert f.model == "breast-us" and not f.abstain
    f = classify(study_from(breast[0][0], modality="US", study_description="US BREAST LEFT"), config=CPU)
    assert f.model == "breast-us" and not f.abstain
    # US with no body part: the breast model is the only candidate, and it abstains
    f = classify(study_from(breast[0][0], modality="US"), config=CPU)
    assert f.model == "breast-us" and f.abstain and "no body part" in f.abstain_reason
    # MR of the knee: no model is meant for it
    with pytest.raises(NoApplicableModelError, match="MR"):
        classify(study_from(mri[0][0], modality="MR", body_part="KNEE"), config=CPU)


def test_no_metadata_needs_a_named_model(cxr):
    study = study_from(cxr[0][0], modality="OT")
    with pytest.raises(NoApplicableModelError, match="--model"):
        classify(study, config=CPU)
    f = classify(study, model="pneumonia-cxr", config=CPU)
    assert not f.abstain and "no modality recorded" in f.caution
    with pytest.raises(NoApplicableModelError, match="CT"):
        classify(study_from(cxr[0][0], modality="CT"), config=CPU)


def test_unknown_model_name(cxr):
    with pytest.raises(UnknownNameError, match="pneumonia-cxr"):
        classify(study_from(cxr[0][0], **cxr_meta()), model="pneumonia", config=CPU)
    with pytest.raises(UnknownNameError, match="brain-mri-tumour"):
        classify(study_from(cxr[0][0], **cxr_meta()), model="brain-tumour", config=CPU)


def test_bad_pixels_are_typed_errors():
    with pytest.raises(InvalidImageError, match="constant"):
        classify(study_from(np.full((256, 256), 7, np.uint8), **cxr_meta()), config=CPU)
    with pytest.raises(InvalidImageError, match="empty"):
        classify(study_from(np.zeros((0, 5), np.uint8), **cxr_meta()), config=CPU)


def test_a_series_needs_the_slice_to_read(mri):
    vol = np.stack(mri[0][:4])
    study = study_from(vol, **MRI)
    with pytest.raises(InvalidImageError, match="series of 4 slices.*which slice"):
        classify(study, config=CPU)
    with pytest.raises(InvalidImageError, match="slices 0-3"):
        classify(study, config=CPU, slice_index=9)
    f = classify(study, config=CPU, slice_index=2)
    single = classify(study_from(mri[0][2], **MRI), config=CPU)
    assert f.probabilities == single.probabilities


def test_saliency_at_original_resolution(cxr, mri, tmp_path):
    # a real film stretched to a non-square size: the map covers the whole image at its own size
    img = np.asarray(Image.fromarray(cxr[0][25]).resize((300, 360), Image.BILINEAR))
    out = tmp_path / "cam.png"
    f = classify(study_from(img, **cxr_meta()), config=CPU, saliency_png=out)
    assert f.saliency.shape == (360, 300)
    assert f.saliency.min() >= 0 and f.saliency.max() <= 1 and (f.saliency > 0).mean() > 0.05
    png = Image.open(out)
    assert png.size == (300, 360) and png.mode == "RGB" and f.saliency_png == str(out)
    # a brain slice: the map explains the chosen type, at 512x512
    f = classify(study_from(mri[0][3], **MRI), config=CPU, saliency=True)
    assert f.saliency.shape == (512, 512) and f.saliency.max() > 0


def test_ood_scores_of_other_sources_are_higher(cxr, mri):
    """Brain slices shown to the chest model and chest films shown to the brain model score far out."""
    in_cxr = [classify(study_from(img, **cxr_meta()), config=CPU).ood_score for img in cxr[0][:10]]
    as_cxr = [classify(study_from(img, modality="OT"), model="pneumonia-cxr", config=CPU) for img in mri[0][:5]]
    assert min(f.ood_score for f in as_cxr) > np.median(in_cxr)
    in_mri = [classify(study_from(img, **MRI), config=CPU).ood_score for img in mri[0][:10]]
    as_mri = [classify(study_from(img, modality="OT"), model="brain-mri-tumour", config=CPU) for img in cxr[0][:5]]
    assert min(f.ood_score for f in as_mri) > np.median(in_mri)
    assert all(f.ood_flag and "unlike the training data" in f.caution for f in as_mri + as_cxr)


def test_pydicom_ct_and_mr_are_out_of_distribution_for_both_models():
    import pydicom

    for name in ("CT_small.dcm", "MR_small.dcm"):
        arr = pydicom.dcmread(pydicom_file(name)).pixel_array.astype(np.float32)
        disp = ((arr - arr.min()) / (arr.max() - arr.min()) * 255).astype(np.uint8)
        big = np.asarray(Image.fromarray(disp).resize((256, 256), Image.BILINEAR))
        for model in ("pneumonia-cxr", "brain-mri-tumour"):
            f = classify(study_from(big, modality="OT"), model=model, config=CPU)
            assert f.caution and not f.abstain, (name, model)
