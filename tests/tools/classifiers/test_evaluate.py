from __future__ import annotations

import pytest

from tests.conftest import shared_file
from tools.classifiers.evaluate import evaluate_bundle
from tools.classifiers.registry import get_bundle
from tools.errors import InputError


@pytest.mark.parametrize("name, data", [("pneumonia-cxr", "pneumoniamnist"), ("breast-us", "breastmnist")])
def test_measured_test_metrics_are_reproduced_and_recorded(name, data):
    bundle = get_bundle(name)
    result = evaluate_bundle(bundle, shared_file(f"medmnist/{data}.npz"), "test", "cpu")
    card = bundle.metadata["metrics"]["test"]
    for key in ("auc", "acc", "ece", "brier", "n"):
        assert result[key] == pytest.approx(card[key], abs=2e-3), key
    assert result["n"] == card["n"]
    assert 0 <= result["ece"] <= 1 and 0 <= result["brier"] <= 1


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
