"""`radconsult inspect` and `radconsult deid` through agent.cli.main, on real files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pydicom
import pytest

from agent.cli import main
from tests.conftest import pydicom_file, shared_file


@pytest.fixture(autouse=True)
def _isolated(settings, monkeypatch):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_inspect_json(capsys):
    assert main(["inspect", str(pydicom_file("CT_small.dcm")), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source_format"] == "dicom" and data["shape"] == [128, 128]
    assert data["metadata"]["modality"] == "CT"
    assert data["patient_key"].startswith("P-") and data["study_key"].startswith("S-")
    assert "CompressedSamples" not in json.dumps(data) and "1CT1" not in json.dumps(data)


def test_inspect_text_on_png_and_volume(capsys, tmp_path):
    assert main(["inspect", str(shared_file("cxr/nih_00000001_000_cardiomegaly.png"))]) == 0
    out = capsys.readouterr().out
    assert "format:" in out and "png" in out and "512 x 512" in out
    assert main(["inspect", str(pydicom_file("emri_small.dcm"))]) == 0
    assert "10 x 64 x 64" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "RG1_J2KI.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "examples_palette.dcm", "JPEG-LL.dcm"])
def test_inspect_works_on_samples(capsys, name):
    assert main(["inspect", str(pydicom_file(name)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"]


def test_inspect_bad_input_is_a_message_not_a_traceback(capsys, tmp_path):
    assert main(["inspect", str(tmp_path / "missing.dcm")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("radconsult: error: no such file") and "Traceback" not in err
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(pydicom_file("CT_small.dcm").read_bytes()[:20000])
    assert main(["inspect", str(bad), "--json"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_deid_file(tmp_path, capsys):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    src = tmp_path / "in.dcm"
    shutil.copy(pydicom_file("RG1_UNCI.dcm"), src)
    before = _digest(src)
    out = tmp_path / "out.dcm"
    assert main(["deid", str(src), str(out)]) == 0
    assert _digest(src) == before  # input untouched
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES" and "InstitutionName" not in ds
    assert str(ds.PatientName).startswith("P-")
    assert "wrote 1" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.dcm", "out.dcm"]  # no temp file left
    # never overwrite: a second run refuses and leaves the first output as it was
    digest = _digest(out)
    assert main(["deid", str(src), str(out)]) == 2
    assert "exists" in capsys.readouterr().err and _digest(out) == digest


def test_deid_warns_about_burned_in_annotation(tmp_path, capsys):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.BurnedInAnnotation = "YES"
    ds.save_as(tmp_path / "burned.dcm")
    assert main(["deid", str(tmp_path / "burned.dcm"), str(tmp_path / "clean.dcm")]) == 0
    assert "Burned In Annotation = YES" in capsys.readouterr().out
    assert pydicom.dcmread(tmp_path / "clean.dcm").BurnedInAnnotation == "YES"  # the flag travels


def test_deid_file_into_existing_folder_is_named_after_the_new_uid(tmp_path, capsys):
    src = tmp_path / "Doe_John_MRN7734521.dcm"  # a name that identifies the patient
    shutil.copy(pydicom_file("MR_small.dcm"), src)
    (tmp_path / "outdir").mkdir()
    assert main(["deid", str(src), str(tmp_path / "outdir"), "--json"]) == 0
    printed = capsys.readouterr().out
    written = list((tmp_path / "outdir").iterdir())
    assert len(written) == 1
    ds = pydicom.dcmread(written[0])
    assert written[0].name == f"{ds.SOPInstanceUID}.dcm" and ds.SOPInstanceUID.startswith("2.25.")
    assert ds.SOPInstanceUID != pydicom.dcmread(src).SOPInstanceUID  # the remapped UID, not the original
    assert json.loads(printed)["output"] == str(written[0])
    for part in ("Doe", "John", "7734521"):
        assert part not in written[0].name and part not in printed
    # a second run does not overwrite, and its message names the output, not the input
    assert main(["deid", str(src), str(tmp_path / "outdir")]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "Doe" not in err and "7734521" not in err


def test_deid_folder_with_dicomdir(tmp_path, capsys):
    src = tmp_path / "media"
    shutil.copytree(pydicom_file("DICOMDIR").parent, src)
    before = {p: _digest(p) for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "clean"
    assert main(["deid", str(src), str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["written"] > 10 and result["skipped"] >= 1  # DICOMDIR indexes and README skipped
    names = [p.name for p in out.iterdir()]
    assert len(names) == result["written"] and all(n.startswith("2.25.") and n.endswith(".dcm") for n in names)
    assert not any("77654033" in n or "98892001" in n for n in _tree(out))  # patient-ID folder names gone
    assert {p: _digest(p) for p in src.rglob("*") if p.is_file()} == before
    for path in list(out.iterdir())[:5]:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert "Doe" not in str(ds.PatientName)


def test_deid_refuses_out_equal_or_inside_in(tmp_path, capsys):
    src = tmp_path / "series"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "a.dcm")
    snapshot = _tree(tmp_path)
    assert main(["deid", str(src), str(src)]) == 2
    assert "same as IN" in capsys.readouterr().err
    assert main(["deid", str(src), str(src / "out")]) == 2
    assert "inside IN" in capsys.readouterr().err
    assert main(["deid", str(src / "a.dcm"), str(src / "a.dcm")]) == 2
    assert _tree(tmp_path) == snapshot


def test_deid_folder_error_writes_nothing(tmp_path, capsys):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    src = tmp_path / "series"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src / "a.dcm")
    (src / "b.dcm").write_bytes(pydicom_file("MR_small.dcm").read_bytes()[:600])  # truncated header
    out = tmp_path / "out"
    assert main(["deid", str(src), str(out)]) == 2
    assert "b.dcm" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]  # no temporary folder left


def test_deid_rejects_non_dicom_and_missing(tmp_path, capsys):
    out = tmp_path / "x.dcm"
    assert main(["deid", str(shared_file("cxr/nih_00000001_000_cardiomegaly.png")), str(out)]) == 2
    assert "not a DICOM file" in capsys.readouterr().err and not out.exists()
    assert main(["deid", str(tmp_path / "nope.dcm"), str(out)]) == 2
    assert "no such file" in capsys.readouterr().err and not out.exists()


def test_deid_empty_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["deid", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
