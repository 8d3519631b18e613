"""Out-of-distribution score: Mahalanobis distance of penultimate features to the training classes.

Following Lee et al. (2018): class means and one shared (shrunk) covariance of the features that enter
the final linear layer, fitted on the training split; the score of an image is its smallest distance to
a class mean. The flag threshold is a high percentile of the scores on the validation split, so about
(100 - percentile)% of in-distribution images are flagged by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def feature_module(network: nn.Module, name: str | None = None) -> nn.Module:
    """The module whose *input* is the feature vector: ``name`` when given, else the last nn.Linear."""
    if name:
        modules = dict(network.named_modules())
        if name not in modules:
            raise KeyError(name)
        return modules[name]
    last = None
    for module in network.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise KeyError("no nn.Linear layer in the network")
    return last


@contextmanager
def capture_features(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the flattened input of ``module`` on every forward pass inside the block."""
    store: list[torch.Tensor] = []

    def hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        store.append(inputs[0].detach().flatten(1).float().cpu())

    handle = module.register_forward_pre_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@dataclass(frozen=True)
class MahalanobisOOD:
    """Class means (C, D), shared precision (D, D), and the flag threshold (distance units)."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float
    percentile: float = 99.0

    def score(self, features: np.ndarray) -> np.ndarray:
        """Smallest Mahalanobis distance to a class mean, one per row of (N, D) features."""
        f = np.asarray(features, dtype=np.float64)
        d = []
        for mu in self.means:
            diff = f - mu
            d.append(np.einsum("nd,de,ne->n", diff, self.precision, diff))
        return np.sqrt(np.maximum(np.min(np.stack(d, 1), axis=1), 0.0))

    def to_json(self) -> dict[str, object]:
        return {"method": "mahalanobis-shared-cov", "percentile": self.percentile,
                "threshold": round(float(self.threshold), 6),
                "means": np.round(self.means, 6).tolist(), "precision": np.round(self.precision, 6).tolist()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> MahalanobisOOD:
        return cls(means=np.asarray(data["means"], dtype=np.float64),
                   precision=np.asarray(data["precision"], dtype=np.float64),
                   threshold=float(data["threshold"]), percentile=float(data.get("percentile", 99.0)))


def fit_mahalanobis(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
                    percentile: float = 99.0, shrinkage: float = 0.1) -> MahalanobisOOD:
    """Fit class means and a shrunk shared covariance on train; threshold = val ``percentile``."""
    x = np.asarray(train_features, dtype=np.float64)
    y = np.asarray(train_labels, dtype=int).ravel()
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / max(len(x) - 1, 1)
    dim = cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * (np.trace(cov) / dim) * np.eye(dim)
    precision = np.linalg.inv(cov)
    model = MahalanobisOOD(means=means, precision=precision, threshold=0.0, percentile=percentile)
    thr = float(np.percentile(model.score(val_features), percentile))
    return MahalanobisOOD(means=means, precision=precision, threshold=thr, percentile=percentile)
