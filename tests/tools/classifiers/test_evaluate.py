"""`models eval`: metrics recomputed from the data the bundle was trained with, and typed data errors."""

from __future__ import annotations

import pytest

from tests.conftest import shared_file
from tools.classifiers.evaluate import evaluate_bundle, multiclass_metrics
from tools.classifiers.registry import get_bundle
from tools.errors import DataArchiveError, InputError

from .helpers import CHENG, KERMANY


def test_breast_test_metrics_are_reproduced_and_recorded():
    bundle = get_bundle("breast-us")
    result = evaluate_bundle(bundle, shared_file("medmnist/breastmnist.npz"), "test", "cpu")
    card = bundle.metadata["metrics"]["test"]
    for key in ("auc", "acc", "ece", "brier", "n"):
        assert result[key] == pytest.approx(card[key], abs=2e-3), key
    assert 0 <= result["ece"] <= 1 and 0 <= result["brier"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("name, data", [("pneumonia-cxr", KERMANY), ("brain-mri-tumour", CHENG)])
def test_real_resolution_test_metrics_are_reproduced(name, data):
    """`radconsult models eval NAME --data ARCHIVE --split test` gives the card's numbers (decodes the split)."""
    bundle = get_bundle(name)
    result = evaluate_bundle(bundle, shared_file(data), "test", "cpu")
    card = bundle.metadata["metrics"]["test"]
    for key in ("auc", "acc", "ece", "brier", "n", "ood_flag_rate"):
        assert result[key] == pytest.approx(card[key], abs=2e-3), key


def test_multiclass_metrics_known_values():
    import numpy as np

    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]))
    m = multiclass_metrics(logits, np.array([0, 1, 2, 1]), 1.0, ["a", "b", "c"])
    assert m["acc"] == 0.75 and m["per_class_recall"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]] and m["n"] == 4


def test_bad_split_and_data(tmp_path):
    bundle = get_bundle("breast-us")
    with pytest.raises(InputError, match="unknown split"):
        evaluate_bundle(bundle, shared_file("medmnist/breastmnist.npz"), "dev")
    with pytest.raises(InputError, match="not found"):
        evaluate_bundle(bundle, tmp_path / "nope.npz", "test")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable"):
        evaluate_bundle(bundle, junk, "test")
    with pytest.raises(DataArchiveError, match="not found"):
        evaluate_bundle(get_bundle("pneumonia-cxr"), tmp_path / "missing.tar", "test")
    with pytest.raises(DataArchiveError, match="not trained from an archive"):
        evaluate_bundle(bundle, tmp_path / "missing.tar", "test")
