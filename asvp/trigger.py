"""Indicators that decide when ASVP replaces the proxy's features (``DESIGN.md``, "asvp").

This module holds LogME (:func:`logme`), PED (:func:`ped`, with :func:`ped_features` and
:func:`check_ped_settings`) and the feature-update rules ``logme``, ``ped``, ``schedule``,
``never`` and ``every`` (:class:`FeatureUpdateRule`). The paper's exact rule is not public: these
rules are this project's reading of it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from asvp.config import TriggerConfig

__all__ = [
    "PED_DEFAULTS",
    "TRIGGER_RULES",
    "FeatureUpdateRule",
    "UpdateDecision",
    "check_ped_settings",
    "logme",
    "ped",
    "ped_features",
]

TRIGGER_RULES = ("logme", "ped", "schedule", "never", "every")
SUBSAMPLE_REPEATS = 8

_MAX_ITER = 100
_RTOL = 1e-6
# With fewer samples than feature dimensions the targets can be fitted exactly: the residual
# goes to 0 and the noise precision beta diverges while the evidence tends to a finite limit.
# Both precisions are kept in this range (error O(1/beta) on the limit), never overflowing.
_PRECISION_RANGE = (1e-10, 1e10)


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _close(new: float, old: float) -> bool:
    return abs(new - old) <= _RTOL * abs(old)


def _checked_features_labels(
    features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``features`` as a finite float64 ``n x d`` array and ``labels`` as ``n`` integer ids."""
    f = _as_numpy(features)
    y = _as_numpy(labels)
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
    f, y = _checked_features_labels(features, labels)
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


# --- PED -------------------------------------------------------------------------------------

PED_DEFAULTS: dict[str, float] = {
    "nsigma": 0.6,
    "time_step": 0.1,
    "exit_ratio": 0.5,
    "num_step": 6,
    "constant": 1.0,
    "eps": 1e-3,
}
_PED_EXPECTED = {
    "nsigma": "a positive number",
    "time_step": "a positive number",
    "exit_ratio": "a number in [0, 1)",
    "num_step": "a positive integer",
    "constant": "a positive number",
    "eps": "a positive number",
}
# Pairs of class centres closer than this (relative to their norms) get their distance from the
# differences, not from the Gram matrix, whose rounding error would dominate it.
_GRAM_RELATIVE_FLOOR = 1e-6
_PAIR_CHUNK = 4096


def _ped_allowed() -> str:
    return ", ".join(f"{name} (default {value})" for name, value in PED_DEFAULTS.items())


