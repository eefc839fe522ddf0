"""LogME (You et al., ICML 2021): how linearly predictive features are of labels.

The indicator of ASVP's ``logme`` feature-update rule (:mod:`asvp.trigger`) and the score of
PED (:mod:`asvp.ped`). Float64 numpy; torch tensors are accepted and converted.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_numpy", "checked_features_labels", "logme"]

_MAX_ITER = 100
_RTOL = 1e-6
# With fewer samples than feature dimensions the targets can be fitted exactly: the residual
# goes to 0 and the noise precision beta diverges while the evidence tends to a finite limit.
# Both precisions are kept in this range (error O(1/beta) on the limit), never overflowing.
_PRECISION_RANGE = (1e-10, 1e10)


def as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _close(new: float, old: float) -> bool:
    return abs(new - old) <= _RTOL * abs(old)


def checked_features_labels(
    features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``features`` as a finite float64 ``n x d`` array and ``labels`` as ``n`` integer ids."""
    f = as_numpy(features)
    y = as_numpy(labels)
    if f.ndim != 2:
        raise ValueError(f"features must be 2-D (n x d), got shape {f.shape}")
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.shape[0] != f.shape[0]:
        raise ValueError(f"features has {f.shape[0]} rows but labels has {y.shape[0]} entries")
    if f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"features must be non-empty, got shape {f.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
    f = f.astype(np.float64, copy=False)
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or infinite values")
    return f, y


def _class_evidence(sigma2: np.ndarray, z: np.ndarray, y_sq: float, n: int, d: int) -> float:
    """Maximum log evidence of Bayesian linear regression for one target, divided by ``n``.

    ``sigma2`` are the squared singular values of ``F`` (economy SVD, ``r = min(n, d)`` of
    them), ``z = U^T y`` and ``y_sq = ||y||^2``. The ``d - r`` zero eigenvalues of ``F^T F``
    (when ``d > n``) add ``(d - r) log(alpha)`` to ``log|A|`` and nothing to ``gamma``.
    """
    r = sigma2.size
    z2 = z * z
    outside = max(y_sq - float(z2.sum()), 0.0)  # ||y||^2 outside the column space of F
    tiny = np.finfo(np.float64).tiny
    alpha, beta = 1.0, 1.0
    for _ in range(_MAX_ITER):
        denom = alpha + beta * sigma2
        gamma = float(np.sum(beta * sigma2 / denom))
        m2 = float(np.sum(beta**2 * sigma2 * z2 / denom**2))  # ||m||^2
        res2 = float(np.sum(alpha**2 * z2 / denom**2)) + outside  # ||F m - y||^2
        new_alpha = gamma / max(m2, tiny)
        new_beta = (n - gamma) / max(res2, tiny)
        done = _close(new_alpha, alpha) and _close(new_beta, beta)
        alpha = float(np.clip(new_alpha, *_PRECISION_RANGE))
        beta = float(np.clip(new_beta, *_PRECISION_RANGE))
        if done:
            break
    denom = alpha + beta * sigma2
    m2 = float(np.sum(beta**2 * sigma2 * z2 / denom**2))
    res2 = float(np.sum(alpha**2 * z2 / denom**2)) + outside
    logdet_a = float(np.sum(np.log(denom))) + (d - r) * np.log(alpha)
    evidence = (
        0.5 * n * np.log(beta)
        + 0.5 * d * np.log(alpha)
        - 0.5 * n * np.log(2.0 * np.pi)
        - 0.5 * beta * res2
        - 0.5 * alpha * m2
        - 0.5 * logdet_a
    )
    return float(evidence) / n


def logme(features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """LogME of ``features`` for the classification ``labels`` (You et al., ICML 2021).

    "LogME: Practical Assessment of Pre-trained Models for Transfer Learning". For each class
    ``k`` present in ``labels`` the target is the one-hot column ``y_k`` (1 where the label is
    ``k``, else 0), modelled by Bayesian linear regression ``y = F w + e`` with
    ``w ~ N(0, alpha^-1 I_d)`` and ``e ~ N(0, beta^-1 I_n)``. Its log evidence is::

        L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log 2 pi
                         - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log|A|,
        A = alpha I + beta F^T F,   m = beta A^-1 F^T y,

    maximised over ``alpha, beta`` by the paper's fixed-point iteration (from 1, 1)::

        gamma = sum_i beta s_i^2 / (alpha + beta s_i^2),
        alpha <- gamma / ||m||^2,   beta <- (n - gamma) / ||F m - y||^2,

    until both change by less than 1e-6 relative, or 100 iterations. ``F = U S V^T`` (economy
    SVD) is computed once and reused for every class; all terms are written in ``s_i`` and
    ``U^T y``, with the ``d - n`` zero singular values of a wide ``F`` (``n < d``) counted in
    ``log|A|``. The value returned is the mean over classes of ``L / n``; larger means features
    more linearly predictive of the labels.

    Written from the paper; no code was taken from the thuml/LogME repository (it has no
    licence). Computed in float64 with numpy; torch tensors are accepted and converted.

    Args:
        features: ``n x d`` feature matrix.
        labels: ``n`` integer class ids; the classes are those present (``np.unique``).
    """
    f, y = checked_features_labels(features, labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)  # u: n x r, r = min(n, d)
    sigma2 = s * s
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    # U^T y_k for every class at once: the sum of the rows of U whose label is k.
    # Every class is present, so no segment of the class-sorted rows is empty.
    order = np.argsort(inverse.reshape(-1), kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    z = np.add.reduceat(u[order], starts, axis=0)
    per_class = [_class_evidence(sigma2, z[k], float(counts[k]), n, d) for k in range(classes.size)]
    return float(np.mean(per_class))
