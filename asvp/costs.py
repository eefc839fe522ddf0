"""Total cost of reaching an accuracy: labelling plus the compute that made the selections.

docs/design.md, "Metrics and costs". The paper's formulas are not public; these definitions are
this project's, chosen to match the caption of its Figure 2. For a cell that needs ``n`` labels
(fractional: read off its piecewise-linear accuracy curve):

    total cost = n x label price x reviews per label
               + sampling device-hours up to n x price per device-hour

Sampling compute is everything spent to make the selections (feature extraction, feature
updates and the fine-tune they use, proxy training, pool scoring, selection, and standard AL's
per-round fine-tuning); fine-tuning done only to measure accuracy is excluded. Device-hours
between two budgets are interpolated linearly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asvp.metrics import interpolate_cumulative


def cumulative_sampling_hours(sampling_seconds: Sequence[float], devices: int = 1) -> np.ndarray:
    """Device-hours spent on sampling before each evaluation budget was reached.

    ``sampling_seconds[r]`` is what round ``r`` spent (at budget ``r``) to select the labels of
    budget ``r + 1``; so the value at budget 0 is 0 and at budget ``k`` the sum of rounds < k.
    """
    seconds = np.asarray(sampling_seconds, dtype=np.float64)
    before = np.concatenate([[0.0], np.cumsum(seconds)[:-1]])
    return before * devices / 3600.0


def total_cost(
    labels_needed: float,
    budgets: Sequence[float],
    cumulative_hours: Sequence[float],
    label_price: float,
    reviews_per_label: int,
    device_hour_price: float,
) -> float:
    """Labelling plus sampling-compute cost (USD) of ``labels_needed`` labels; NaN stays NaN."""
    if np.isnan(labels_needed):
        return float("nan")
    hours = interpolate_cumulative(budgets, cumulative_hours, labels_needed)
    return labels_needed * label_price * reviews_per_label + hours * device_hour_price
