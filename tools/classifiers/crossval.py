"""Patient-wise k-fold cross-validation of a fold-based recipe (the brain MRI archive's five folds).

Fold k is tested once by a model trained on three other folds and selected (epoch, temperature) on the
fold before it (fold 5 for k = 1), exactly as ``radconsult models train NAME --test-fold k`` does; the
bundled model is the k = 5 run. Each fold's bundle is written to ``OUT/test-fold-k``; a fold whose
bundle is already there is read, not retrained, so an interrupted run resumes. The table goes to
``OUT/cv.json`` and, on request, into a bundle's model card (``metrics.cv``).
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
                   cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or read) one bundle per test fold and return the table with its mean; writes OUT/cv.json."""
    from tools.classifiers.train import train

    recipe = get_recipe(name)
    if recipe.archive is None or recipe.archive.kind != "cheng-brain-mri":
        raise InputError(f"{name} has fixed splits; cross-validation applies to the fold-based brain MRI recipe")
    bad = [k for k in folds if k not in FOLDS]
    if bad or not folds:
        raise InputError(f"folds must be among {list(FOLDS)}; got {list(folds)}")
    say = progress or log.info
    out = Path(out)
    rows = []
    for k in folds:
        fold_dir = out / f"test-fold-{k}"
        if not (fold_dir / METADATA).is_file():
            say(f"cross-validation: training with test fold {k}")
            train(name, data, fold_dir, seed=seed, test_fold=k, cache_dir=cache_dir, progress=say)
        else:
            say(f"cross-validation: test fold {k} already trained at {fold_dir}; read")
        rows.append(_fold_row(Bundle.read(fold_dir), k))
    mean = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in ("acc", "auc", "ece", "brier")}
    mean["n"] = int(sum(r["n"] for r in rows))
    mean["acc_pooled"] = round(sum(r["acc"] * r["n"] for r in rows) / mean["n"], 4)
    result = {"folds": rows, "mean": mean, "seed": seed,
              "note": "each fold tested once by a model trained on three other folds and selected on the fold "
                      "before it; mean = unweighted mean over folds",
              "command": f"radconsult models cv {name} --data {Path(data).name} --out DIR --seed {seed}"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def attach(bundle_dir: Path, result: dict[str, Any]) -> Path:
    """Record a cross-validation table in a bundle's metadata (``metrics.cv``) and re-render its card."""
    bundle = Bundle.read(bundle_dir)
    metadata = dict(bundle.metadata)
    metadata["metrics"] = {**metadata.get("metrics", {}), "cv": result}
    (Path(bundle_dir) / METADATA).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    return card.write(bundle_dir, metadata)
