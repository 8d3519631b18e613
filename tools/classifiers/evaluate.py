"""Metrics of a bundle on a MedMNIST-style ``.npz`` split: AUC, ACC, ECE (15 bins), Brier, n.

The decision threshold and temperature are the bundle's own (fitted on validation); AUC is for the
bundle's positive label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tools.classifiers.bundle import Bundle
from tools.classifiers.calibration import (
    brier_score,
    expected_calibration_error,
    roc_auc,
    softmax,
)
from tools.classifiers.preprocess import normalise_uint8, prepare
from tools.errors import InputError

SPLITS = ("train", "val", "test")


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray, temperature: float, threshold: float,
                        positive_index: int) -> dict[str, Any]:
    """AUC / ACC / ECE / Brier / sensitivity / specificity for calibrated probabilities."""
    labels = np.asarray(labels, dtype=int).ravel()
    probs = softmax(logits, temperature)
    p_pos = probs[:, positive_index]
    is_pos = labels == positive_index
    pred_pos = p_pos >= threshold
    return {
        "n": len(labels),
        "auc": round(roc_auc(p_pos, is_pos), 4),
        "acc": round(float((pred_pos == is_pos).mean()), 4),
        "ece": round(expected_calibration_error(probs, labels, 15), 4),
        "brier": round(brier_score(probs, labels), 4),
        "sensitivity": round(float(pred_pos[is_pos].mean()), 4) if is_pos.any() else None,
        "specificity": round(float((~pred_pos[~is_pos]).mean()), 4) if (~is_pos).any() else None,
        "threshold": round(float(threshold), 4),
        "temperature": round(float(temperature), 4),
    }


def load_split(npz: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W[, 3]), labels (N,)) of one split; InputError with a clear message."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    npz = Path(npz)
    if not npz.is_file():
        raise InputError(f"data file {npz} not found")
    try:
        with np.load(npz) as data:
            images, labels = data[f"{split}_images"], data[f"{split}_labels"]
    except KeyError as exc:
        raise InputError(f"{npz.name} has no {split}_images / {split}_labels arrays") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{npz.name} is not a readable .npz file: {exc}") from exc
    if len(images) != len(labels) or len(images) == 0:
        raise InputError(f"{npz.name}: {split} split is empty or its images and labels differ in length")
    return images, np.asarray(labels).reshape(len(labels), -1)[:, 0].astype(int)


def model_inputs(images: np.ndarray, bundle: Bundle) -> np.ndarray:
    """uint8 images -> normalised inputs; images of another size go through the inference path."""
    h, w = bundle.input_size
    if images.ndim == 3 and images.shape[1:] == (h, w):
        return normalise_uint8(images, bundle.mean, bundle.std)
    return np.stack([prepare(img.astype(np.float32) / 255.0, (h, w), bundle.mean, bundle.std)[0]
                     for img in images])


def evaluate_bundle(bundle: Bundle, npz: Path, split: str = "test", device: str = "auto") -> dict[str, Any]:
    from tools.classifiers.runtime import load_model

    images, labels = load_split(npz, split)
    if labels.max() >= len(bundle.labels) or labels.min() < 0:
        raise InputError(f"labels in {Path(npz).name} run outside the {len(bundle.labels)} labels of "
                         f"{bundle.name}")
    loaded = load_model(bundle, device)
    logits, feats = loaded.predict(model_inputs(images, bundle))
    result = metrics_from_logits(logits, labels, bundle.temperature, bundle.threshold,
                                 bundle.labels.index(bundle.positive_label))
    result.update(model=bundle.name, version=bundle.version, split=split, data=Path(npz).name)
    if bundle.ood is not None and feats is not None:
        result["ood_flag_rate"] = round(float((bundle.ood.score(feats) > bundle.ood.threshold).mean()), 4)
    return result


def ood_scores(bundle: Bundle, displays: list[np.ndarray], device: str = "auto") -> np.ndarray:
    """OOD scores of display images, bypassing the intended-use checks (for reporting flag rates)."""
    from tools.classifiers.runtime import load_model

    if bundle.ood is None:
        raise InputError(f"{bundle.name} carries no OOD statistics")
    inputs = np.stack([prepare(d, bundle.input_size, bundle.mean, bundle.std)[0] for d in displays])
    _, feats = load_model(bundle, device).predict(inputs)
    return bundle.ood.score(feats)
