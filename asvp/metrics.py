"""Budget-curve metrics: sample-saving ratio, area under the curve, interpolation, seed summaries.

The paper's formulas are not public. The definitions here are the project's own, chosen to match
the caption of the paper's Figure 2 ("to achieve the same accuracy as randomly selecting 400k
samples"); ``docs/design.md`` ("Metrics") states them and every table caption says so.

A curve is a pair ``(budgets, acc)``: cumulative label counts, strictly increasing, and the test
accuracy measured at each. Between budgets a curve is piecewise linear; it is never extrapolated
outside its first and last budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "accuracy_at",
    "area_under_budget_curve",
    "budget_to_reach",
    "interpolate_cumulative",
    "mean_std",
    "sample_saving_ratio",
]

ArrayLike = Sequence[float] | np.ndarray


def _curve(
    budgets: ArrayLike, values: ArrayLike, name: str = "acc", allow_nan: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a curve: 1-D, same non-zero length, budgets finite and strictly increasing."""
    b = np.asarray(budgets, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if b.ndim != 1 or v.ndim != 1:
        raise ValueError(f"budgets and {name} must be 1-D, got shapes {b.shape} and {v.shape}")
    if b.size == 0:
        raise ValueError("budgets must not be empty")
    if b.size != v.size:
        raise ValueError(f"budgets has {b.size} entries but {name} has {v.size}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"budgets must be finite, got {b.tolist()}")
    steps = np.diff(b)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"budgets must be strictly increasing, got {b[i]:g} followed by {b[i + 1]:g} "
            f"(positions {i}, {i + 1})"
        )
    if not allow_nan and np.any(np.isnan(v)):
        raise ValueError(f"{name} contains NaN at position {int(np.flatnonzero(np.isnan(v))[0])}")
    return b, v


def _interp(b: np.ndarray, v: np.ndarray, at: float, what: str) -> float:
    if not math.isfinite(at) or at < b[0] or at > b[-1]:
        raise ValueError(f"{what} {at!r} is outside the curve's budget range [{b[0]:g}, {b[-1]:g}]")
    i = int(np.searchsorted(b, at, side="right")) - 1
    if i >= b.size - 1:  # at == b[-1]
        return float(v[-1])
    t = (at - b[i]) / (b[i + 1] - b[i])
    return float(v[i] + t * (v[i + 1] - v[i])) if t else float(v[i])


def accuracy_at(budgets: ArrayLike, acc: ArrayLike, budget: float) -> float:
    """Accuracy of the piecewise-linear curve at ``budget`` (``docs/design.md`` "Metrics").

    Project definition (the paper's is not public). ``ValueError`` if ``budget`` lies outside
    ``[budgets[0], budgets[-1]]``: the curve is never extrapolated.
    """
    b, a = _curve(budgets, acc)
    return _interp(b, a, float(budget), "budget")


def budget_to_reach(budgets: ArrayLike, acc: ArrayLike, target: float) -> float:
    """The first budget at which the piecewise-linear curve reaches ``target`` accuracy.

    Project definition (``docs/design.md`` "Metrics"; the paper's is not public): ``budgets[0]`` if
    ``acc[0] >= target`` (no extrapolation below the first budget); otherwise the point inside
    the first segment whose end reaches ``target``, by linear interpolation; NaN if the curve
    never reaches it.
    """
    b, a = _curve(budgets, acc)
    target = float(target)
    if math.isnan(target):
        raise ValueError("target accuracy is NaN")
    if a[0] >= target:
        return float(b[0])
    for i in range(1, b.size):
        if a[i] >= target:  # a[i - 1] < target <= a[i], so the segment rises
            t = (target - a[i - 1]) / (a[i] - a[i - 1])
            return float(b[i - 1] + t * (b[i] - b[i - 1]))
    return math.nan


def sample_saving_ratio(
    budgets: ArrayLike,
    acc: ArrayLike,
    random_budgets: ArrayLike,
    random_acc: ArrayLike,
    reference_budget: float | None = None,
) -> float:
    """Sample-saving ratio of a curve against the random baseline (``docs/design.md`` "Metrics").

    Project definition (the paper's formula is not public): ``a*`` is the random curve
    (piecewise linear; pass the seed-mean) at the reference budget ``B``; ``n`` is
    :func:`budget_to_reach` of the method's curve for ``a*``; ``SSR = 1 - n / B``. NaN when the
    curve never reaches ``a*`` (never extrapolated). Negative when the method needs more labels
    than random.

    Args:
        budgets, acc: the method's curve (one seed).
        random_budgets, random_acc: the random baseline's curve.
        reference_budget: ``B``; default the method's last budget (the grid's last budget, as
            both curves share the schedule). Must lie inside the random curve's budget range.
    """
    b, a = _curve(budgets, acc)
    rb, ra = _curve(random_budgets, random_acc, name="random_acc")
    ref = float(b[-1]) if reference_budget is None else float(reference_budget)
    if not math.isfinite(ref) or ref <= 0:
        raise ValueError(f"reference_budget must be a positive finite number, got {ref!r}")
    target = _interp(rb, ra, ref, "reference_budget")
    n = budget_to_reach(b, a, target)
    return 1.0 - n / ref  # NaN propagates when never reached


def area_under_budget_curve(budgets: ArrayLike, acc: ArrayLike) -> float:
    """Normalised area under the curve: the trapezoidal area divided by the budget range.

    Project definition (``docs/design.md`` "Metrics"): the mean accuracy over
    ``[budgets[0], budgets[-1]]`` of the piecewise-linear curve; ``acc[0]`` for a single budget.
    """
    b, a = _curve(budgets, acc)
    if b.size == 1:
        return float(a[0])
    area = float(np.sum(np.diff(b) * (a[1:] + a[:-1]) / 2.0))
    return area / float(b[-1] - b[0])


def interpolate_cumulative(budgets: ArrayLike, values: ArrayLike, at: float) -> float:
    """A cumulative quantity (e.g. compute-hours) interpolated linearly at budget ``at``.

    Project definition (``docs/design.md`` "Metrics": compute-hours between two budgets are
    interpolated linearly), used for costs at the fractional budget ``n`` of the sample-saving
    ratio. NaN in gives NaN out: ``at`` NaN (SSR undefined) or a NaN value at an end of the
    segment used. ``ValueError`` if ``at`` is outside ``[budgets[0], budgets[-1]]``.
    """
    b, v = _curve(budgets, values, name="values", allow_nan=True)
    at = float(at)
    if math.isnan(at):
        return math.nan
    return _interp(b, v, at, "at")


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1) and count of the finite ``values``.

    Project convention for table cells (mean ± std over seeds, with the number of seeds that
    reached the target, ``docs/design.md`` "Metrics"): NaN and infinite values are left out; the std
    of a single value is 0.0; no finite value gives ``(nan, nan, 0)``.
    """
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return math.nan, math.nan, 0
    std = float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0
    return float(np.mean(finite)), std, int(finite.size)
