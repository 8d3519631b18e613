"""Patient-wise k-fold cross-validation of a fold-based recipe (the brain MRI archive's five folds).

Fold k is tested once by a model trained on three other folds and selected (epoch, TTA, temperature) on
the fold before it (fold 5 for k = 1), exactly as ``radconsult models train NAME --test-fold k`` does; the
bundled model has the k = 5 split (trained with its own budget, so the table estimates the recipe, not
that one network). Each fold's bundle is written to ``OUT/test-fold-k``; a fold whose
bundle is already there is read, not retrained, so an interrupted run resumes. Each fold trains under the
same options (``budget_min`` per fold, ``threads``, or fixed ``epochs``). The table (per fold: accuracy,
macro-AUC, per-class recall, ECE, Brier; then the mean and the standard deviation over folds) goes to
``OUT/cv.json`` and, on request, into a bundle's model card (``metrics.cv``). Each fold's test read is
logged in that fold's bundle (``test_reads``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tools.classifiers import card
from tools.classifiers.bundle import METADATA, Bundle
from tools.classifiers.recipes import get_recipe
from tools.errors import BundleError, InputError

log = logging.getLogger(__name__)

FOLDS = (1, 2, 3, 4, 5)


def _fold_row(bundle: Bundle, k: int) -> dict[str, Any]:
    test = (bundle.metadata.get("metrics") or {}).get("test") or {}
    rule = (bundle.metadata.get("dataset") or {}).get("split_rule") or {}
    if rule.get("test_fold") != k:
        raise BundleError(f"{bundle.path} was tested on fold {rule.get('test_fold')}, not fold {k}")
    return {"test_fold": k, "val_fold": rule.get("val_fold"),
            **{key: test.get(key) for key in ("n", "acc", "auc", "ece", "brier", "per_class_recall", "confusion")},
            "best_epoch": (bundle.metadata.get("training") or {}).get("best_epoch"),
            "seconds": (bundle.metadata.get("training") or {}).get("seconds"),
            "cpu_seconds": (bundle.metadata.get("training") or {}).get("cpu_seconds")}


def cross_validate(name: str, data: Path, out: Path, seed: int = 0, folds: Sequence[int] = FOLDS,
                   cache_dir: Path | None = None, progress: Callable[[str], None] | None = None,
                   budget_min: float | None = None, threads: int | None = None,
                   epochs: int | None = None) -> dict[str, Any]:
    """Train (or read) one bundle per test fold and return the table with its mean and spread; writes
    OUT/cv.json. ``budget_min`` is per fold."""
    from tools.classifiers.train import train

    recipe = get_recipe(name)
    if recipe.archive is None or recipe.archive.kind != "cheng-brain-mri":
        raise InputError(f"{name} has fixed splits; cross-validation applies to the fold-based brain MRI recipe")
    bad = [k for k in folds if k not in FOLDS]
    if bad or not folds or len(set(folds)) != len(folds):
        raise InputError(f"folds must be distinct among {list(FOLDS)}; got {list(folds)}")
    say = progress or log.info
    out = Path(out)
    rows = []
    for k in folds:
        fold_dir = out / f"test-fold-{k}"
        if not (fold_dir / METADATA).is_file():
            say(f"cross-validation: training with test fold {k}")
            train(name, data, fold_dir, seed=seed, test_fold=k, cache_dir=cache_dir, progress=say,
                  budget_min=budget_min, threads=threads, epochs=epochs)
        else:
            say(f"cross-validation: test fold {k} already trained at {fold_dir}; read")
        rows.append(_fold_row(Bundle.read(fold_dir), k))
    labels = list(recipe.labels)

    def sd(values: list[float]) -> float:
        return round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else 0.0

    mean: dict[str, Any] = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("acc", "auc", "ece", "brier")}
    spread: dict[str, Any] = {k: sd([float(r[k]) for r in rows]) for k in ("acc", "auc", "ece", "brier")}
    mean["per_class_recall"] = {lab: round(float(np.mean([r["per_class_recall"][lab] for r in rows])), 4)
                                for lab in labels}
    spread["per_class_recall"] = {lab: sd([r["per_class_recall"][lab] for r in rows]) for lab in labels}
    mean["n"] = int(sum(r["n"] for r in rows))
    mean["acc_pooled"] = round(sum(r["acc"] * r["n"] for r in rows) / mean["n"], 4)
    options = "".join([f" --budget-min {budget_min:g}" if budget_min is not None else "",
                       f" --epochs {epochs}" if epochs is not None else "", f" --threads {threads}" if threads else ""])
    result = {"folds": rows, "mean": mean, "sd": spread, "seed": seed, "labels": labels,
              "note": "each fold tested once by a model trained on three other folds and selected on the fold "
                      "before it; mean and sd (sample standard deviation) over folds",
              "command": f"radconsult models cv {name} --data {Path(data).name} --out DIR --seed {seed}{options}"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def table(result: dict[str, Any]) -> list[str]:
    """The cross-validation table as Markdown rows (what ``radconsult models cv`` prints)."""
    labels = result.get("labels") or list((result["folds"][0].get("per_class_recall") or {}).keys())
    head = ["test fold", "val fold", "n", "ACC", "macro AUC", *[f"recall {lab}" for lab in labels], "ECE"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in result["folds"]:
        recall = r.get("per_class_recall") or {}
        rows.append(f"| {r['test_fold']} | {r['val_fold']} | {r['n']} | {r['acc']:.4f} | {r['auc']:.4f} | "
                    + " | ".join(f"{recall.get(lab, float('nan')):.4f}" for lab in labels) + f" | {r['ece']:.4f} |")
    m, sd = result["mean"], result.get("sd") or {}
    sd_recall = sd.get("per_class_recall") or {}

    def cell(key: str) -> str:
        return f"{m[key]:.4f} +- {sd.get(key, 0.0):.4f}"

    rows.append(f"| mean +- sd | | {m['n']} | {cell('acc')} | {cell('auc')} | "
                + " | ".join(f"{m['per_class_recall'][lab]:.4f} +- {sd_recall.get(lab, 0.0):.4f}" for lab in labels)
                + f" | {cell('ece')} |")
    return rows


def attach(bundle_dir: Path, result: dict[str, Any]) -> Path:
    """Record a cross-validation table in a bundle's metadata (``metrics.cv``) and re-render its card."""
    bundle = Bundle.read(bundle_dir)
    metadata = dict(bundle.metadata)
    metadata["metrics"] = {**metadata.get("metrics", {}), "cv": result}
    (Path(bundle_dir) / METADATA).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    return card.write(bundle_dir, metadata)
