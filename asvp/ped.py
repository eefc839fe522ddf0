"""PED, "Potential Energy Decline" (Li et al., ICCV 2023): transferability after a simulated
fine-tuning motion, scored by LogME.

The indicator of ASVP's ``ped`` feature-update rule (:mod:`asvp.trigger`). Its settings are
declared once, with their ranges, as the fields of :class:`PedSettings`; the grid's
``trigger.ped`` mapping is checked against them by :func:`check_ped_settings`
(:mod:`asvp.options`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch

from asvp.logme import as_numpy, checked_features_labels, logme
from asvp.options import Range, check_options, declared_options

__all__ = ["PED_DEFAULTS", "PedSettings", "check_ped_settings", "ped", "ped_features"]


@dataclass(frozen=True)
class PedSettings:
    """The settings of :func:`ped` (keyword arguments; see there for what each one does)."""

    nsigma: Annotated[float, Range(gt=0)] = 0.6
    time_step: Annotated[float, Range(gt=0)] = 0.1
    exit_ratio: Annotated[float, Range(ge=0, lt=1)] = 0.5
    num_step: Annotated[int, Range(ge=1)] = 6
    constant: Annotated[float, Range(gt=0)] = 1.0
    eps: Annotated[float, Range(gt=0)] = 1e-3


PED_DEFAULTS: dict[str, float] = dataclasses.asdict(PedSettings())
_SETTINGS = declared_options(PedSettings)
# Pairs of class centres closer than this (relative to their norms) get their distance from the
# differences, not from the Gram matrix, whose rounding error would dominate it.
_GRAM_RELATIVE_FLOOR = 1e-6
_PAIR_CHUNK = 4096


def check_ped_settings(settings: Mapping[str, object]) -> dict[str, float]:
    """Validate keyword settings of :func:`ped` (the grid's ``trigger.ped`` mapping).

    Returns the given settings as numbers (``num_step`` as ``int``); settings not given keep
    their defaults, :data:`PED_DEFAULTS` (``{**PED_DEFAULTS, **check_ped_settings(s)}`` is the
    full set). Any real number is accepted where the range allows it (numpy scalars, and an
    integral float for ``num_step``: the grid reads ``trigger.ped`` as floats). Raises
    ValueError (:class:`~asvp.options.OptionsError`) naming each bad key, its value and what
    is expected, with the allowed names and their defaults for an unknown name.
    """
    if not isinstance(settings, Mapping):
        allowed = ", ".join(option.describe_default() for option in _SETTINGS.values())
        raise ValueError(
            f"PED settings must be a mapping of setting names to numbers, got {settings!r}; "
            f"allowed: {allowed}"
        )
    plain = {key: _plain_number(key, value) for key, value in settings.items()}
    return check_options(_SETTINGS, plain, "PED settings")


def _plain_number(key: str, value: Any) -> Any:
    """A real number as a Python int or float for :mod:`asvp.options` (which refuses numpy
    scalars and ``4.0`` for an integer); anything else unchanged, to be refused there."""
    option = _SETTINGS.get(key)
    if option is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if option.annotation is int:
        return int(value) if float(value).is_integer() else value
    return value if isinstance(value, int | float) else float(value)


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


def _ped_step(centres: np.ndarray, reach: np.ndarray, settings: PedSettings) -> np.ndarray:
    """One step of the simulated motion: the displacement of every class centre (``k x d``)."""
    dist = _centre_distances(centres)
    overlap = np.maximum(reach[:, None] + reach[None, :] - dist, 0.0)
    np.fill_diagonal(overlap, 0.0)
    acceleration = settings.constant * overlap  # force = overlap, unit mass
    length = np.minimum(0.5 * acceleration * settings.time_step**2, overlap)
    weight = np.divide(length, dist, out=np.zeros_like(length), where=dist > 0.0)
    # sum_j weight_ij (c_i - c_j): each class moves away from every class it overlaps
    centred = centres - centres.mean(axis=0)
    return weight.sum(axis=1)[:, None] * centred - weight @ centred


def _checked_reference(reference: torch.Tensor | np.ndarray, d: int) -> np.ndarray:
    ref = as_numpy(reference)
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
    f, y = checked_features_labels(features, labels)
    params = PedSettings(**check_ped_settings(settings))
    ref = f if reference is None else _checked_reference(reference, f.shape[1])
    shift = ref.mean(axis=0)
    scale = np.maximum(ref.std(axis=0), params.eps)

    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    means = np.add.reduceat(f[order], starts, axis=0) / counts[:, None]
    spread = (f - means[inverse]) / scale  # standardised deviations from the class mean
    sigma = np.sqrt(
        np.bincount(inverse, np.einsum("ij,ij->i", spread, spread), minlength=classes.size) / counts
    )
    reach = params.nsigma * sigma

    start = (means - shift) / scale
    centres = start.copy()
    first = 0.0
    for step in range(params.num_step):
        move = _ped_step(centres, reach, params)
        change = float(np.abs(move).sum())
        if step == 0:
            first = change
        if first == 0.0 or change <= params.exit_ratio * first:
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
