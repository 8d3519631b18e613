"""Train a real-resolution recipe from its archive and write a complete MONAI bundle.

Order of events (nothing after step 4 changes the network, and only step 7 reads the test split):

1. read the archive in place and split it by patient / fold (:mod:`archives`); decoded images are cached;
2. training mean and standard deviation of the scaled training images; with a time budget, the number
   of epochs that fits it (:func:`fitloop.epochs_for_budget`: a timing probe, minus the time already
   spent and the estimated cost of steps 4-7);
3. train the network(s) (:mod:`fitloop`), each selecting its epoch (or snapshot ensemble) on validation;
4. the test-time augmentation: the recipe's candidates scored on validation, the best kept;
5. temperature (NLL on validation), decision threshold (validation, by the recipe's rule);
6. OOD statistics: class means and covariance of the training features, threshold = the validation
   99th percentile;
7. the test split, once, for the model card; the read is logged in ``metadata["test_reads"]``.

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
from tools.classifiers.evaluate import metrics_from_logits, multiclass_metrics, test_read
from tools.classifiers.fitloop import (
    BudgetPlan,
    FitResult,
    FitSpec,
    epochs_for_budget,
    fit,
    probe,
    val_score,
    with_epochs,
)
from tools.classifiers.ood import fit_mahalanobis
from tools.classifiers.preprocess import Preprocessing, normalise
from tools.classifiers.recipes import THRESHOLD_RULES, ArchivePlan, Recipe
from tools.classifiers.runtime import predict_logits
from tools.errors import BundleError, InputError

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


MAX_WEIGHT_BYTES = 5 * 2**20  # per bundle: the repository's limit for committed weights
POST_FIT_MARGIN = 1.25         # the estimate of steps 4-7 is padded by this factor


def member_bytes(network_def: dict[str, Any], dtype_bytes: int) -> int:
    """Bytes one member's stored weights take (floating tensors at ``dtype_bytes``, the rest as they are)."""
    state = instantiate_network(dict(network_def)).state_dict()
    return sum(v.numel() * (dtype_bytes if v.is_floating_point() else v.element_size()) for v in state.values())


def _budget_epochs(recipe: Recipe, spec: FitSpec, train: SplitData, val: SplitData, test: SplitData, mean: float,
                   std: float, budget_min: float, t0: float, seed: int, say: Callable[[str], None]) -> BudgetPlan:
    """Epochs that fit ``budget_min`` for the whole command: minus what is spent already (reading the data,
    the probe) and the estimated cost of the final evaluation (the TTA candidates on val, train, test)."""
    plan = recipe.archive
    assert plan is not None
    times = probe(recipe.network_def, spec, train.images, train.labels, mean, std, seed)
    views = [len(runtime_views(c)) for c in plan.tta_candidates]
    members = max(1, recipe.ensemble)
    images = len(val.labels) * sum(views) + len(train.labels) + (len(val.labels) + len(test.labels)) * max(views)
    post = POST_FIT_MARGIN * times.per_val_image * members * images
    left = budget_min * 60 - (time.time() - t0) - post
    if left <= 0:
        raise InputError(f"--budget-min {budget_min:g} leaves no time to train: reading the data and the final "
                         f"evaluation need about {(time.time() - t0 + post) / 60:.1f} min here")
    result = epochs_for_budget(spec, times, len(train.labels), len(val.labels), left / members)
    say(f"{recipe.name}: budget {budget_min:g} min -> {result.epochs} epochs ({times.per_step_low:.3f} s/step at "
        f"{spec.low_res or 'full'} px, {times.per_step_full:.3f} s/step at full size, {times.per_val_image * 1000:.1f} "
        f"ms per val image; {post:.0f} s kept for the final evaluation)")
    return result


def runtime_views(tta: tuple[str, ...]) -> list[str]:
    """The names of the views a TTA set runs (the input itself first)."""
    from tools.classifiers.runtime import ASPECT_FACTORS

    views = ["identity"]
    if "hflip" in tta:
        views.append("hflip")
    if "aspect" in tta:
        views += [f"aspect x{f:g}" for f in ASPECT_FACTORS]
    return views


