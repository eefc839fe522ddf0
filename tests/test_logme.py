"""LogME against an independent brute-force maximisation of the evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from asvp.trigger import logme


def _log_evidence(f: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """log p(y | F, alpha, beta): y ~ N(0, beta^-1 I + alpha^-1 F F^T) (w integrated out)."""
    n = f.shape[0]
    cov = np.exp(-log_beta) * np.eye(n) + np.exp(-log_alpha) * (f @ f.T)
    return float(multivariate_normal.logpdf(y, mean=np.zeros(n), cov=cov))


def _reference_logme(f: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of max_{alpha, beta} log-evidence / n, by Nelder-Mead from 4 starts."""
    n = f.shape[0]
    values = []
    for k in np.unique(labels):
        y = (labels == k).astype(np.float64)
        best = -np.inf
        for start in [(0.0, 0.0), (3.0, 2.0), (-3.0, 1.0), (2.0, -2.0)]:
            res = minimize(
                lambda p, y=y: -_log_evidence(f, y, p[0], p[1]),
                np.array(start),
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000},
            )
            best = max(best, -res.fun)
        values.append(best / n)
    return float(np.mean(values))


def _data(n: int, d: int, classes: int, seed: int, shift: float = 1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres = rng.normal(size=(classes, d))
    f = rng.normal(size=(n, d)) + shift * centres[labels]
    return f, labels


@pytest.mark.parametrize(
    ("n", "d", "classes", "seed"),
    [
        (60, 8, 3, 0),  # n > d
        (80, 5, 4, 1),  # n > d
        (15, 40, 3, 2),  # n < d: economy SVD, d - n zero singular values
        (12, 12, 2, 3),  # n == d
    ],
)
def test_logme_matches_bruteforce_evidence_maximisation(n, d, classes, seed):
    f, labels = _data(n, d, classes, seed)
    expected = _reference_logme(f, labels)
    assert logme(f, labels) == pytest.approx(expected, rel=1e-4)


def test_logme_accepts_torch_and_float32_like_numpy():
    f, labels = _data(50, 6, 3, 4)
    expected = logme(f, labels)
    got = logme(torch.from_numpy(f), torch.from_numpy(labels))
    assert got == pytest.approx(expected, rel=1e-12)
    # float32 input is converted to float64 before any arithmetic
    assert logme(f.astype(np.float32), labels) == pytest.approx(
        logme(f.astype(np.float32).astype(np.float64), labels), rel=1e-12
    )


def test_logme_classes_are_those_present():
    # ids 3 and 7 only: same value as relabelled 0 and 1 (no empty class columns)
    f, labels = _data(40, 5, 2, 5)
    assert logme(f, np.where(labels == 0, 3, 7)) == pytest.approx(logme(f, labels), rel=1e-12)


def test_separated_classes_score_higher_than_shuffled_labels():
    f, labels = _data(300, 16, 5, 6, shift=4.0)
    shuffled = np.random.default_rng(7).permutation(labels)
    assert logme(f, labels) > logme(f, shuffled) + 0.1


def test_logme_is_finite_for_wide_features():
    f, labels = _data(10, 500, 4, 8)
    assert np.isfinite(logme(f, labels))


@pytest.mark.parametrize(
    ("features", "labels", "match"),
    [
        (np.zeros(5), np.zeros(5, dtype=int), "2-D"),
        (np.zeros((5, 2)), np.zeros((5, 1), dtype=int), "1-D"),
        (np.zeros((5, 2)), np.zeros(4, dtype=int), "5 rows but labels has 4"),
        (np.ones((5, 2)), np.zeros(5), "integer"),
        (np.full((5, 2), np.nan), np.zeros(5, dtype=int), "NaN"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "non-empty"),
    ],
)
def test_logme_rejects_bad_input(features, labels, match):
    with pytest.raises(ValueError, match=match):
        logme(features, labels)


def test_logme_stays_finite_when_few_samples_are_fitted_exactly():
    # 10 very sparse post-ReLU-like samples in 1280 dimensions (as after a short fine-tune
    # with dead units), most classes with one sample: the targets are fitted exactly, the
    # residual vanishes and an unbounded noise precision overflowed (seen in a real ASVP cell).
    rng = np.random.default_rng(49)
    features = np.abs(rng.standard_normal((10, 1280))) * (rng.random((10, 1280)) < 0.008)
    value = logme(features, np.array([4, 5, 8, 0, 0, 6, 1, 4, 2, 9]))
    assert np.isfinite(value)
