"""Train a real-resolution recipe from its archive and write a complete MONAI bundle.

Order of events (nothing after step 3 changes the network, and only step 6 reads the test split):

1. read the archive in place and split it by patient / fold (:mod:`archives`); decoded images are cached;
2. training mean and standard deviation of the scaled training images;
3. train the network(s) (:mod:`fitloop`), each selecting its epoch on validation;
4. temperature (NLL on validation), decision threshold (validation, by the recipe's rule);
5. OOD statistics: class means and covariance of the training features, threshold = the validation
   99th percentile;
6. the test split, once, for the model card.

Every inference in steps 4-6 goes through :func:`runtime.predict_logits`, the path ``classify()`` uses.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.classifiers import card
from tools.classifiers.archives import SplitData, SplitRule, load_splits
from tools.classifiers.bundle import instantiate_network, write_bundle
from tools.classifiers.calibration import balanced_threshold, fit_temperature, softmax
from tools.classifiers.evaluate import metrics_from_logits, multiclass_metrics
from tools.classifiers.fitloop import FitResult, FitSpec, fit
from tools.classifiers.ood import fit_mahalanobis
from tools.classifiers.preprocess import Preprocessing, normalise
from tools.classifiers.recipes import THRESHOLD_RULES, ArchivePlan, Recipe
from tools.classifiers.runtime import predict_logits
from tools.errors import InputError

log = logging.getLogger(__name__)

def split_rule(plan: ArchivePlan, test_fold: int | None = None) -> SplitRule:
    """The recipe's split; ``test_fold`` (brain folds only) rotates it: validation is the fold before."""
    if test_fold is None:
        return SplitRule(plan.kind, val_fraction=plan.val_fraction, test_fold=plan.test_fold, val_fold=plan.val_fold)
    if plan.kind != "cheng-brain-mri":
        raise InputError("--test-fold applies to the fold-based brain MRI archive only")
    if not 1 <= test_fold <= 5:
        raise InputError(f"test fold {test_fold} is not one of 1-5")
    return SplitRule(plan.kind, test_fold=test_fold, val_fold=5 if test_fold == 1 else test_fold - 1)


def _limit(part: SplitData, limit: int | None, rng: np.random.Generator) -> SplitData:
    """At most ``limit`` images, keeping every class (smoke runs and tests)."""
    if limit is None or limit >= len(part.labels):
        return part
    classes = np.unique(part.labels)
    first = [int(rng.choice(np.flatnonzero(part.labels == c))) for c in classes]
    rest = rng.permutation(np.setdiff1d(np.arange(len(part.labels)), first))[:max(0, limit - len(first))]
    idx = np.sort(np.concatenate([first, rest]).astype(int))
    return SplitData(part.images[idx], part.labels[idx], tuple(part.groups[i] for i in idx),
                     tuple(part.members[i] for i in idx))


def _threshold(rule: str, val_probs: np.ndarray, val_is_pos: np.ndarray) -> float:
    if rule == "balanced":
        return balanced_threshold(val_probs, val_is_pos)
    if rule == "prior-neutral":
        return float(np.mean(val_is_pos))
    return 0.5


