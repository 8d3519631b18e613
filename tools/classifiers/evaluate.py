"""Metrics of a bundle on a data split: AUC, ACC, sensitivity/specificity or per-class recall, ECE, Brier, n.

Data is a MedMNIST-style ``.npz`` (the 28-px bundles) or a real-resolution archive (``.tar``) read with
the split rule recorded in the bundle's metadata (``metadata["dataset"]``), so ``radconsult models eval``
sees exactly the train / val / test images the bundle was trained and selected with. The decision
threshold and temperature are the bundle's own (fitted on validation). Two classes: AUC for the
positive label, sensitivity and specificity at the threshold. More classes: macro one-vs-rest AUC,
per-class recall of the most probable label, and the confusion matrix.
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
from tools.classifiers.preprocess import normalise, normalise_uint8, prepare_spec
from tools.errors import DataArchiveError, InputError

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


def multiclass_metrics(logits: np.ndarray, labels: np.ndarray, temperature: float,
                       names: list[str]) -> dict[str, Any]:
    """Macro one-vs-rest AUC, accuracy, per-class recall, confusion (rows = truth), ECE, Brier."""
    labels = np.asarray(labels, dtype=int).ravel()
    probs = softmax(logits, temperature)
    pred = probs.argmax(1)
    aucs = {n: roc_auc(probs[:, k], labels == k) for k, n in enumerate(names)}
    finite = [a for a in aucs.values() if np.isfinite(a)]
    confusion = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    return {
        "n": len(labels),
        "auc": round(float(np.mean(finite)), 4) if finite else float("nan"),
        "acc": round(float((pred == labels).mean()), 4),
        "ece": round(expected_calibration_error(probs, labels, 15), 4),
        "brier": round(brier_score(probs, labels), 4),
        "per_class_recall": {n: round(float((pred[labels == k] == k).mean()), 4) if (labels == k).any() else None
                             for k, n in enumerate(names)},
        "per_class_auc": {n: round(float(a), 4) for n, a in aucs.items()},
        "confusion": confusion.tolist(),
        "temperature": round(float(temperature), 4),
    }


def bundle_metrics(bundle: Bundle, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The metrics that fit the bundle: binary (threshold) or multi-class."""
    if bundle.multiclass:
        return multiclass_metrics(logits, labels, bundle.temperature, bundle.labels)
    return metrics_from_logits(logits, labels, bundle.temperature, bundle.threshold,
                               bundle.labels.index(bundle.positive_label))


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
    if images.ndim == 3 and images.shape[1:] == (h, w) and bundle.preprocess_spec.intensity == "fixed":
        return normalise_uint8(images, bundle.mean, bundle.std)
    return np.stack([prepare_spec(img.astype(np.float32) / 255.0, bundle.preprocess_spec)[0] for img in images])


def archive_inputs(bundle: Bundle, archive: Path, split: str,
                   cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(normalised model inputs (N, 1, H, W), labels, member names) of one split of a training archive."""
    from tools.classifiers.archives import SplitRule, load_splits

    dataset = bundle.metadata.get("dataset") or {}
    if "split_rule" not in dataset:
        raise DataArchiveError(f"{bundle.name} was not trained from an archive; evaluate it on its .npz file")
    rule = SplitRule.from_json(dataset["split_rule"])
    data, _ = load_splits(Path(archive), rule, tuple(bundle.labels), bundle.preprocess_spec, cache_dir, (split,))
    part = data[split]
    return normalise(part.images, bundle.preprocess_spec), part.labels, part.members


def evaluate_bundle(bundle: Bundle, data: Path, split: str = "test", device: str = "auto",
                    cache_dir: Path | None = None) -> dict[str, Any]:
    """The bundle's metrics on one split of ``data`` (.npz or a training archive), with the OOD flag rate."""
    from tools.classifiers.runtime import load_model

    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    data = Path(data)
    if data.suffix.lower() == ".npz":
        images, labels = load_split(data, split)
        inputs = None
    else:
        inputs, labels, _ = archive_inputs(bundle, data, split, cache_dir)
    if labels.max() >= len(bundle.labels) or labels.min() < 0:
        raise InputError(f"labels in {data.name} run outside the {len(bundle.labels)} labels of {bundle.name}")
    loaded = load_model(bundle, device)
    logits, feats = loaded.predict(inputs if inputs is not None else model_inputs(images, bundle))
    result = bundle_metrics(bundle, logits, labels)
    result.update(model=bundle.name, version=bundle.version, split=split, data=data.name)
    if bundle.ood is not None and feats is not None:
        result["ood_flag_rate"] = round(float((bundle.ood.score(feats) > bundle.ood.threshold).mean()), 4)
    return result


def ood_scores(bundle: Bundle, displays: list[np.ndarray], device: str = "auto") -> np.ndarray:
    """OOD scores of display images, bypassing the intended-use checks (for reporting flag rates)."""
    from tools.classifiers.runtime import load_model

    if bundle.ood is None:
        raise InputError(f"{bundle.name} carries no OOD statistics")
    inputs = np.stack([prepare_spec(d, bundle.preprocess_spec)[0] for d in displays])
    _, feats = load_model(bundle, device).predict(inputs)
    return bundle.ood.score(feats)


def test_read(command: str, n: int, purpose: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``metadata["test_reads"]``: when the test split was read, by what, and what it gave."""
    import datetime

    keep = ("acc", "auc", "sensitivity", "specificity", "ece")
    return {"at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "command": command,
            "n": n, "purpose": purpose, **{k: metrics[k] for k in keep if k in metrics}}


def record_test_read(bundle: Bundle, command: str, result: dict[str, Any]) -> Path:
    """Log one read of the test split in the bundle's metadata and card; returns the metadata file.
    InputError when the bundle directory cannot be written (a read-only installation)."""
    import json

    from tools.classifiers import card
    from tools.classifiers.bundle import METADATA

    metadata = dict(bundle.metadata)
    metadata["test_reads"] = [*metadata.get("test_reads", []),
                              test_read(command, int(result["n"]), "an evaluation after training", result)]
    path = Path(bundle.path) / METADATA
    try:
        path.write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
        card.write(bundle.path, metadata)
    except OSError as exc:
        raise InputError(f"cannot log the test read in {bundle.name}'s card at {bundle.path}: {exc}") from exc
    return path
