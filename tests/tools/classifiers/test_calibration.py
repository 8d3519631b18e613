from __future__ import annotations

import itertools

import numpy as np

from tools.classifiers.calibration import (
    balanced_threshold,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    roc_auc,
    softmax,
)


def test_temperature_recovers_known_scale():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 2))
    labels = np.array([rng.choice(2, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 3.0, labels)  # over-confident by a factor 3
    assert abs(t - 3.0) < 0.3


def test_ece_known_values():
    # all predictions 0.8 confident, 80% correct -> perfectly calibrated
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) < 1e-9
    # 0.9 confident, half correct -> ECE 0.4
    probs = np.tile([0.9, 0.1], (10, 1))
    labels = np.array([0] * 5 + [1] * 5)
    assert abs(expected_calibration_error(probs, labels) - 0.4) < 1e-9


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(60), 1)  # many ties
    pos = rng.random(60) > 0.6
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0)
             for a, b in itertools.product(scores[pos], scores[~pos])]
    assert abs(roc_auc(scores, pos) - np.mean(pairs)) < 1e-12
    assert np.isnan(roc_auc(scores, np.ones(60, bool)))


def test_brier_and_threshold():
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert abs(brier_score(probs, np.array([1, 0])) - (0.04 + 0.16) / 2) < 1e-12
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    t = balanced_threshold(scores, scores > 0.5)
    assert 0.3 < t < 0.7