def train_archive(recipe: Recipe, data: Path, out: Path, seed: int, epochs: int | None, limit: int | None,
                  test_fold: int | None, cache_dir: Path | None, say: Callable[[str], None]) -> Path:
    """Steps 1-6 of the module docstring; returns ``out``."""
    plan = recipe.archive
    if plan is None:
        raise InputError(f"{recipe.name} is not trained from an archive")
    t0, c0 = time.time(), time.process_time()
    rule = split_rule(plan, test_fold)
    labels = tuple(recipe.labels)
    geometry = Preprocessing(size=plan.size, geometry=plan.geometry, intensity=plan.intensity)
    splits, sha = load_splits(Path(data), rule, labels, geometry, cache_dir, progress=say)
    rng = np.random.default_rng(seed)
    train, val, test = _limit(splits["train"], limit, rng), _limit(splits["val"], limit, rng), splits["test"]
    if len(np.unique(val.labels)) < len(labels) or len(np.unique(train.labels)) < len(labels):
        raise InputError(f"{Path(data).name}: every label needs images in train and val ({rule.describe()})")
    mean, std = float(train.images.mean()), float(train.images.std()) or 1.0
    spec = Preprocessing(size=plan.size, mean=mean, std=std, geometry=plan.geometry, intensity=plan.intensity)
    fit_spec = plan.fit if epochs is None else FitSpec(**{**plan.fit.__dict__, "epochs": epochs,
                                                          "low_res_epochs": min(plan.fit.low_res_epochs, epochs - 1)})
    pos = labels.index(recipe.positive_label)
    members: list[FitResult] = []
    for k in range(max(1, recipe.ensemble)):
        tag = recipe.name if recipe.ensemble <= 1 else f"{recipe.name} member {k + 1}/{recipe.ensemble}"
        members.append(fit(recipe.network_def, fit_spec, train.images, train.labels, val.images, val.labels,
                           mean, std, len(labels), pos, seed * 1000 + k, say, tag))
    network_def = _ensemble_def(recipe)
    net = instantiate_network(network_def)
    if recipe.ensemble <= 1:
        net.load_state_dict(members[0].state)
    else:
        net.load_state_dict({f"members.{k}.{n}": v for k, m in enumerate(members) for n, v in m.state.items()})
    net.eval()
    prefix = "" if recipe.ensemble <= 1 else "members.0."
    feature_layer, saliency_layer = prefix + recipe.feature_layer, prefix + recipe.saliency_layer
    tta = list(fit_spec.tta)

    def run(part: SplitData) -> tuple[np.ndarray, np.ndarray]:
        logits, feats = predict_logits(net, normalise(part.images, spec), tta, "cpu", 64,
                                       feature_layer=feature_layer)
        return logits, feats if feats is not None else np.zeros((len(logits), 0), np.float32)

    tr_logits, tr_feats = run(train)
    va_logits, va_feats = run(val)
    temperature = fit_temperature(va_logits, val.labels)
    ood = fit_mahalanobis(tr_feats, train.labels, va_feats, percentile=99.0)
    if len(labels) == 2:
        threshold = _threshold(recipe.threshold_rule, softmax(va_logits, temperature)[:, pos], val.labels == pos)
        val_metrics = metrics_from_logits(va_logits, val.labels, temperature, threshold, pos)
    else:
        threshold = 0.5
        val_metrics = multiclass_metrics(va_logits, val.labels, temperature, list(labels))
    te_logits, te_feats = run(test)  # the test split, once
    test_metrics = (metrics_from_logits(te_logits, test.labels, temperature, threshold, pos) if len(labels) == 2
                    else multiclass_metrics(te_logits, test.labels, temperature, list(labels)))
    val_metrics["ood_flag_rate"] = round(float((ood.score(va_feats) > ood.threshold).mean()), 4)
    test_metrics["ood_flag_rate"] = round(float((ood.score(te_feats) > ood.threshold).mean()), 4)
    seconds, cpu = time.time() - t0, time.process_time() - c0
    say(f"{recipe.name}: best epochs {[m.best_epoch for m in members]}, T={temperature:.3f}, "
        f"threshold={threshold:.3f}, val {val_metrics}, test {test_metrics} ({seconds:.0f} s, CPU {cpu:.0f} s)")

    metadata = archive_metadata(recipe, plan, spec, rule, Path(data).name, sha, seed, fit_spec, limit, members,
                                temperature, threshold, {**ood.to_json(), "feature_layer": feature_layer},
                                val_metrics, test_metrics, (len(train.labels), len(val.labels), len(test.labels)),
                                seconds, cpu, test_fold)
    metadata["saliency"]["target_layer"] = saliency_layer
    write_bundle(out, metadata, network_def, net.state_dict(),
                 torch.float16 if plan.weights_dtype == "float16" else None)
    card.write(out, metadata)
    return out


def _ensemble_def(recipe: Recipe) -> dict[str, Any]:
    if recipe.ensemble <= 1:
        return dict(recipe.network_def)
    return {"_target_": "tools.classifiers.networks.LogitEnsemble",
            "members": [dict(recipe.network_def) for _ in range(recipe.ensemble)]}


