"""`radconsult classify` and `radconsult models ...` on real files."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from agent.cli import main
from tests.conftest import pydicom_file, shared_file


@pytest.fixture(autouse=True)
def _isolated(settings, monkeypatch):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("RADCONSULT_MODEL_DIRS", raising=False)


def run_json(capsys, *argv: str) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_models_list(capsys):
    models = run_json(capsys, "models", "list")
    names = {m["name"] for m in models}
    assert {"pneumonia-cxr", "breast-us"} <= names
    assert all(m["weights_present"] and m["metrics"]["test"]["auc"] for m in models)
    assert main(["models", "list"]) == 0
    assert "pneumonia-cxr" in capsys.readouterr().out


def test_models_eval_prints_metrics(capsys):
    data = shared_file("medmnist/breastmnist.npz")
    r = run_json(capsys, "models", "eval", "breast-us", "--data", str(data), "--split", "test")
    assert {"auc", "acc", "ece", "brier", "n"} <= set(r) and r["n"] == 156


def test_classify_adult_dicom_cxr_with_saliency(capsys, tmp_path):
    out = tmp_path / "cam.png"
    path = pydicom_file("RG1_UNCI.dcm")
    r = run_json(capsys, "classify", str(path), "--saliency", str(out))
    assert r["model"] == "pneumonia-cxr" and not r["abstain"]
    assert r["probability"] is not None and r["label"] in ("normal", "pneumonia")
    assert "64 years old (an adult)" in r["caution"]  # age from birth and study dates
    assert r["model_card"]["metrics"]["test"]["n"] == 624
    assert Image.open(out).size == (1841, 1955)


def test_classify_siim_adult_gets_caution(capsys):
    r = run_json(capsys, "classify", str(shared_file("cxr/siim_cxr_no_pneumothorax.dcm")))
    assert r["model"] == "pneumonia-cxr" and not r["abstain"] and "adult" in r["caution"]


def test_classify_abstains_on_ct_when_model_named(capsys):
    r = run_json(capsys, "classify", str(pydicom_file("CT_small.dcm")), "--model", "pneumonia-cxr")
    assert r["abstain"] and "CT" in r["abstain_reason"] and r["probability"] is None
    assert main(["classify", str(pydicom_file("CT_small.dcm")), "--model", "pneumonia-cxr"]) == 0
    assert "abstained" in capsys.readouterr().out


def test_classify_png_needs_model_then_works(capsys, tmp_path):
    png = shared_file("cxr/nih_00000001_000_cardiomegaly.png")
    assert main(["classify", str(png)]) == 2
    assert "--model" in capsys.readouterr().err
    out = tmp_path / "o.png"
    assert main(["classify", str(png), "--model", "pneumonia-cxr", "--saliency", str(out)]) == 0
    text = capsys.readouterr().out
    assert "P(pneumonia)" in text and "not a diagnosis" in text and out.is_file()


def test_cli_errors_are_messages(capsys, tmp_path):
    png = shared_file("cxr/nih_00000001_000_cardiomegaly.png")
    assert main(["classify", str(png), "--model", "pneumonia-xr"]) == 2
    assert "did you mean pneumonia-cxr" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "missing.dcm")]) == 2
    assert main(["models", "eval", "breast-us", "--data", str(tmp_path / "x.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["classify", str(png), "--model", "pneumonia-cxr", "--saliency", str(tmp_path / "o.jpg")]) == 2
    assert ".png" in capsys.readouterr().err


def test_models_train_quick(capsys, tmp_path):
    data = shared_file("medmnist/breastmnist.npz")
    r = run_json(capsys, "models", "train", "breast-us", "--data", str(data), "--out", str(tmp_path / "b"),
                 "--seed", "1", "--epochs", "1", "--limit", "48")
    assert r["name"] == "breast-us" and r["metrics"]["test"]["n"] == 156
    assert (tmp_path / "b" / "models" / "model.pt").is_file()
    r = run_json(capsys, "models", "eval", str(tmp_path / "b"), "--data", str(data), "--split", "val")
    assert r["n"] == 78  # the whole val split; --limit only shaped training


def test_models_cv_prints_the_fold_table_and_resumes(capsys, tmp_path):
    from tests.tools.classifiers.helpers import tiny_cheng

    archive = tiny_cheng(tmp_path, per_fold_class=2)
    out = tmp_path / "cv"
    argv = ["models", "cv", "brain-mri-tumour", "--data", str(archive), "--out", str(out), "--folds", "1,2",
            "--epochs", "1", "--threads", "1"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| test fold | val fold | n | ACC | macro AUC | recall meningioma | recall glioma | recall pituitary" in table
    assert "| mean +- sd |" in table and " +- " in table.splitlines()[-1]
    result = json.loads((out / "cv.json").read_text())
    assert [r["test_fold"] for r in result["folds"]] == [1, 2] and set(result["sd"]) >= {"acc", "auc"}
    assert "--epochs 1 --threads 1" in result["command"]
    for k in (1, 2):  # each fold's own test read is logged in its card
        meta = json.loads((out / f"test-fold-{k}" / "configs" / "metadata.json").read_text())
        assert len(meta["test_reads"]) == 1 and meta["test_reads"][0]["n"] == result["folds"][k - 1]["n"]
    bundle = tmp_path / "bundle"
    import shutil

    shutil.copytree(out / "test-fold-2", bundle)
    assert main([*argv, "--attach", str(bundle)]) == 0  # both folds are read, not retrained
    assert "already trained" in capsys.readouterr().err
    assert "Cross-validation" in (bundle / "docs" / "README.md").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["models", "cv", "brain-mri-tumour", "--folds", "1,1"], "distinct"),
    (["models", "cv", "brain-mri-tumour", "--folds", "6"], "distinct"),
    (["models", "cv", "brain-mri-tumour", "--folds", "1,x"], "comma-separated"),
    (["models", "cv", "pneumonia-cxr"], "fold-based"),
    (["models", "train", "breast-us", "--budget-min", "5"], "archive recipes"),
    (["models", "train", "pneumonia-cxr", "--budget-min", "-1"], "must be positive"),
    (["models", "train", "pneumonia-cxr", "--budget-min", "5", "--epochs", "3"], "not both"),
    (["models", "train", "pneumonia-cxr", "--threads", "0"], "threads"),
    (["models", "eval", "breast-us", "--split", "val", "--record"], "--split test"),
])
def test_bad_training_options_are_messages(capsys, tmp_path, argv, message):
    data = shared_file("medmnist/breastmnist.npz")
    assert main([*argv, "--data", str(data), "--out", str(tmp_path / "o")] if argv[1] != "eval"
                else [*argv, "--data", str(data)]) == 2
    assert message in capsys.readouterr().err


def test_a_recorded_test_read_is_logged_in_the_card(capsys, tmp_path):
    import shutil

    from tools.classifiers.registry import BUNDLED_DIR

    bundle = tmp_path / "breast-us"
    shutil.copytree(BUNDLED_DIR / "breast-us", bundle)
    data = shared_file("medmnist/breastmnist.npz")
    r = run_json(capsys, "models", "eval", str(bundle), "--data", str(data), "--split", "test", "--record")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["test_reads"][-1]["n"] == r["n"] == 156 and meta["test_reads"][-1]["auc"] == r["auc"]
    assert "Every read of the test split" in (bundle / "docs" / "README.md").read_text()
    assert main(["models", "eval", str(bundle), "--data", str(data), "--split", "test"]) == 0
    assert "not logged" in capsys.readouterr().err  # an unrecorded read says so
