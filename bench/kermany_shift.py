"""The Kermany shift, studied on the training folder only (train and the patient-disjoint val split).

The 224-px pneumonia model had validation specificity 1.00 against 0.81 on the test folder. The test
folder is never read here: this script asks which properties of a film, unrelated to pneumonia, tell the
two classes apart *inside the training folder*, because a network trained there is free to use them and
a later acquisition period need not share them.

1. **Nuisance table.** For every training-folder film: the JPEG's size in bytes; grey-level statistics
   (mean, standard deviation, 1st / 99th percentile, share of near-black and near-white pixels); the
   8-pixel frame (mean, spread: black background or collimation at the edges); a text-marker proxy (share
   of near-white pixels in the top corners); sharpness (variance of the Laplacian); and the ratio of
   horizontal to vertical gradient energy. The archive's films were stretched to 224x224 from their own
   size, so that ratio grows when a film was squeezed more across than down: it stands in for the
   original aspect ratio, which the archive does not keep. Each row gives the class medians in train and
   val and the AUC with which that one number separates normal from pneumonia (0.5: no information).
   Rows are computed on the archive's pixels ("raw"), after the previous bundle's percentile window, after
   the recipe's preprocessing, and after one random draw of the recipe's training augmentation on top (what
   the network sees while it learns: a property whose AUC falls there cannot be learned as a shortcut).
2. **Stress table** (``--bundle NAME|DIR``): the model's val AUC, sensitivity and specificity when each
   val film is changed in one way the classes differ in: content squeezed or widened 20% across (padded
   or cropped at the sides), black side bands (the normals' framing), the sides cropped, blur, gamma.
   A model that leans on such a property moves its decisions; one that does not keeps them.

Usage: nice python bench/kermany_shift.py [--data PATH] [--sample N] [--bundle pneumonia-cxr]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.classifiers.archives import SplitRule, decode_display, index, iter_members  # noqa: E402
from tools.classifiers.augment import BatchAugment  # noqa: E402
from tools.classifiers.calibration import roc_auc  # noqa: E402
from tools.classifiers.preprocess import Preprocessing, scaled  # noqa: E402
from tools.classifiers.recipes import get_recipe  # noqa: E402

SHARED = Path(os.environ.get("RADCONSULT_SHARED", ROOT.parent / "shared")) / "data"
KERMANY = SHARED / "kermany" / "kermany_chest_xray_224.tar"
LABELS = ("normal", "pneumonia")


def features(g: np.ndarray, nbytes: int | None) -> dict[str, float]:
    """The nuisance properties of one grey film in [0, 1] (see the module docstring)."""
    dx, dy = np.abs(np.diff(g, axis=1)).mean(), np.abs(np.diff(g, axis=0)).mean()
    b = 8
    frame = np.concatenate([g[:b].ravel(), g[-b:].ravel(), g[:, :b].ravel(), g[:, -b:].ravel()])
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    c = max(8, g.shape[0] // 6)
    row = {"mean": g.mean(), "std": g.std(), "p1": np.percentile(g, 1), "p99": np.percentile(g, 99),
           "near-black share": (g <= 0.02).mean(), "near-white share": (g >= 0.98).mean(),
           "frame mean": frame.mean(), "frame spread": frame.std(),
           "top-corner white (markers)": max((g[:c, :c] > 0.9).mean(), (g[:c, -c:] > 0.9).mean()),
           "sharpness (Laplacian var)": lap.var(), "x/y gradient ratio (aspect)": dx / max(dy, 1e-9)}
    if nbytes is not None:
        row = {"JPEG bytes": float(nbytes), **row}
    return {k: float(v) for k, v in row.items()}


def read_training_folder(data: Path, sample: int | None, seed: int = 0) -> list[tuple[str, int, np.ndarray, int]]:
    """(split, label, grey film, JPEG bytes) of the train and val splits; the test folder is not read."""
    entries = [e for e in index(data, SplitRule("kermany-cxr"), LABELS) if e.split in ("train", "val")]
    if sample and sample < len(entries):
        rng = np.random.default_rng(seed)
        entries = [entries[i] for i in sorted(rng.choice(len(entries), sample, replace=False))]
    want = {e.member: e for e in entries}
    out = []
    for name, blob in iter_members(data, set(want)):
        g = decode_display(name, blob)
        out.append((want[name].split, want[name].label, g.mean(-1) if g.ndim == 3 else g, len(blob)))
    return out


def auc_sep(values: np.ndarray, positive: np.ndarray) -> float:
    """How well one number separates the classes, whichever way round (0.5 none, 1.0 perfectly)."""
    a = roc_auc(values, positive)
    return max(a, 1 - a)


def nuisance_table(films: list[tuple[str, int, np.ndarray, int]], views: dict[str, Callable[[np.ndarray], np.ndarray]]) -> None:
    for view, fn in views.items():
        rows = [(split, label, features(fn(g), nbytes if view == "raw" else None)) for split, label, g, nbytes in films]
        print(f"\n#### {view}\n")
        print("| property | train normal | train pneumonia | val normal | val pneumonia | AUC train | AUC val |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for key in rows[0][2]:
            cells = []
            for split in ("train", "val"):
                for label in (0, 1):
                    v = [f[key] for s, lab, f in rows if s == split and lab == label]
                    cells.append(f"{np.median(v):.4g}" if v else "-")
            for split in ("train", "val"):
                v = np.array([f[key] for s, _, f in rows if s == split])
                y = np.array([lab == 1 for s, lab, _ in rows if s == split])
                cells.append(f"{auc_sep(v, y):.3f}" if y.any() and (~y).any() else "-")
            print(f"| {key} | " + " | ".join(cells) + " |")


# --- stress: one nuisance changed at a time, on val ------------------------------------------------------
def _resize(g: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def across(g: np.ndarray, factor: float) -> np.ndarray:
    """The content scaled by ``factor`` across (left-right) in a frame of the same size: cropped at the sides
    when wider, edge pixels repeated when narrower."""
    h, w = g.shape
    nw = int(round(w * factor))
    z = _resize(g, h, nw)
    if nw >= w:
        o = (nw - w) // 2
        return z[:, o:o + w]
    p = (w - nw) // 2
    return np.pad(z, ((0, 0), (p, w - nw - p)), mode="edge")


def black_bands(g: np.ndarray, share: float) -> np.ndarray:
    h, w = g.shape
    nw = int(round(w * (1 - 2 * share)))
    p = (w - nw) // 2
    return np.pad(_resize(g, h, nw), ((0, 0), (p, w - nw - p)), constant_values=0.0)


def crop_sides(g: np.ndarray, share: float) -> np.ndarray:
    h, w = g.shape
    c = int(w * share)
    return _resize(g[:, c:w - c], h, w)


def blur(g: np.ndarray, sigma: float) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    r = int(3 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = torch.tensor(k / k.sum(), dtype=torch.float32)
    t = torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32))[None, None]
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return t[0, 0].numpy()


STRESS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda g: g,
    "content 20% narrower across (edges repeated)": lambda g: across(g, 1 / 1.2),
    "content 20% wider across (sides cropped)": lambda g: across(g, 1.2),
    "black side bands, 10% each": lambda g: black_bands(g, 0.10),
    "sides cropped, 10% each": lambda g: crop_sides(g, 0.10),
    "blur, sigma 1 px": lambda g: blur(g, 1.0),
    "gamma 0.7": lambda g: g ** 0.7,
    "gamma 1.4": lambda g: g ** 1.4,
}


def stress_table(films: list[tuple[str, int, np.ndarray, int]], bundle_ref: str) -> None:
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.calibration import softmax
    from tools.classifiers.evaluate import metrics_from_logits
    from tools.classifiers.preprocess import prepare_spec
    from tools.classifiers.registry import get_bundle
    from tools.classifiers.runtime import load_model

    bundle = Bundle.read(Path(bundle_ref)) if Path(bundle_ref).is_dir() else get_bundle(bundle_ref)
    val = [(label, g) for split, label, g, _ in films if split == "val"]
    y = np.array([label for label, _ in val])
    pos = bundle.labels.index(bundle.positive_label)
    model = load_model(bundle, "cpu")
    print(f"\n#### {bundle.name} {bundle.version} on val (n={len(y)}), threshold {bundle.threshold:.3f}\n")
    print("| val films changed by | AUC | sensitivity | specificity | mean P(pneumonia), normals | mean abs change of P |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = None
    for what, fn in STRESS.items():
        x = np.stack([prepare_spec(np.clip(fn(g), 0.0, 1.0).astype(np.float32), bundle.preprocess_spec)[0]
                      for _, g in val])
        logits, _ = model.predict(x, with_features=False)
        m = metrics_from_logits(logits, y, bundle.temperature, bundle.threshold, pos)
        p = softmax(logits, bundle.temperature)[:, pos]
        base = p if base is None else base
        print(f"| {what} | {m['auc']:.4f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} | "
              f"{p[y != pos].mean():.3f} | {np.abs(p - base).mean():.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=KERMANY)
    ap.add_argument("--sample", type=int, help="at most this many training-folder films (default: all 5,216)")
    ap.add_argument("--bundle", action="append", default=[],
                    help="also run the stress table for this bundle (name or directory); repeatable")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, args.threads))
    if not args.data.is_file():
        print(f"archive not found: {args.data} (set RADCONSULT_SHARED)", file=sys.stderr)
        return 2
    films = read_training_folder(args.data, args.sample)
    n = {(s, lab): sum(1 for f in films if f[0] == s and f[1] == lab) for s in ("train", "val") for lab in (0, 1)}
    print(f"training folder of {args.data.name}: " + ", ".join(f"{s} {LABELS[lab]} {k}" for (s, lab), k in n.items())
          + " (the test folder is not read)")
    plan = get_recipe("pneumonia-cxr").archive
    assert plan is not None
    recipe_spec = Preprocessing(size=plan.size, geometry=plan.geometry, intensity=plan.intensity, border=plan.border)
    old_spec = Preprocessing(size=(224, 224), geometry="stretch", intensity="percentiles")
    augment = BatchAugment(plan.fit.augment, seed=0)

    def augmented(g: np.ndarray) -> np.ndarray:
        return augment(torch.from_numpy(scaled(g, recipe_spec)[0])[None, None])[0, 0].numpy()

    steps = ", ".join(f"{k} {v}" for k, v in recipe_spec.as_json().items() if k not in ("mean", "std", "resize"))
    nuisance_table(films, {"raw": lambda g: g,
                           "percentile window (pneumonia-cxr 2.0.0)": lambda g: scaled(g, old_spec)[0],
                           f"the recipe's preprocessing ({steps})": lambda g: scaled(g, recipe_spec)[0],
                           "the recipe's preprocessing and one draw of its training augmentation": augmented})
    for ref in args.bundle:
        stress_table(films, ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
