"""Issue 14's end-to-end check: held-out test images written as real DICOM files (CR chest; MR head), with
the encodings a PACS sends (MONOCHROME1, 12-bit stored values with a window, a rescale and a VOI LUT
sequence, no window at all, a film at its own non-square size), read back by `radconsult classify`, give the
probabilities of the in-memory evaluation (`radconsult models eval`'s path over the training archive)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.cli import main
from tests.tools.classifiers.helpers import archive_members, tiny_cheng, tiny_kermany
from tools.classifiers.calibration import softmax
from tools.classifiers.evaluate import archive_inputs
from tools.classifiers.registry import get_bundle
from tools.classifiers.runtime import load_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def _isolated(settings, monkeypatch):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RADCONSULT_DEVICE", "cpu")
    monkeypatch.delenv("RADCONSULT_MODEL_DIRS", raising=False)


def _dicom(path: Path, stored: np.ndarray, modality: str, photometric: str = "MONOCHROME2", bits: int = 8,
           **tags: object) -> Path:
    """A minimal, valid DICOM image (explicit VR little endian) with the given pixels and tags."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    sop_class = "1.2.840.10008.5.1.4.1.1.1" if modality == "CR" else "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientID, ds.PatientName = "RT-0001", "Roundtrip^Test"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _voi_lut(ds_tags: dict, n: int = 4096) -> dict:
    """A linear VOI LUT sequence over stored values 0..n-1 (12-bit output)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.add_new(0x00283002, "US", [n, 0, 12])  # LUTDescriptor: entries, first stored value, bits
    item.add_new(0x00283006, "OW", np.arange(n, dtype="<u2").tobytes())  # LUTData: identity ramp
    return {**ds_tags, "VOILUTSequence": [item]}


def _classify(capsys, path: Path) -> dict:
    assert main(["classify", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _in_memory(name: str, archive: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    bundle = get_bundle(name)
    inputs, _, members = archive_inputs(bundle, archive, "test")
    logits, _ = load_model(bundle, "cpu").predict(inputs)
    return softmax(logits, bundle.temperature), members


def test_cr_chest_dicom_round_trip_matches_in_memory_evaluation(capsys, tmp_path):
    archive = tiny_kermany(tmp_path, per_folder=2)
    probs, members = _in_memory("pneumonia-cxr", archive)
    jpegs = archive_members(archive, list(members))
    chest = {"BodyPartExamined": "CHEST", "ViewPosition": "AP", "PatientAge": "003Y"}
    worst = 0.0
    for k, member in enumerate(members):
        v = np.asarray(Image.open(io.BytesIO(jpegs[member])).convert("L")).astype(np.int64)
        variants = {
            "mono2-8bit": _dicom(tmp_path / f"{k}a.dcm", v, "CR", **chest),
            "mono1-12bit-window": _dicom(tmp_path / f"{k}b.dcm", (255 - v) * 16 + 8, "CR", "MONOCHROME1", 12,
                                         WindowCenter=2048, WindowWidth=4096, **chest),
            "rescale+voi-lut": _dicom(tmp_path / f"{k}c.dcm", v * 16, "CR", bits=12,
                                      **_voi_lut({"RescaleSlope": 1, "RescaleIntercept": 0, **chest})),
        }
        for what, path in variants.items():
            r = _classify(capsys, path)
            assert r["model"] == "pneumonia-cxr" and not r["abstain"], what
            p = r["probabilities"]["pneumonia"]
            worst = max(worst, abs(p - probs[k, 1]))
            assert p == pytest.approx(probs[k, 1], abs=2e-3), (member, what)
        # the film at a portrait size of its own: stretched back to 224x224 as the training images were
        big = np.asarray(Image.fromarray(v.astype(np.uint8)).resize((720, 880), Image.BICUBIC)).astype(np.int64)
        r = _classify(capsys, _dicom(tmp_path / f"{k}d.dcm", big * 16, "DX", bits=12, WindowCenter=2040,
                                     WindowWidth=4080, **chest))
        threshold = get_bundle("pneumonia-cxr").threshold
        assert abs(r["probabilities"]["pneumonia"] - probs[k, 1]) < 0.1, member
        if abs(probs[k, 1] - threshold) >= 0.1:  # a resampled film may cross the threshold when it sits on it
            assert r["label"] == ("pneumonia" if probs[k, 1] >= threshold else "normal"), member


def test_mr_head_dicom_round_trip_matches_in_memory_evaluation(capsys, tmp_path):
    archive = tiny_cheng(tmp_path, per_fold_class=1)
    probs, members = _in_memory("brain-mri-tumour", archive)
    labels = get_bundle("brain-mri-tumour").labels
    jpegs = archive_members(archive, list(members))
    head = {"BodyPartExamined": "HEAD", "SeriesDescription": "T1 AX POST GD", "PatientAge": "045Y"}
    for k, member in enumerate(members):
        v = np.asarray(Image.open(io.BytesIO(jpegs[member])).convert("L")).astype(np.int64)
        for what, path in {
            "mono2-8bit": _dicom(tmp_path / f"{k}a.dcm", v, "MR", **head),
            "16bit-rescale-window": _dicom(tmp_path / f"{k}b.dcm", v * 8 + 100, "MR", bits=16, RescaleSlope=0.5,
                                           RescaleIntercept=-50, WindowCenter=510, WindowWidth=1020, **head),
            # no window in the header: the loader's estimated display window must not reach the model
            "16bit-rescale-no-window": _dicom(tmp_path / f"{k}c.dcm", v * 8 + 100, "MR", bits=16, RescaleSlope=0.5,
                                              RescaleIntercept=-50, **head),
            "mono1-12bit-no-window": _dicom(tmp_path / f"{k}d.dcm", (255 - v) * 16, "MR", "MONOCHROME1", 12, **head),
        }.items():
            r = _classify(capsys, path)
            assert r["model"] == "brain-mri-tumour" and not r["abstain"], what
            got = np.array([r["probabilities"][lab] for lab in labels])
            np.testing.assert_allclose(got, probs[k], atol=2e-3, err_msg=f"{member} {what}")
            assert r["label"] == labels[int(np.argmax(probs[k]))]
            assert "tumour is present" in r["statement"]
