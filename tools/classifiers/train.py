"""Train a bundled classifier and write a complete MONAI bundle: ``train(NAME, DATA, OUT, seed=N)``.

The 28-px recipes read a MedMNIST-style .npz (this module); the real-resolution recipes read their
archive in place (:mod:`tools.classifiers.train_archive`). Selection (best epoch), temperature and
decision threshold are chosen on the validation split only; the test split is evaluated once at the end
and its metrics are written into the model card. Deterministic for a given seed, data file, torch
version and thread count.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tools.classifiers import card
from tools.classifiers.bundle import instantiate_network, write_bundle
from tools.classifiers.calibration import balanced_threshold, fit_temperature, softmax
from tools.classifiers.evaluate import load_split, metrics_from_logits
from tools.classifiers.ood import fit_mahalanobis
from tools.classifiers.preprocess import normalise_uint8
from tools.classifiers.recipes import MEDMNIST_LICENCE, THRESHOLD_RULES, Recipe, get_recipe
from tools.classifiers.runtime import predict_logits
from tools.errors import InputError

log = logging.getLogger(__name__)

def augmenter(recipe: Recipe, seed: int):
    """MONAI random transforms applied per image, channel-first (1, H, W) in [0, 1]."""
    from monai.transforms import Compose, RandAdjustContrast, RandAffine, RandFlip

    transforms: list[Any] = [
        RandAffine(prob=0.9, rotate_range=(math.radians(recipe.rotate_deg),),
                   scale_range=(recipe.scale, recipe.scale),
                   translate_range=(recipe.translate_px, recipe.translate_px),
                   padding_mode="border", mode="bilinear"),
        RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)),
    ]
    if recipe.hflip:
        transforms.append(RandFlip(prob=0.5, spatial_axis=1))
    aug = Compose(transforms)
    aug.set_random_state(seed=seed)
    return aug


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, rng: np.random.Generator):
    if limit is None or limit >= len(labels):
        return images, labels
    idx = np.sort(rng.choice(len(labels), size=limit, replace=False))
    return images[idx], labels[idx]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def train(name: str, data: Path, out: Path, seed: int = 0, epochs: int | None = None,
          limit: int | None = None, threads: int | None = None, progress: Callable[[str], None] | None = None,
          test_fold: int | None = None, cache_dir: Path | None = None, budget_min: float | None = None,
          skip_test: bool = False) -> Path:
    """Train recipe ``name`` on ``data`` and write the bundle to ``out``; returns ``out``.

    ``epochs`` overrides the recipe (short runs for tests); ``budget_min`` instead fits the number of
    epochs to that many minutes for the whole command on this machine (archive recipes; the card records
    the epochs it chose, so ``epochs`` reproduces it). ``limit`` caps the number of training and
    validation images (a quick smoke run; the card then records it). ``threads`` defaults to every core
    this process may use for the archive recipes (2 on the development machine) and 1 for the 28-px ones.
    ``test_fold`` rotates the brain MRI folds (the cross-validation); ``cache_dir`` keeps decoded archive
    images between runs. ``skip_test`` (archive recipes, smoke runs) does not read the test split at all.
    """
    recipe = get_recipe(name)
    if threads is None:
        threads = usable_cores() if recipe.archive is not None else 1
    if threads < 1:
        raise InputError(f"--threads must be at least 1; got {threads}")
    if recipe.archive is None and test_fold is not None:
        raise InputError(f"{name} is trained from a .npz file with fixed splits; --test-fold does not apply")
    if budget_min is not None and (recipe.archive is None or not budget_min > 0):
        raise InputError("--budget-min applies to the archive recipes (pneumonia-cxr, brain-mri-tumour) and "
                         f"must be positive; got {budget_min} for {name}")
    if budget_min is not None and epochs is not None:
        raise InputError("give --epochs or --budget-min, not both")
    if skip_test and recipe.archive is None:
        raise InputError("--skip-test applies to the archive recipes")
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be at least 1; got {epochs}")
    say = progress or log.info
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "configs" / "metadata.json").is_file():
        raise InputError(f"output directory {out} exists and is not a bundle; choose an empty directory")
    torch.manual_seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        if recipe.archive is not None:
            from tools.classifiers.train_archive import train_archive

            return train_archive(recipe, Path(data), out, seed, epochs, limit, test_fold, cache_dir, say,
                                 budget_min=budget_min, skip_test=skip_test)
        return _train(recipe, Path(data), out, seed, epochs or recipe.epochs, limit, rng, say)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(False)


def member_seed(seed: int, k: int) -> int:
    return seed * 1000 + k


def ensemble_def(recipe: Recipe) -> dict[str, Any]:
    """The bundle's network_def: the recipe's network, or a LogitEnsemble of ``recipe.ensemble`` copies."""
    if recipe.ensemble <= 1:
        return dict(recipe.network_def)
    return {"_target_": "tools.classifiers.networks.LogitEnsemble",
            "members": [dict(recipe.network_def) for _ in range(recipe.ensemble)]}


def _fit_member(recipe: Recipe, base: np.ndarray, tr_y: np.ndarray, va_in: np.ndarray, va_y: np.ndarray,
                mean: float, std: float, seed: int, epochs: int, tag: str,
                say: Callable[[str], None], t0: float) -> tuple[dict[str, torch.Tensor], int, list[dict]]:
    """Train one network; returns the state of its best validation epoch (AUC, then NLL)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_cls = len(recipe.labels)
    pos = recipe.labels.index(recipe.positive_label)
    net = instantiate_network(recipe.network_def)
    aug = augmenter(recipe, seed)
    counts = np.bincount(tr_y, minlength=n_cls).astype(np.float64)
    weights = torch.tensor(len(tr_y) / (n_cls * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = epochs * math.ceil(len(tr_y) / recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.15)
    tta = list(recipe.tta)
    best: tuple[float, float] = (-1.0, 0.0)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch = 0
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(tr_y))
        total = 0.0
        for start in range(0, len(order), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            if len(idx) < 2:
                continue
            batch = torch.stack([torch.as_tensor(np.asarray(aug(base[i][None]))) for i in idx])
            batch = (batch.float() - mean) / std
            loss = loss_fn(net(batch), torch.as_tensor(tr_y[idx], dtype=torch.long))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        net.eval()
        logits, _ = predict_logits(net, va_in, tta, "cpu", 256, with_features=False)
        m = metrics_from_logits(logits, va_y, 1.0, 0.5, pos)
        val_nll = float(-np.mean(np.log(np.clip(softmax(logits)[np.arange(len(va_y)), va_y], 1e-12, 1))))
        history.append({"epoch": epoch, "train_loss": round(total / len(tr_y), 4), "val_auc": m["auc"],
                        "val_nll": round(val_nll, 4)})
        say(f"{tag} epoch {epoch}/{epochs} loss {total / len(tr_y):.4f} val AUC {m['auc']:.4f} "
            f"val NLL {val_nll:.4f} ({time.time() - t0:.0f} s)")
        key = (m["auc"], -val_nll)
        if key > best:
            best, best_epoch = key, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return best_state, best_epoch, history


def _train(recipe: Recipe, data: Path, out: Path, seed: int, epochs: int, limit: int | None,
           rng: np.random.Generator, say: Callable[[str], None]) -> Path:
    t0 = time.time()
    tr_x, tr_y = load_split(data, "train")
    va_x, va_y = load_split(data, "val")
    te_x, te_y = load_split(data, "test")
    if tr_x.ndim != 3:
        raise InputError(f"{data.name}: expected grey images (N, H, W), got {tr_x.shape}")
    tr_x, tr_y = _subset(tr_x, tr_y, limit, rng)
    va_x, va_y = _subset(va_x, va_y, limit, rng)
    n_cls = len(recipe.labels)
    if tr_y.max() >= n_cls or va_y.max() >= n_cls:
        raise InputError(f"{data.name}: labels exceed the {n_cls} labels of {recipe.name}")
    if len(np.unique(va_y)) < 2:
        raise InputError(f"{data.name}: the validation split needs both classes")
    size = tuple(int(s) for s in tr_x.shape[1:])
    mean = float(tr_x.mean() / 255.0)
    std = float(tr_x.std() / 255.0) or 1.0
    pos = recipe.labels.index(recipe.positive_label)
    base = tr_x.astype(np.float32) / 255.0
    va_in = normalise_uint8(va_x, mean, std)

    states, best_epochs, history = [], [], []
    for k in range(max(1, recipe.ensemble)):
        tag = recipe.name if recipe.ensemble <= 1 else f"{recipe.name} member {k + 1}/{recipe.ensemble}"
        state, best_epoch, hist = _fit_member(recipe, base, tr_y, va_in, va_y, mean, std,
                                              member_seed(seed, k), epochs, tag, say, t0)
        states.append(state)
        best_epochs.append(best_epoch)
        history.append(hist)
    network_def = ensemble_def(recipe)
    net = instantiate_network(network_def)
    if recipe.ensemble <= 1:
        net.load_state_dict(states[0])
    else:
        net.load_state_dict({f"members.{k}.{name}": v for k, st in enumerate(states) for name, v in st.items()})
    net.eval()
    feature_layer = recipe.feature_layer if recipe.ensemble <= 1 else f"members.0.{recipe.feature_layer}"
    saliency_layer = recipe.saliency_layer if recipe.ensemble <= 1 else f"members.0.{recipe.saliency_layer}"

    # Calibration, threshold and OOD statistics: validation (and train features) only.
    tta = list(recipe.tta)
    tr_logits, tr_feats = predict_logits(net, normalise_uint8(tr_x, mean, std), tta, "cpu", 256,
                                         feature_layer=feature_layer)
    va_logits, va_feats = predict_logits(net, va_in, tta, "cpu", 256, feature_layer=feature_layer)
    temperature = fit_temperature(va_logits, va_y)
    va_pos = softmax(va_logits, temperature)[:, pos]
    if recipe.threshold_rule == "balanced":
        threshold = balanced_threshold(va_pos, va_y == pos)
    elif recipe.threshold_rule == "prior-neutral":
        threshold = float(np.mean(va_y == pos))
    else:
        threshold = 0.5
    ood = fit_mahalanobis(tr_feats, tr_y, va_feats, percentile=99.0)
    val_metrics = metrics_from_logits(va_logits, va_y, temperature, threshold, pos)
    # The test split, once, for the model card.
    te_logits, te_feats = predict_logits(net, normalise_uint8(te_x, mean, std), tta, "cpu", 256,
                                         feature_layer=feature_layer)
    test_metrics = metrics_from_logits(te_logits, te_y, temperature, threshold, pos)
    test_metrics["ood_flag_rate"] = round(float((ood.score(te_feats) > ood.threshold).mean()), 4)
    val_metrics["ood_flag_rate"] = round(float((ood.score(va_feats) > ood.threshold).mean()), 4)
    say(f"{recipe.name}: best epochs {best_epochs}, T={temperature:.3f}, threshold={threshold:.3f}, "
        f"val {val_metrics}, test {test_metrics}")

    ood_json = {**ood.to_json(), "feature_layer": feature_layer}
    metadata = build_metadata(recipe, data, seed, epochs, limit, best_epochs, size, mean, std, temperature,
                              threshold, ood_json, val_metrics, test_metrics, history,
                              len(tr_y), len(va_y), len(te_y), time.time() - t0)
    metadata["saliency"]["target_layer"] = saliency_layer
    if recipe.calibration_note:
        metadata["calibration"]["note"] = recipe.calibration_note
    write_bundle(out, metadata, network_def, net.state_dict())
    card.write(out, metadata)
    return out


def build_metadata(recipe: Recipe, data: Path, seed: int, epochs: int, limit: int | None,
                   best_epoch: list[int],
                   size: tuple[int, ...], mean: float, std: float, temperature: float, threshold: float,
                   ood: dict[str, Any], val_metrics: dict[str, Any], test_metrics: dict[str, Any],
                   history: list[dict[str, float]], n_train: int, n_val: int, n_test: int,
                   seconds: float) -> dict[str, Any]:
    import monai

    labels = list(recipe.labels)
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                  "meta_schema_20220324.json",
        "name": recipe.name,
        "version": recipe.version,
        "changelog": {recipe.version: "trained with `radconsult models train`"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "optional_packages_version": {},
        "task": recipe.task,
        "description": recipe.description,
        "architecture": recipe.architecture,
        "authors": "radconsult contributors",
        "copyright": "Apache-2.0 (weights); training data " + MEDMNIST_LICENCE,
        "data_source": recipe.data_source,
        "data_licence": MEDMNIST_LICENCE,
        "data_type": "uint8 28x28 grey images (npz)",
        "intended_use": recipe.intended_use,
        "intended_use_rules": recipe.intended_use_rules,
        **({"coverage": recipe.coverage} if recipe.coverage else {}),
        "limitations": recipe.limitations,
        "labels": labels,
        "positive_label": recipe.positive_label,
        "image_classes": "one channel grey image, display intensities in [0, 1]",
        "label_classes": {str(i): lab for i, lab in enumerate(labels)},
        "pred_classes": {str(i): lab for i, lab in enumerate(labels)},
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": recipe.modality,
                                 "num_channels": 1, "spatial_shape": list(size), "dtype": "float32",
                                 "value_range": [round((0 - mean) / std, 4), round((1 - mean) / std, 4)],
                                 "is_patch_data": False, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "logits", "format": "classes", "num_channels": len(labels),
                                 "spatial_shape": [len(labels)], "dtype": "float32",
                                 "value_range": [], "is_onehot": True,
                                 "channel_def": {str(i): lab for i, lab in enumerate(labels)}}},
        },
        "preprocessing": {"input": "ImageStudy.display (float, [0, 1]); RGB -> luminance",
                          "crop": "centre square", "resize": "area", "size": list(size),
                          "mean": round(mean, 6), "std": round(std, 6)},
        "tta": list(recipe.tta),
        "saliency": {"method": "Grad-CAM (monai.visualize.GradCAM)", "target_layer": recipe.saliency_layer},
        "calibration": {"method": "temperature scaling fitted on val (NLL)", "temperature": round(temperature, 6),
                        "threshold": round(threshold, 6),
                        "threshold_rule": f"P({recipe.positive_label}) >= threshold; " + THRESHOLD_RULES[recipe.threshold_rule]},
        "ood": ood,
        "metrics": {"val": val_metrics, "test": test_metrics,
                    "note": "test evaluated once after selection on val; ECE top-label, 15 bins"},
        "training": {"data_file": data.name, "seed": seed, "epochs": epochs, "best_epoch": best_epoch,
                     "ensemble": recipe.ensemble, "member_seeds": [member_seed(seed, k) for k in
                                                                  range(max(1, recipe.ensemble))],
                     "limit": limit, "n_train": n_train, "n_val": n_val, "n_test": n_test,
                     "optimizer": f"AdamW lr {recipe.lr} wd {recipe.weight_decay}, one-cycle",
                     "batch_size": recipe.batch_size, "loss": "class-weighted cross-entropy",
                     "augmentation": f"RandAffine(rot {recipe.rotate_deg} deg, scale {recipe.scale}, "
                                     f"shift {recipe.translate_px} px), RandAdjustContrast"
                                     + (", RandFlip(horizontal)" if recipe.hflip else ""),
                     "seconds": round(seconds, 1), "platform": platform.machine(),
                     "command": f"radconsult models train {recipe.name} --data {data.name} --out DIR "
                                f"--seed {seed}", "history": history},
    }
