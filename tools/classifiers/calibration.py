"""Calibration: temperature scaling fitted on validation logits, and the reliability metrics.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T > 0 chosen to minimise the
negative log-likelihood on the validation split; it changes confidence, never the ranking (AUC).
ECE here is the top-label expected calibration error with 15 equal-width confidence bins.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of (N, C) logits divided by ``temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The T in [lo, hi] minimising NLL: a coarse log-spaced grid, then golden-section refinement."""
    labels = np.asarray(labels, dtype=int).ravel()
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 200))
    losses = [nll(logits, labels, t) for t in grid]
    i = int(np.argmin(losses))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = b - g * (b - a), a + g * (b - a)
        if nll(logits, labels, c) < nll(logits, labels, d):
            b = d
        else:
            a = c
    return float((a + b) / 2)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| x bin share."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int).ravel()
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for k in range(n_bins):
        upper = conf <= edges[k + 1] if k == n_bins - 1 else conf < edges[k + 1]
        mask = (conf >= edges[k]) & upper
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of the positive-class probability for binary labels, (1/N) sum (p - y)^2.

    For more than two classes it is the multi-class Brier score averaged over samples.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int).ravel()
    onehot = np.eye(probs.shape[1])[labels]
    if probs.shape[1] == 2:
        return float(np.mean((probs[:, 1] - onehot[:, 1]) ** 2))
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties count one half)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positives, dtype=bool).ravel()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_threshold(scores: np.ndarray, positives: np.ndarray) -> float:
    """Threshold on the positive-class probability that maximises balanced accuracy (Youden's J).

    When several thresholds tie, the middle of the optimal interval is returned, so the choice does not
    hug one class. Fitted on validation data only.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positives, dtype=bool).ravel()
    cands = np.unique(np.concatenate([scores, [0.0, 1.0]]))
    mids = np.unique(np.concatenate([(cands[:-1] + cands[1:]) / 2, [0.5]]))
    best, best_ts = -1.0, []
    for t in mids:
        pred = scores >= t
        j = 0.5 * (pred[pos].mean() + (~pred[~pos]).mean())
        if j > best + 1e-12:
            best, best_ts = j, [t]
        elif abs(j - best) <= 1e-12:
            best_ts.append(t)
    return float(np.median(best_ts))
