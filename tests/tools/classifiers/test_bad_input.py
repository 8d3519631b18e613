"""Issue 14's bad-input matrix with real files: a colour photograph, a lateral chest film, a CT slice and a
64x64 MR, each sent to each real-resolution model, as the clinician's file (with its metadata) and as a
bare PNG (no metadata, model named). Each gets an abstention or a caution, never a bare confident label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.wiring import imaging_config
from tests.conftest import pydicom_file, shared_file
from tools.classifiers.config import ClassifierConfig
from tools.classifiers.inference import Finding, classify
from tools.imaging import ImageStudy, load

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MODELS = ("pneumonia-cxr", "brain-mri-tumour")
CPU = ClassifierConfig(device="cpu")


def _photo() -> Path:
    sklearn = pytest.importorskip("sklearn")
    path = Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg"
    if not path.is_file():
        pytest.skip("scikit-learn's sample photograph china.jpg is not installed")
    return path


def _lateral(tmp: Path) -> Path:
    """The real SIIM chest CR, its header marked as a left lateral view (ViewPosition LL)."""
    import pydicom

    ds = pydicom.dcmread(shared_file("cxr/siim_cxr_no_pneumothorax.dcm"))
    ds.ViewPosition = "LL"
    ds.SeriesDescription = "CHEST LAT"
    out = tmp / "lateral.dcm"
    ds.save_as(out)
    return out


def _mr64_head(tmp: Path) -> Path:
    """pydicom's 64x64 MR_small.dcm with BodyPartExamined HEAD, so only its size is wrong."""
    import pydicom

    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.BodyPartExamined = "HEAD"
    out = tmp / "mr64_head.dcm"
    ds.save_as(out)
    return out


def _files(tmp: Path) -> dict[str, Path]:
    return {"colour photograph": _photo(), "lateral chest film": _lateral(tmp),
            "CT slice": pydicom_file("CT_small.dcm"), "64x64 MR": pydicom_file("MR_small.dcm"),
            "64x64 MR of the head": _mr64_head(tmp)}


def _as_png(study: ImageStudy, tmp: Path, name: str, settings) -> ImageStudy:
    """The same pixels as a bare 8-bit PNG: no modality, no body part, no view."""
    disp = np.asarray(study.display)
    arr = (np.clip(disp, 0, 1) * 255 + 0.5).astype(np.uint8)
    path = tmp / f"{name.replace(' ', '_')}.png"
    Image.fromarray(arr).save(path)
    return load(path, imaging_config(settings))


def _guarded(f: Finding) -> bool:
    """An abstention, or a label that comes with a caution."""
    return f.abstain or bool(f.cautions)


EXPECTED_ABSTAIN = {  # (file, model) -> words of the abstention reason, with the file's own metadata
    ("colour photograph", "pneumonia-cxr"): "colour", ("colour photograph", "brain-mri-tumour"): "colour",
    ("lateral chest film", "pneumonia-cxr"): "lateral", ("lateral chest film", "brain-mri-tumour"): "CR",
    ("CT slice", "pneumonia-cxr"): "CT", ("CT slice", "brain-mri-tumour"): "CT",
    ("64x64 MR", "pneumonia-cxr"): "MR", ("64x64 MR", "brain-mri-tumour"): "no body part",
    ("64x64 MR of the head", "pneumonia-cxr"): "MR", ("64x64 MR of the head", "brain-mri-tumour"): "64x64",
}


@pytest.mark.parametrize("model", MODELS)
def test_each_bad_input_abstains_with_its_metadata(tmp_path, settings, model):
    for what, path in _files(tmp_path).items():
        f = classify(load(path, imaging_config(settings)), model=model, config=CPU)
        reason = EXPECTED_ABSTAIN[(what, model)]
        assert f.abstain and reason in f.abstain_reason, (what, model, f.abstain_reason)
        assert f.label is None and f.probability is None


@pytest.mark.parametrize("model", MODELS)
def test_each_bad_input_without_metadata_abstains_or_is_cautioned(tmp_path, settings, model):
    for what, path in _files(tmp_path).items():
        study = _as_png(load(path, imaging_config(settings)), tmp_path, what, settings)
        f = classify(study, model=model, config=CPU)
        assert _guarded(f), (what, model)
        if what == "colour photograph":
            assert f.abstain and "colour" in f.abstain_reason
        elif what.startswith("64x64"):
            assert f.abstain and "64x64" in f.abstain_reason
        else:
            assert "no modality recorded" in f.caution


def test_without_a_model_name_the_photo_and_ct_find_no_model(tmp_path, settings):
    from tools.errors import NoApplicableModelError

    with pytest.raises(NoApplicableModelError, match="--model"):
        classify(load(_photo(), imaging_config(settings)), config=CPU)
    with pytest.raises(NoApplicableModelError, match="CT"):
        classify(load(pydicom_file("CT_small.dcm"), imaging_config(settings)), config=CPU)