def _checked_ped_value(key: str, value: object) -> float:
    expected = f"{_PED_EXPECTED[key]} (default {PED_DEFAULTS[key]})"
    bad = ValueError(f"PED setting {key} = {value!r}: expected {expected}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise bad
    number = float(value)
    if not np.isfinite(number):
        raise bad
    if key == "num_step":
        if not number.is_integer() or number < 1:
            raise bad
        return int(number)
    if key == "exit_ratio":
        if not 0.0 <= number < 1.0:
            raise bad
        return number
    if number <= 0.0:
        raise bad
    return number


def check_ped_settings(settings: Mapping[str, object]) -> dict[str, float]:
    """Validate keyword settings of :func:`ped` (the grid's ``trigger.ped`` mapping).

    Returns the given settings as numbers (``num_step`` as ``int``); settings not given keep
    their defaults, :data:`PED_DEFAULTS` (``{**PED_DEFAULTS, **check_ped_settings(s)}`` is the
    full set). Raises ``ValueError`` naming the key, its value and what is expected, with the
    allowed names and their defaults for an unknown name.
    """
    if not isinstance(settings, Mapping):
        raise ValueError(
            f"PED settings must be a mapping of setting names to numbers, got {settings!r}; "
            f"allowed: {_ped_allowed()}"
        )
    checked: dict[str, float] = {}
    for key, value in settings.items():
        if key not in PED_DEFAULTS:
            raise ValueError(
                f"unknown PED setting {key!r} (value {value!r}); expected one of {_ped_allowed()}"
            )
        checked[key] = _checked_ped_value(key, value)
    return checked


def _centre_distances(centres: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``centres`` (``k x d``), ``k x k``.

    From the Gram matrix (memory ``O(k^2)``, not ``O(k^2 d)``: ImageNet has 1000 classes);
    pairs whose squared distance is below ``_GRAM_RELATIVE_FLOOR`` x their squared norms are
    recomputed from their differences, so that coincident centres are exactly 0 apart.
    """
    centred = centres - centres.mean(axis=0)
    sq = np.einsum("ij,ij->i", centred, centred)
    scale = sq[:, None] + sq[None, :]
    d2 = scale - 2.0 * (centred @ centred.T)
    near = d2 <= _GRAM_RELATIVE_FLOOR * scale
    np.fill_diagonal(near, False)
    rows, cols = np.nonzero(near)
    for start in range(0, rows.size, _PAIR_CHUNK):
        r, c = rows[start : start + _PAIR_CHUNK], cols[start : start + _PAIR_CHUNK]
        diff = centred[r] - centred[c]
        d2[r, c] = np.einsum("ij,ij->i", diff, diff)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def _ped_step(centres: np.ndarray, reach: np.ndarray, settings: dict[str, float]) -> np.ndarray:
    """One step of the simulated motion: the displacement of every class centre (``k x d``)."""
    dist = _centre_distances(centres)
    overlap = np.maximum(reach[:, None] + reach[None, :] - dist, 0.0)
    np.fill_diagonal(overlap, 0.0)
    acceleration = settings["constant"] * overlap  # force = overlap, unit mass
    length = np.minimum(0.5 * acceleration * settings["time_step"] ** 2, overlap)
    weight = np.divide(length, dist, out=np.zeros_like(length), where=dist > 0.0)
    # sum_j weight_ij (c_i - c_j): each class moves away from every class it overlaps
    centred = centres - centres.mean(axis=0)
    return weight.sum(axis=1)[:, None] * centred - weight @ centred


def _checked_reference(reference: torch.Tensor | np.ndarray, d: int) -> np.ndarray:
    ref = _as_numpy(reference)
    if ref.ndim != 2 or ref.shape[1] != d or ref.shape[0] == 0:
        raise ValueError(
            f"reference must be a non-empty 2-D array with the features' {d} columns, "
            f"got shape {ref.shape}"
        )
    ref = ref.astype(np.float64, copy=False)
    if not np.all(np.isfinite(ref)):
        raise ValueError("reference contains NaN or infinite values")
    return ref


def ped_features(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray | None = None,
    **settings: float,
) -> np.ndarray:
    """The features after PED's simulated motion (float64 ``n x d``, in the input's units).

    The motion of :func:`ped` (see there for the equations and the settings); :func:`ped`
    is :func:`logme` of this. Rows of a class are translated together; nothing moves when no
    two classes overlap, and then the result equals ``features``.
    """
    f, y = _checked_features_labels(features, labels)
    params = {**PED_DEFAULTS, **check_ped_settings(settings)}
    ref = f if reference is None else _checked_reference(reference, f.shape[1])
    shift = ref.mean(axis=0)
    scale = np.maximum(ref.std(axis=0), params["eps"])

    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    means = np.add.reduceat(f[order], starts, axis=0) / counts[:, None]
    spread = (f - means[inverse]) / scale  # standardised deviations from the class mean
    sigma = np.sqrt(
        np.bincount(inverse, np.einsum("ij,ij->i", spread, spread), minlength=classes.size) / counts
    )
    reach = params["nsigma"] * sigma

    start = (means - shift) / scale
    centres = start.copy()
    first = 0.0
    for step in range(int(params["num_step"])):
        move = _ped_step(centres, reach, params)
        change = float(np.abs(move).sum())
        if step == 0:
            first = change
        if first == 0.0 or change <= params["exit_ratio"] * first:
            break
        centres = centres + move
    return f + ((centres - start) * scale)[inverse]


def ped(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray | None = None,
    **settings: float,
) -> float:
    """PED, "Potential Energy Decline" (Li, Hu, Ge, Shan, Duan, ICCV 2023), scored by LogME.

    "Exploring Model Transferability through the Lens of Potential Energy" (arXiv 2308.15074):
    fine-tuning pushes apart the classes that overlap in the pre-trained feature space; PED
    simulates that motion with a repulsive force between overlapping class clusters and scores
    the moved features. Only the paper's abstract was available to us; the equations below
    are our reading of the authors' released code (github lixiaotong97/PED, ``metrics.py``
    ``PED_Score``/``One_Step_PED``), read for understanding and re-implemented here (no code
    copied; the repository states no licence). Float64 numpy; torch tensors are accepted.

    1. Standardise with ``reference`` (the authors use ImageNet features of the same backbone;
       default here: ``features`` themselves): ``z = (x - m) / s`` with ``m``, ``s`` the
       per-dimension mean and standard deviation (ddof 0) of ``reference``, ``s`` floored at
       ``eps``.
    2. Each class ``k`` (those present in ``labels``) is a ball with centre ``c_k`` (the mean
       of its ``z``) and radius ``nsigma * sigma_k``, ``sigma_k = sqrt(sum_d Var_k(z_d))`` (the
       root mean squared distance of its samples to ``c_k``).
    3. One step: for every pair ``i != j``, ``d_ij = ||c_i - c_j||`` and the overlap
       ``o_ij = max(nsigma (sigma_i + sigma_j) - d_ij, 0)``. The repulsion is ``F_ij = o_ij``
       (a linear force acting while the balls overlap, i.e. the potential energy
       ``sum_{i<j} o_ij^2 / 2`` that the motion makes decline), the acceleration
       ``a_ij = constant F_ij``, and from rest class ``i`` moves over one ``time_step`` by
       ``l_ij = min(a_ij time_step^2 / 2, o_ij)`` away from ``j``::

           Delta_i = sum_j l_ij (c_i - c_j) / d_ij,    c_i <- c_i + Delta_i,

       every sample of class ``i`` moving by ``Delta_i`` (radii and shapes are kept).
    4. Stop: with ``D_t = sum_i ||Delta_i||_1`` the total movement of step ``t``, step ``t``
       is applied only while ``D_t / D_0 > exit_ratio``, and at most ``num_step`` steps are
       made. ``D_0 = 0`` (one class, or no two classes overlap): nothing moves.
    5. The moved features, mapped back to the input's units
       (``x' = x + s (c_k^final - c_k^initial)`` for a sample of class ``k``), are scored with
       :func:`logme`: ``PED = logme(x', labels)``. When nothing moves, ``PED == logme``.

    Settings (keyword arguments; names and defaults from the authors' code, whose evaluation
    script ``evaluate_metric_cpu.py`` passes its command-line defaults to ``PED_Score``):

    - ``nsigma`` = 0.6: ball radius in class standard deviations (``--nsigma``; its comment
      names 0.3 and 0.6 as the two candidates; ``PED_Score``'s own default, 2.0, is
      overridden by the script).
    - ``time_step`` = 0.1: the time step (``--step``, passed as ``time_step``).
    - ``exit_ratio`` = 0.5: stop once a step moves at most this fraction of the first step's
      movement (``--er``, passed as ``exit_ratio``).
    - ``num_step`` = 6: the most steps. The script declares ``--num_step`` (default 5) but
      never passes it on; its loop makes at most 6 steps, which is what its results used.
    - ``constant`` = 1.0: acceleration per unit force (``--constant``).
    - ``eps`` = 1e-3: floor of the reference standard deviation (``PED_Score``'s ``eps``).

    The score is LogME (the code's ``type='LOGME'``; its script's default scorer is SFDA, but
    ASVP pairs PED with LogME). Choices where the source is unclear or silent:

    - The stop rule: the paper speaks of the decline of potential energy; the code measures
      it by the movement ratio ``D_t / D_0`` of step 4 (L1 over classes and dimensions, in
      standardised units, every class counted once) and does not apply the step that fails
      it. We do the same.
    - Every class has unit mass whatever its size, velocities are not carried over between
      steps (each step starts from rest), and both classes of a pair move the full ``l_ij``
      (the gap grows by ``2 l_ij``, past touching when the cap ``o_ij`` binds), as in the code.
    - Two classes with identical centres (``d_ij = 0``) exert no force on each other: the
      direction is undefined (the code divides by zero there).
    - A class with one sample has radius 0.

    Implied invariances: renaming classes and permuting rows change nothing; the motion
    commutes with a per-dimension map ``a x + b`` (``a > 0``) applied to ``features`` and
    ``reference`` together (standardisation removes it), though the LogME score does not.
    Cost: ``O(n d)`` for the class statistics, ``O(k^2 d)`` per step for ``k`` classes, plus
    LogME's SVD.

    Args:
        features: ``n x d`` feature matrix.
        labels: ``n`` integer class ids.
        reference: ``m x d`` features whose per-dimension mean and standard deviation
            standardise the motion; default ``features``.
        **settings: any of ``nsigma``, ``time_step``, ``exit_ratio``, ``num_step``,
            ``constant``, ``eps`` (see :func:`check_ped_settings`).
    """
    return logme(ped_features(features, labels, reference, **settings), labels)


@dataclass(frozen=True)
class UpdateDecision:
    """One round's indicator reading: its value (NaN for rules without one) and the decision."""

    value: float
    reference: float
    update: bool
    reason: str


def _ped_indicator(config: TriggerConfig) -> Callable[[np.ndarray, np.ndarray], float]:
    settings = check_ped_settings(config.ped)
    return lambda features, labels: ped(features, labels, **settings)


# Rules that read a value on the labelled set's features: rule name -> indicator factory.
_INDICATORS: dict[str, Callable[[TriggerConfig], Callable[[np.ndarray, np.ndarray], float]]] = {
    "logme": lambda config: logme,
    "ped": _ped_indicator,
}


class FeatureUpdateRule:
    """Decides, at each evaluation budget, whether ASVP re-extracts the proxy's features.

    ``logme``: LogME of the current features of the labelled set; the reference is its value
    on the first round with these features (it restarts after each update); update when the
    value drops by more than ``1 - fraction`` of ``|reference|`` (that is, below
    ``fraction x reference`` for a positive reference; LogME can be negative, where a plain
    product would raise the bar), or below the absolute ``threshold``. LogME's per-sample
    evidence grows with the number of samples (measured on MNIST-5k with EfficientNet-Lite0
    features and margin selection: -0.137 at 20 labels, -0.020 at 80), so values of growing
    labelled sets are not comparable; the value is therefore the mean LogME over
    ``SUBSAMPLE_REPEATS`` seeded random subsets of the labelled set, each of the size the
    labelled set had when the rule first read it (on the same run: -0.137 at 20, -0.190 at
    40: the features separate the proxy's picks worse than the random initial set).

    ``ped``: the same with :func:`ped` (settings ``config.ped``, checked when the rule is
    built) in place of LogME; each subset is standardised by its own features (``ped``'s
    default ``reference``: the rule sees no ImageNet features).

    ``schedule``: update at the first evaluation budget at or above each count of
    ``at_labels``. ``every``: at every budget. ``never``: never (ASVP then equals SVPp).
    All rules respect ``max_updates`` and never update at the last budget, whose features
    would select nothing.
    """

    def __init__(self, config: TriggerConfig, seed: int = 0) -> None:
        if config.rule not in TRIGGER_RULES:
            raise ValueError(
                f"unknown trigger rule {config.rule!r}; expected one of {TRIGGER_RULES}"
            )
        self.config = config
        self.updates = 0
        self.reference = float("nan")
        self._pending_schedule = sorted(config.at_labels)
        self._rng = np.random.default_rng(seed)
        self._subset_size: int | None = None
        factory = _INDICATORS.get(config.rule)
        self._indicator = factory(config) if factory is not None else None

    def needs_value(self) -> bool:
        return self._indicator is not None

    def state_dict(self) -> dict[str, Any]:
        """What the rule carries from round to round (JSON-ready), for round checkpoints."""
        return {
            "updates": self.updates,
            "reference": self.reference,
            "pending_schedule": list(self._pending_schedule),
            "rng": self._rng.bit_generator.state,
            "subset_size": self._subset_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output: later decisions equal an uninterrupted
        rule's, including the random subsets of the size-matched indicator."""
        self.updates = int(state["updates"])
        self.reference = float(state["reference"])
        self._pending_schedule = list(state["pending_schedule"])
        self._rng.bit_generator.state = state["rng"]
        self._subset_size = state["subset_size"]

    def decide(
        self, labels_used: int, is_last: bool, features: np.ndarray | None, targets: np.ndarray
    ) -> UpdateDecision:
        """Read the indicator on the labelled set's current ``features`` and decide."""
        value = self._size_matched_value(features, targets) if self.needs_value() else float("nan")
        if self.needs_value() and np.isnan(self.reference):
            self.reference = value
        due = self._rule_says_update(labels_used, value)
        capped = self.config.max_updates is not None and self.updates >= self.config.max_updates
        if not due:
            return UpdateDecision(value, self.reference, False, "indicator: keep")
        if is_last:
            return UpdateDecision(value, self.reference, False, "last budget: nothing to select")
        if capped:
            return UpdateDecision(value, self.reference, False, "max_updates reached")
        self.updates += 1
        reference, self.reference = self.reference, float("nan")
        return UpdateDecision(value, reference, True, "indicator: update")

    def _size_matched_value(self, features: np.ndarray | None, targets: np.ndarray) -> float:
        """The indicator on the labelled set, or its mean over size-matched random subsets."""
        assert self._indicator is not None
        if features is None:
            raise ValueError(f"the {self.config.rule} rule needs the labelled set's features")
        if self._subset_size is None:
            self._subset_size = len(targets)
        if len(targets) <= self._subset_size:
            return self._indicator(features, targets)
        values = []
        for _ in range(SUBSAMPLE_REPEATS):
            rows = self._rng.choice(len(targets), size=self._subset_size, replace=False)
            values.append(self._indicator(features[rows], targets[rows]))
        return float(np.mean(values))

    def _rule_says_update(self, labels_used: int, value: float) -> bool:
        rule = self.config.rule
        if rule == "every":
            return True
        if rule == "never":
            return False
        if rule == "schedule":
            due = [count for count in self._pending_schedule if labels_used >= count]
            self._pending_schedule = [c for c in self._pending_schedule if c not in due]
            return bool(due)
        drop = value < self.reference - (1.0 - self.config.fraction) * abs(self.reference)
        below = self.config.threshold is not None and value < self.config.threshold
        return bool(drop or below)