def archive_metadata(recipe: Recipe, plan: ArchivePlan, spec: Preprocessing, rule: SplitRule, data_name: str,
                     sha: str, seed: int, fit_spec: FitSpec, limit: int | None, members: list[FitResult],
                     temperature: float, threshold: float, ood: dict[str, Any], val_metrics: dict[str, Any],
                     test_metrics: dict[str, Any], counts: tuple[int, int, int], seconds: float, cpu: float,
                     test_fold: int | None) -> dict[str, Any]:
    """The bundle's metadata.json (MONAI bundle fields plus radconsult's model card)."""
    import monai

    labels = list(recipe.labels)
    multiclass = len(labels) > 2
    fold_arg = f" --test-fold {test_fold}" if test_fold is not None else ""
    calibration: dict[str, Any] = {"method": "temperature scaling fitted on val (NLL)",
                                   "temperature": round(temperature, 6)}
    if multiclass:
        calibration.update(threshold=0.5, threshold_rule="the most probable label (no threshold)")
    else:
        calibration.update(threshold=round(threshold, 6), threshold_rule=f"P({recipe.positive_label}) >= threshold; "
                           + THRESHOLD_RULES[recipe.threshold_rule])
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                  "meta_schema_20220324.json",
        "name": recipe.name, "version": recipe.version,
        "changelog": {recipe.version: "trained with `radconsult models train` from the real-resolution archive"},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__, "optional_packages_version": {},
        "task": recipe.task, "description": recipe.description, "architecture": recipe.architecture,
        "authors": "radconsult contributors",
        "copyright": "Apache-2.0 (weights); training data " + recipe.data_licence,
        "data_source": recipe.data_source, "data_licence": recipe.data_licence,
        "data_type": f"8-bit JPEG images read from {data_name}",
        "intended_use": recipe.intended_use, "intended_use_rules": recipe.intended_use_rules,
        **({"coverage": recipe.coverage} if recipe.coverage else {}),
        "result_statement": recipe.result_statement, "limitations": recipe.limitations,
        "references": list(recipe.references), "anchors": list(recipe.anchors),
        "labels": labels, "positive_label": recipe.positive_label,
        "image_classes": "one channel grey image, display intensities in [0, 1]",
        "label_classes": {str(i): lab for i, lab in enumerate(labels)},
        "pred_classes": {str(i): lab for i, lab in enumerate(labels)},
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": recipe.modality,
                                 "num_channels": 1, "spatial_shape": list(spec.size), "dtype": "float32",
                                 "value_range": [round(-spec.mean / spec.std, 4), round((1 - spec.mean) / spec.std, 4)],
                                 "is_patch_data": False, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "logits", "format": "classes", "num_channels": len(labels),
                                 "spatial_shape": [len(labels)], "dtype": "float32", "value_range": [],
                                 "is_onehot": True, "channel_def": {str(i): lab for i, lab in enumerate(labels)}}},
        },
        "preprocessing": {"input": "ImageStudy.display (float, [0, 1]); RGB -> luminance", **spec.as_json()},
        "dataset": {"format": plan.kind, "archive": data_name, "sha256": sha, "split_rule": rule.as_json()},
        "tta": list(fit_spec.tta),
        "saliency": {"method": "Grad-CAM (monai.visualize.GradCAM)", "target_layer": recipe.saliency_layer},
        "calibration": calibration,
        "ood": ood,
        "metrics": {"val": val_metrics, "test": test_metrics,
                    "note": "test evaluated once after selection on val; ECE top-label, 15 bins"},
        "training": {
            "data_file": data_name, "seed": seed, "epochs": fit_spec.epochs,
            "best_epoch": [m.best_epoch for m in members], "ensemble": recipe.ensemble,
            "member_seeds": [seed * 1000 + k for k in range(max(1, recipe.ensemble))], "limit": limit,
            "n_train": counts[0], "n_val": counts[1], "n_test": counts[2],
            "optimizer": f"AdamW lr {fit_spec.lr} wd {fit_spec.weight_decay}, one-cycle, batch {fit_spec.batch_size}"
                         + (f", EMA {fit_spec.ema}" if fit_spec.ema else ""),
            "resolution": (f"{fit_spec.low_res} px for epochs 1-{fit_spec.low_res_epochs}, then {spec.size[0]} px"
                           if fit_spec.low_res and fit_spec.low_res_epochs else f"{spec.size[0]} px"),
            "loss": "class-weighted cross-entropy" + (f", label smoothing {fit_spec.label_smoothing}"
                                                      if fit_spec.label_smoothing else ""),
            "augmentation": fit_spec.augment.describe(), "threads": torch.get_num_threads(),  # as run
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "platform": platform.machine(),
            "command": f"radconsult models train {recipe.name} --data {data_name} --out DIR --seed {seed}{fold_arg}"
                       + (f" --threads {torch.get_num_threads()}" if torch.get_num_threads() != plan.threads else ""),
            "history": [m.history for m in members],
        },
    }
