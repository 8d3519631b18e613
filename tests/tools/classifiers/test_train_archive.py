"""Training the real-resolution recipes on tiny real archives (one epoch, a few dozen images): the bundle
is complete, reproducible for a seed, evaluable with `models eval`, and classify() uses it. The full
recipes (tens of minutes each) run only in the slow test at the end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import shared_file
from tools.classifiers.bundle import Bundle
from tools.classifiers.config import ClassifierConfig
from tools.classifiers.evaluate import evaluate_bundle
from tools.classifiers.inference import classify
from tools.classifiers.recipes import get_recipe
from tools.classifiers.train import train
from tools.errors import DataArchiveError, InputError

from .helpers import CHENG, KERMANY, archive_members, study_from, tiny_cheng, tiny_kermany

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _grey(jpeg: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))


def test_tiny_pneumonia_run_is_a_complete_reproducible_bundle(tmp_path):
    archive = tiny_kermany(tmp_path, per_folder=6)
    a = train("pneumonia-cxr", archive, tmp_path / "a", seed=1, epochs=1)
    b = train("pneumonia-cxr", archive, tmp_path / "b", seed=1, epochs=1)
    sa = torch.load(a / "models" / "model.pt", weights_only=True)
    sb = torch.load(b / "models" / "model.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(v.dtype == torch.float16 for v in sa.values() if v.is_floating_point())  # fp16 storage
    bundle = Bundle.read(a)
    meta = bundle.metadata
    assert meta["version"] == get_recipe("pneumonia-cxr").version and meta["dataset"]["split_rule"]["kind"] == "kermany-cxr"
    assert meta["metrics"]["test"]["n"] == 12 and meta["training"]["n_val"] > 0
    assert meta["preprocessing"]["geometry"] == "stretch" and meta["preprocessing"]["size"] == [224, 224]
    assert {"auc", "acc", "sensitivity", "specificity", "ece", "brier"} <= set(meta["metrics"]["test"])
    assert bundle.temperature > 0 and bundle.ood is not None and bundle.ood.threshold > 0
    card = (a / "docs" / "README.md").read_text()
    assert "Kermany" in card and "CC BY 4.0" in card and "0.928" in card and "| test | 12 |" in card
    # `models eval` on the same archive recomputes the card's test metrics (same split rule, same path)
    result = evaluate_bundle(bundle, archive, "test", "cpu")
    for key in ("auc", "acc", "ece", "brier", "n", "sensitivity", "specificity"):
        assert result[key] == pytest.approx(meta["metrics"]["test"][key], abs=1e-3), key
    # and classify() runs it (a user bundle with the bundled name replaces it)
    name = sorted(n for n in _names(archive) if "/test/PNEUMONIA/" in n)[0]
    image = _grey(archive_members(archive, [name])[name])
    f = classify(study_from(image, modality="CR", body_part="CHEST", view_position="AP", patient_age_years=3.0),
                 config=ClassifierConfig(device="cpu", model_dirs=(a,)))
    assert f.model == "pneumonia-cxr" and f.model_version == meta["version"] and not f.abstain
    assert f.threshold is not None and f.probability == f.probabilities["pneumonia"]


def test_tiny_brain_run_rotates_folds_and_answers_only_the_type(tmp_path):
    archive = tiny_cheng(tmp_path, per_fold_class=3)
    out = train("brain-mri-tumour", archive, tmp_path / "fold2", seed=0, epochs=1, test_fold=2)
    bundle = Bundle.read(out)
    rule = bundle.metadata["dataset"]["split_rule"]
    assert (rule["test_fold"], rule["val_fold"]) == (2, 1)
    test = bundle.metadata["metrics"]["test"]
    assert test["n"] == 9 and set(test["per_class_recall"]) == {"meningioma", "glioma", "pituitary"}
    assert "Read every result as" in (out / "docs" / "README.md").read_text()
    name = sorted(n for n in _names(archive) if n.endswith(".jpg"))[0]
    image = _grey(archive_members(archive, [name])[name])
    f = classify(study_from(image, modality="MR", body_part="HEAD"), config=ClassifierConfig(model_dirs=(out,)))
    assert f.model == "brain-mri-tumour" and not f.abstain and f.threshold is None
    assert f.label in f.labels and f.positive_label == f.label
    assert f.probability == max(f.probabilities.values())
    assert "tumour was found" in f.statement and f.statement in f.text()


def test_a_time_budget_becomes_epochs_that_the_card_records(tmp_path):
    archive = tiny_kermany(tmp_path, per_folder=4)
    out = train("pneumonia-cxr", archive, tmp_path / "b", seed=0, budget_min=0.75, threads=1)
    meta = Bundle.read(out).metadata
    run = meta["training"]
    assert run["budget_min"] == 0.75 and run["epochs"] >= 1 and run["epochs"] % get_recipe("pneumonia-cxr").archive.fit.cycles in (0, run["epochs"])
    assert run["budget"]["seconds_per_step_full"] > 0 and run["budget"]["estimated_train_seconds"] <= run["budget"]["train_budget_seconds"]
    assert f"--epochs {run['epochs']} --threads 1" in run["command"] and "--budget-min 0.75" in run["run_as"]
    assert [r["tta"] for r in run["tta_on_val"]] == [[], ["aspect"]] and meta["tta"] in ([], ["aspect"])
    assert len(meta["test_reads"]) == 1 and meta["test_reads"][0]["command"] == run["run_as"]
    card = (out / "docs" / "README.md").read_text()
    assert "Time budget" in card and "Every read of the test split" in card and "no flips" in card
    with pytest.raises(InputError, match="leaves no time"):
        train("pneumonia-cxr", archive, tmp_path / "c", budget_min=0.001, threads=1)


def test_bad_training_input_for_archive_recipes(tmp_path):
    with pytest.raises(InputError, match="test-fold"):
        train("pneumonia-cxr", shared_file(KERMANY), tmp_path / "x", test_fold=2)
    with pytest.raises(InputError, match="does not apply"):
        train("breast-us", shared_file("medmnist/breastmnist.npz"), tmp_path / "y", test_fold=2)
    with pytest.raises(DataArchiveError, match="not a readable tar"):
        train("brain-mri-tumour", shared_file("medmnist/breastmnist.npz"), tmp_path / "z", epochs=1)
    with pytest.raises(DataArchiveError, match="Cheng layout"):
        train("brain-mri-tumour", tiny_kermany(tmp_path, per_folder=2), tmp_path / "w", epochs=1)


def _names(archive) -> list[str]:
    import tarfile

    with tarfile.open(archive) as tf:
        return tf.getnames()


@pytest.mark.slow
@pytest.mark.parametrize("name, data", [("pneumonia-cxr", KERMANY), ("brain-mri-tumour", CHENG)])
def test_full_recipe_reproduces_the_committed_bundle(tmp_path, name, data):
    """The committed bundle's own command (its card's epochs and threads: up to an hour on 2 CPU cores) gives
    the committed weights."""
    from tools.classifiers.registry import BUNDLED_DIR

    committed = Bundle.read(BUNDLED_DIR / name)
    if committed.version != get_recipe(name).version:
        pytest.skip(f"the committed {name} {committed.version} was trained by an older recipe than "
                    f"{get_recipe(name).version}; train and commit the new bundle first")
    run = committed.metadata["training"]
    out = train(name, shared_file(data), tmp_path / name, seed=run["seed"], epochs=run["epochs"],
                threads=run["threads"])
    fresh = Bundle.read(out)
    a = torch.load(committed.weights_path, weights_only=True)
    b = torch.load(fresh.weights_path, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fresh.metadata["metrics"]["test"] == committed.metadata["metrics"]["test"]
