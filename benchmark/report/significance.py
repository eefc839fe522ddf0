"""Which differences a table can stand behind: 95% confidence intervals over seeds and paired
comparisons between pipelines (docs/design.md, "Metrics": "Which differences are real").

Floating-point kernels differ between machines and one different pick changes every later round,
so at a few seeds the spread of a table's cells is as large as the differences it ranks. Two
tools say how large:

- :func:`confidence_interval`: the Student-t 95% interval of a mean over seeds (``n - 1``
  degrees of freedom: with 2 seeds the half-width is 12.7 standard errors, with 3 seeds 4.3).
- :func:`paired_tests`: for the same dataset, strategy and seed, two pipelines start from the
  same random labels, so their accuracies pair. At each budget after the first (the first is
  the shared random draw, chosen by no pipeline), a two-sided paired t-test over the seeds both
  pipelines finished says whether one pipeline's accuracy is higher, lower, or within noise.
  Counting those verdicts over the budgets is the pairwise "win" count of the active-learning
  literature (Ash et al., ICLR 2020, Figure 3; LabelBench): a budget counts for a pipeline
  when its paired difference is significant at 95%. The tests are per budget and not corrected
  for their number: a count is evidence, not a family-wise test.

:func:`win_counts` sums the verdicts per pair of pipelines, :func:`marker` writes one pair's
count for a table cell, :func:`within_noise` lists the pairs no budget separates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.grid import FULL_DATA, RANDOM
from benchmark.report.curves import CellCurve

CONFIDENCE = 0.95
"""The level of every interval and test of the report (two-sided)."""

REFERENCE_FAMILIES = ("svpp", "standard")
"""The pipelines every other pipeline is compared with in Table 2's marker columns (the paper's
two baselines of ASVP: SVPp, and standard AL with the fine-tuned model)."""

BETTER, WORSE, TIE, UNTESTED = "better", "worse", "within noise", "untested"
"""A budget's verdict: significantly higher or lower accuracy, no significant difference, or
fewer than two paired seeds (no test possible)."""

PAIRED_COLUMNS = (
    "dataset",
    "strategy",
    "pipeline",
    "against",
    "budget",
    "seeds",
    "mean_difference",
    "p_value",
    "verdict",
)
"""The columns of :func:`paired_tests`: one row per pair of pipelines and budget;
``mean_difference`` = mean over paired seeds of ``pipeline``'s accuracy - ``against``'s."""


def confidence_interval(values: Iterable[float]) -> tuple[float, float] | None:
    """The :data:`CONFIDENCE` Student-t interval of the mean of the finite ``values`` (those
    that reached, for SSR); None with fewer than two (no spread to estimate)."""
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    finite = arr[np.isfinite(arr)]
    if finite.size < 2:
        return None
    mean = float(np.mean(finite))
    half = _t_critical(finite.size - 1) * float(np.std(finite, ddof=1)) / math.sqrt(finite.size)
    return mean - half, mean + half


def _t_critical(degrees: int) -> float:
    """The two-sided :data:`CONFIDENCE` critical value of Student's t."""
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, degrees))


@dataclass(frozen=True)
class PairedTest:
    """One budget's paired t-test of two pipelines' accuracies over their shared seeds."""

    budget: int
    seeds: int
    mean_difference: float
    p_value: float

    @property
    def verdict(self) -> str:
        """:data:`BETTER`, :data:`WORSE`, :data:`TIE` or :data:`UNTESTED` (one seed)."""
        if self.seeds < 2:
            return UNTESTED
        if self.p_value >= 1 - CONFIDENCE:
            return TIE
        return BETTER if self.mean_difference > 0 else WORSE


def paired_test(differences: Sequence[float], budget: int) -> PairedTest:
    """The two-sided paired t-test of ``differences`` (one per seed) against zero.

    Equal differences on every seed have no spread: a test of them is decisive (p = 0) unless
    they are all zero (p = 1), which is what the t statistic's limit gives."""
    diffs = np.asarray(differences, dtype=np.float64)
    mean = float(np.mean(diffs))
    if diffs.size < 2:
        return PairedTest(budget, int(diffs.size), mean, math.nan)
    spread = float(np.std(diffs, ddof=1))
    if spread == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        t = mean / (spread / math.sqrt(diffs.size))
        p_value = float(2 * stats.t.sf(abs(t), diffs.size - 1))
    return PairedTest(budget, int(diffs.size), mean, p_value)


