"""Training: a one-epoch run on a small real subset writes a valid bundle; same seed, same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import shared_file
from tools.classifiers.bundle import Bundle
from tools.classifiers.config import ClassifierConfig
from tools.classifiers.inference import classify
from tools.classifiers.train import train
from tools.errors import InputError, UnknownNameError

from .helpers import medmnist, study_from


def test_one_epoch_bundle_loads_classifies_and_is_reproducible(tmp_path):
    data = shared_file("medmnist/breastmnist.npz")
    a = train("breast-us", data, tmp_path / "a", seed=3, epochs=1, limit=64)
    b = train("breast-us", data, tmp_path / "b", seed=3, epochs=1, limit=64)
    bundle = Bundle.read(a)
    meta = bundle.metadata
    assert meta["training"]["seed"] == 3 and meta["training"]["limit"] == 64
    assert {"auc", "acc", "ece", "brier", "n"} <= set(meta["metrics"]["test"])
    assert meta["metrics"]["test"]["n"] == 156
    assert bundle.temperature > 0 and 0 <= bundle.threshold <= 1 and bundle.ood is not None
    assert "| test | 156 |" in (a / "docs" / "README.md").read_text()
    sa = torch.load(a / "models" / "model.pt", weights_only=True)
    sb = torch.load(b / "models" / "model.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    images, _ = medmnist("breastmnist")
    # the bundle written above has the bundled model's name; a user bundle replaces it in the registry
    f = classify(study_from(images[0], modality="US", body_part="BREAST"), config=ClassifierConfig(model_dirs=(a,)))
    assert f.model_card["metrics"] == meta["metrics"] and not f.abstain
    assert np.isfinite(f.probability)


def test_bad_training_input(tmp_path):
    with pytest.raises(UnknownNameError, match="breast-us"):
        train("breast", tmp_path / "x.npz", tmp_path / "out")
    with pytest.raises(InputError, match="not found"):
        train("breast-us", tmp_path / "missing.npz", tmp_path / "out")
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(InputError, match="train_images"):
        train("breast-us", bad, tmp_path / "out")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not a bundle"):
        train("breast-us", shared_file("medmnist/breastmnist.npz"), tmp_path / "occupied")


@pytest.mark.slow
@pytest.mark.parametrize("name, data", [("breast-us", "breastmnist")])
def test_full_recipe_reproduces_the_committed_bundle(tmp_path, name, data):
    """`radconsult models train NAME --seed 0` gives byte-identical weights and the same card metrics."""
    from tools.classifiers.registry import BUNDLED_DIR

    out = train(name, shared_file(f"medmnist/{data}.npz"), tmp_path / name, seed=0)
    committed = Bundle.read(BUNDLED_DIR / name)
    fresh = Bundle.read(out)
    a = torch.load(committed.weights_path, weights_only=True)
    b = torch.load(fresh.weights_path, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fresh.metadata["metrics"]["test"] == committed.metadata["metrics"]["test"]