def train_archive(recipe: Recipe, data: Path, out: Path, seed: int, epochs: int | None, limit: int | None,
                  test_fold: int | None, cache_dir: Path | None, say: Callable[[str], None],
                  budget_min: float | None = None, skip_test: bool = False) -> Path:
    """Steps 1-7 of the module docstring; returns ``out``. ``skip_test`` (smoke runs) leaves step 7 out: the
    bundle then carries no test metrics and its card says the test split was not read."""
    plan = recipe.archive
    if plan is None:
        raise InputError(f"{recipe.name} is not trained from an archive")
    t0, c0 = time.time(), time.process_time()
    rule = split_rule(plan, test_fold)
    labels = tuple(recipe.labels)
    geometry = Preprocessing(size=plan.size, geometry=plan.geometry, intensity=plan.intensity, border=plan.border)
    splits, sha = load_splits(Path(data), rule, labels, geometry, cache_dir, progress=say)
    rng = np.random.default_rng(seed)
    train, val, test = _limit(splits["train"], limit, rng), _limit(splits["val"], limit, rng), splits["test"]
    if len(np.unique(val.labels)) < len(labels) or len(np.unique(train.labels)) < len(labels):
        raise InputError(f"{Path(data).name}: every label needs images in train and val ({rule.describe()})")
    mean, std = float(train.images.mean()), float(train.images.std()) or 1.0
    spec = Preprocessing(size=plan.size, mean=mean, std=std, geometry=plan.geometry, intensity=plan.intensity,
                         border=plan.border)
    budget: BudgetPlan | None = None
    if epochs is not None:
        fit_spec = with_epochs(plan.fit, epochs)
    elif budget_min is not None:
        budget = _budget_epochs(recipe, plan.fit, train, val, test, mean, std, budget_min, t0, seed, say)
        fit_spec = with_epochs(plan.fit, budget.epochs)
    else:
        fit_spec = plan.fit
    pos = labels.index(recipe.positive_label)
    weights_dtype = torch.float16 if plan.weights_dtype == "float16" else None
    one = member_bytes(recipe.network_def, 2 if weights_dtype is not None else 4)
    max_members = max(1, MAX_WEIGHT_BYTES // one // max(1, recipe.ensemble))
    runs: list[FitResult] = []
    for k in range(max(1, recipe.ensemble)):
        tag = recipe.name if recipe.ensemble <= 1 else f"{recipe.name} member {k + 1}/{recipe.ensemble}"
        runs.append(fit(recipe.network_def, fit_spec, train.images, train.labels, val.images, val.labels,
                        mean, std, len(labels), pos, seed * 1000 + k, say, tag, max_members=max_members))
    states = [state for run in runs for state in run.states]
    if len(states) * one > MAX_WEIGHT_BYTES:
        raise BundleError(f"{recipe.name}: {len(states)} networks of {one / 2**20:.2f} MiB exceed the "
                          f"{MAX_WEIGHT_BYTES / 2**20:g} MiB weight limit")
    network_def = _ensemble_def(recipe.network_def, len(states))
    net = instantiate_network(network_def)
    if len(states) == 1:
        net.load_state_dict(states[0])
    else:
        net.load_state_dict({f"members.{k}.{n}": v for k, st in enumerate(states) for n, v in st.items()})
    net.eval()
    prefix = "" if len(states) == 1 else "members.0."
    feature_layer, saliency_layer = prefix + recipe.feature_layer, prefix + recipe.saliency_layer

    # step 4: the TTA views that score best on validation
    va_in = normalise(val.images, spec)
    tta_rows = []
    for candidate in plan.tta_candidates:
        logits, _ = predict_logits(net, va_in, list(candidate), "cpu", 64, with_features=False)
        key, acc, nll = val_score(logits, val.labels, pos)
        tta_rows.append({"tta": list(candidate), "val_key": round(key, 4), "val_acc": round(acc, 4),
                         "val_nll": round(nll, 4)})
    best_tta = max(range(len(tta_rows)), key=lambda i: (tta_rows[i]["val_key"], -tta_rows[i]["val_nll"]))
    tta = list(plan.tta_candidates[best_tta])
    say(f"{recipe.name}: TTA on val {tta_rows}; kept {tta or 'none'}")

    def run(part: SplitData, views: list[str]) -> tuple[np.ndarray, np.ndarray]:
        logits, feats = predict_logits(net, normalise(part.images, spec), views, "cpu", 64,
                                       feature_layer=feature_layer)
        return logits, feats if feats is not None else np.zeros((len(logits), 0), np.float32)

    _, tr_feats = run(train, [])  # the OOD statistics need the features only (of the plain view)
    va_logits, va_feats = run(val, tta)
    temperature = fit_temperature(va_logits, val.labels)
    ood = fit_mahalanobis(tr_feats, train.labels, va_feats, percentile=99.0)
    if len(labels) == 2:
        threshold = _threshold(recipe.threshold_rule, softmax(va_logits, temperature)[:, pos], val.labels == pos)
        val_metrics = metrics_from_logits(va_logits, val.labels, temperature, threshold, pos)
    else:
        threshold = 0.5
        val_metrics = multiclass_metrics(va_logits, val.labels, temperature, list(labels))
    val_metrics["ood_flag_rate"] = round(float((ood.score(va_feats) > ood.threshold).mean()), 4)
    test_metrics: dict[str, Any] = {}
    if not skip_test:
        te_logits, te_feats = run(test, tta)  # the test split, once
        test_metrics = (metrics_from_logits(te_logits, test.labels, temperature, threshold, pos) if len(labels) == 2
                        else multiclass_metrics(te_logits, test.labels, temperature, list(labels)))
        test_metrics["ood_flag_rate"] = round(float((ood.score(te_feats) > ood.threshold).mean()), 4)
    seconds, cpu = time.time() - t0, time.process_time() - c0
    say(f"{recipe.name}: kept {[r.choice.get('kept') for r in runs]}, T={temperature:.3f}, "
        f"threshold={threshold:.3f}, val {val_metrics}, test {test_metrics} ({seconds:.0f} s, CPU {cpu:.0f} s)")

    metadata = archive_metadata(recipe, plan, spec, rule, Path(data).name, sha, seed, fit_spec, limit, runs,
                                temperature, threshold, {**ood.to_json(), "feature_layer": feature_layer},
                                val_metrics, test_metrics, (len(train.labels), len(val.labels), len(test.labels)),
                                seconds, cpu, test_fold, tta=tta, tta_rows=tta_rows, budget=budget,
                                budget_min=budget_min, n_networks=len(states))
    metadata["saliency"]["target_layer"] = saliency_layer
    write_bundle(out, metadata, network_def, net.state_dict(), weights_dtype)
    card.write(out, metadata)
    return out


def _ensemble_def(member_def: dict[str, Any], n: int) -> dict[str, Any]:
    """The bundle's network_def: one network, or a LogitEnsemble of ``n`` copies (snapshots or seeds)."""
    if n <= 1:
        return dict(member_def)
    return {"_target_": "tools.classifiers.networks.LogitEnsemble", "members": [dict(member_def) for _ in range(n)]}


def archive_metadata(recipe: Recipe, plan: ArchivePlan, spec: Preprocessing, rule: SplitRule, data_name: str,
                     sha: str, seed: int, fit_spec: FitSpec, limit: int | None, members: list[FitResult],
                     temperature: float, threshold: float, ood: dict[str, Any], val_metrics: dict[str, Any],
                     test_metrics: dict[str, Any], counts: tuple[int, int, int], seconds: float, cpu: float,
                     test_fold: int | None, tta: list[str] | None = None, tta_rows: list[dict[str, Any]] | None = None,
                     budget: BudgetPlan | None = None, budget_min: float | None = None,
                     n_networks: int = 1) -> dict[str, Any]:
    """The bundle's metadata.json (MONAI bundle fields plus radconsult's model card)."""
    import monai

    labels = list(recipe.labels)
    multiclass = len(labels) > 2
    fold_arg = f" --test-fold {test_fold}" if test_fold is not None else ""
    threads = torch.get_num_threads()  # as run
    limit_arg = (f" --limit {limit}" if limit is not None else "") + (" --skip-test" if not test_metrics else "")
    command = (f"radconsult models train {recipe.name} --data {data_name} --out DIR --seed {seed}{fold_arg} "
               f"--epochs {fit_spec.epochs} --threads {threads}{limit_arg}")
    run_as = (f"radconsult models train {recipe.name} --data {data_name} --out DIR --seed {seed}{fold_arg} "
              f"--budget-min {budget_min:g} --threads {threads}{limit_arg}" if budget_min is not None else command)
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
        "changelog": {recipe.version: recipe.changes},
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
        "tta": list(tta if tta is not None else fit_spec.tta),
        "saliency": {"method": "Grad-CAM (monai.visualize.GradCAM)", "target_layer": recipe.saliency_layer},
        "calibration": calibration,
        "ood": ood,
        "metrics": {"val": val_metrics, **({"test": test_metrics} if test_metrics else {}),
                    "note": "selection (epoch or snapshots, TTA), temperature and threshold on val only; "
                            + ("test read once, after them (see test_reads)" if test_metrics else
                               "the test split was not read (--skip-test)") + "; ECE top-label, 15 bins"},
        "test_reads": [test_read(run_as, counts[2], "the recipe's one evaluation on test, after every choice was "
                                 "made on val", test_metrics)] if test_metrics else [],
        "training": {
            "data_file": data_name, "seed": seed, "epochs": fit_spec.epochs,
            "best_epoch": [m.best_epoch for m in members], "kept": [m.choice for m in members],
            "networks": n_networks, "ensemble": recipe.ensemble,
            "member_seeds": [seed * 1000 + k for k in range(max(1, recipe.ensemble))], "limit": limit,
            "n_train": counts[0], "n_val": counts[1], "n_test": counts[2],
            "optimizer": fit_spec.describe(),
            "resolution": (f"{fit_spec.low_res} px for epochs 1-{fit_spec.low_res_epochs}, then {spec.size[0]} px"
                           if fit_spec.low_res and fit_spec.low_res_epochs else f"{spec.size[0]} px"),
            "loss": "class-weighted cross-entropy" + (f", label smoothing {fit_spec.label_smoothing}"
                                                      if fit_spec.label_smoothing else "")
                    + (" (mixed batches: the same mix of both labels' losses)" if fit_spec.mix != "none" else ""),
            "augmentation": fit_spec.augment.describe(),
            "tta_on_val": tta_rows or [],
            **({"budget_min": budget_min, "budget": budget.to_json()} if budget is not None else {}),
            "threads": threads, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "platform": platform.machine(), "command": command,
            **({"run_as": run_as} if run_as != command else {}),
            "history": [m.history for m in members],
        },
    }