def _compare(mine: list[CellCurve], theirs: list[CellCurve]) -> list[PairedTest]:
    """The paired tests of ``mine`` against ``theirs`` at every shared budget after the first,
    over the seeds both finished."""
    by_seed = {c.cell.config.seed: c for c in theirs}
    pairs = [(c, by_seed[c.cell.config.seed]) for c in mine if c.cell.config.seed in by_seed]
    if not pairs:
        return []
    shared = set.intersection(*(set(a.budgets) & set(b.budgets) for a, b in pairs))
    first = min(min(a.budgets[0], b.budgets[0]) for a, b in pairs)
    tests = []
    for budget in sorted(b for b in shared if b > first):
        diffs = [_acc_at(a, budget) - _acc_at(b, budget) for a, b in pairs]
        tests.append(paired_test(diffs, int(budget)))
    return tests


def _acc_at(curve: CellCurve, budget: int) -> float:
    return float(curve.acc[list(curve.budgets).index(budget)])


def paired_tests(curves: Sequence[CellCurve]) -> pd.DataFrame:
    """Every ordered pair of selecting pipelines (not the random baseline, not full data) run
    with the same dataset and strategy, tested budget by budget (:data:`PAIRED_COLUMNS`)."""
    groups: dict[tuple[str, str, str], list[CellCurve]] = {}
    for curve in curves:
        if curve.cell.config.pipeline in (RANDOM, FULL_DATA):
            continue
        key = (curve.cell.dataset_label, curve.cell.strategy_label, curve.cell.pipeline_label)
        groups.setdefault(key, []).append(curve)
    rows = []
    for mine, theirs in permutations(groups, 2):
        if mine[:2] != theirs[:2]:  # another dataset or strategy
            continue
        dataset, strategy, pipeline = mine
        for test in _compare(groups[mine], groups[theirs]):
            rows.append(
                {
                    "dataset": dataset,
                    "strategy": strategy,
                    "pipeline": pipeline,
                    "against": theirs[2],
                    "budget": test.budget,
                    "seeds": test.seeds,
                    "mean_difference": test.mean_difference,
                    "p_value": test.p_value,
                    "verdict": test.verdict,
                }
            )
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


WIN_COLUMNS = ("better", "worse", "tied", "budgets", "seeds")
"""The counts :func:`win_counts` gives per pair: budgets with a significantly higher, lower and
not significantly different accuracy, budgets compared, and the fewest paired seeds of any."""


def win_counts(paired: pd.DataFrame, by: Sequence[str] = ("dataset", "strategy")) -> pd.DataFrame:
    """The verdicts of :func:`paired_tests` counted per ``by`` columns x pipeline x against
    (:data:`WIN_COLUMNS`); ``by=("dataset",)`` sums over the strategies too."""
    keys = [*by, "pipeline", "against"]
    if paired.empty:
        return pd.DataFrame(columns=[*keys, *WIN_COLUMNS])
    verdict = paired["verdict"]
    counted = paired.assign(
        better=verdict == BETTER, worse=verdict == WORSE, tied=verdict == TIE, budgets=1
    )
    sums = counted.groupby(keys, sort=False)[["better", "worse", "tied", "budgets"]].sum()
    fewest = counted.groupby(keys, sort=False)["seeds"].min()
    return sums.join(fewest).reset_index()


def marker(better: int, worse: int, budgets: int, seeds: int) -> str:
    """One pair's count in a table cell: ``▲ k/L`` (higher accuracy at k of L budgets),
    ``▼ k/L`` (lower), both when both, ``≈ 0/L`` when no budget differs (within noise);
    ``n/a (1 seed)`` when no test was possible."""
    if seeds < 2:
        return f"n/a ({seeds} seed)"
    parts = [f"▲ {better}/{budgets}"] * (better > 0) + [f"▼ {worse}/{budgets}"] * (worse > 0)
    return " ".join(parts) or f"≈ 0/{budgets}"


def within_noise(counts: pd.DataFrame) -> list[str]:
    """Per dataset and strategy of :func:`win_counts`, the tested pairs of pipelines no budget
    separates, each unordered pair once: ``"<dataset> <strategy>: a vs b, a vs c"``."""
    pairs: dict[tuple[str, str], list[str]] = {}
    seen = set()
    for row in counts.itertuples(index=False):
        pair = (row.dataset, row.strategy, frozenset((row.pipeline, row.against)))
        if row.seeds < 2 or row.better or row.worse or pair in seen:
            continue
        seen.add(pair)
        pairs.setdefault((row.dataset, row.strategy), []).append(f"{row.pipeline} vs {row.against}")
    return [
        f"{dataset} {strategy}: {', '.join(found)}" for (dataset, strategy), found in pairs.items()
    ]
