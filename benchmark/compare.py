"""Line up the finished cells of one grid in two MLflow stores (``asvp-bench compare``): per
cell, whether both runs made the same picks and the same test-accuracy curve, and where not,
the first round whose selection differs and the largest curve difference.

The tool for numbers that differ from ours or from a colleague's: floating-point kernels differ
between CPU models and GPUs, one different pick changes every later round, so the first
differing round says where two runs parted, and the curve difference says by how much. Cells
are matched by run key (:mod:`benchmark.grid`); the runs are read by
:func:`benchmark.tracking.finished_cell_runs`, so this module never talks to MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RoundPicks:
    """One round's selection: its index, the labels it was evaluated at (MLflow step) and the
    pool indices it picked, in pick order."""

    round: int
    labels: int
    selected: tuple[int, ...]


@dataclass(frozen=True)
class CellRun:
    """What a finished run of a cell holds for comparison: every round's picks, in round
    order, and its test accuracy per labels used."""

    run_name: str
    rounds: tuple[RoundPicks, ...]
    test_acc: dict[int, float]


@dataclass(frozen=True)
class CellDifference:
    """How the runs of one cell in stores A and B compare. ``first_round``: the first round
    whose picks differ (None: every round picked the same); ``largest_gap``: the largest
    ``|acc A - acc B|`` over the labels both curves have, with its labels (None: the curves
    are bit-identical)."""

    run_key: str
    run_name: str
    first_round: RoundPicks | None
    picks_differing: int
    same_picks_reordered: bool
    largest_gap: tuple[float, int] | None
    labels_in_one_curve: tuple[int, ...]

    @property
    def identical(self) -> bool:
        return (
            self.first_round is None and self.largest_gap is None and not self.labels_in_one_curve
        )


@dataclass(frozen=True)
class Comparison:
    """Every cell of a grid in stores A and B: those in both, compared, and those finished in
    only one (run names, sorted)."""

    cells: tuple[CellDifference, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]

    @property
    def differing(self) -> list[CellDifference]:
        return [cell for cell in self.cells if not cell.identical]

    @property
    def exit_status(self) -> int:
        """0 when every cell found in both stores is identical, 1 when any differs (cells in
        only one store do not count: they have nothing to differ from)."""
        return 1 if self.differing else 0


def compare_stores(a: dict[str, CellRun], b: dict[str, CellRun]) -> Comparison:
    """Compare the runs of ``a`` and ``b`` (each: run key -> finished run) that share a run key;
    list the others as found in one store only."""
    shared = sorted(a.keys() & b.keys(), key=lambda key: a[key].run_name)
    return Comparison(
        cells=tuple(compare_cell(key, a[key], b[key]) for key in shared),
        only_in_a=tuple(sorted(a[key].run_name for key in a.keys() - b.keys())),
        only_in_b=tuple(sorted(b[key].run_name for key in b.keys() - a.keys())),
    )


def compare_cell(run_key: str, a: CellRun, b: CellRun) -> CellDifference:
    """How two runs of the cell ``run_key`` differ: first round whose picks differ (a round
    missing from one run counts as differing) and the largest test-accuracy gap."""
    first, differing, reordered = None, 0, False
    for index in range(max(len(a.rounds), len(b.rounds))):
        ours = a.rounds[index] if index < len(a.rounds) else None
        theirs = b.rounds[index] if index < len(b.rounds) else None
        if ours is not None and theirs is not None and ours.selected == theirs.selected:
            continue
        first = ours or theirs
        if ours is not None and theirs is not None:
            differing = len(set(ours.selected) - set(theirs.selected))
            reordered = differing == 0
        break
    return CellDifference(
        run_key=run_key,
        run_name=a.run_name,
        first_round=first,
        picks_differing=differing,
        same_picks_reordered=reordered,
        largest_gap=_largest_gap(a.test_acc, b.test_acc),
        labels_in_one_curve=tuple(sorted(a.test_acc.keys() ^ b.test_acc.keys())),
    )


def _largest_gap(a: dict[int, float], b: dict[int, float]) -> tuple[float, int] | None:
    """The largest ``|a - b|`` over the labels both have, with its labels (the fewest labels
    among equal gaps); None when every shared value is the same."""
    gaps = [(_gap(a[labels], b[labels]), labels) for labels in sorted(a.keys() & b.keys())]
    gaps = [gap for gap in gaps if gap[0] > 0]
    return max(gaps, key=lambda gap: gap[0]) if gaps else None


def _gap(x: float, y: float) -> float:
    """``|x - y|``; 0 when both are NaN (the same failed evaluation), infinite when one is."""
    if math.isnan(x) or math.isnan(y):
        return 0.0 if math.isnan(x) and math.isnan(y) else math.inf
    return abs(x - y)


def describe(comparison: Comparison) -> list[str]:
    """The lines ``compare`` prints: one per cell (identical, how it differs, or in which store
    alone it is found) and a summary line."""
    lines = []
    for cell in comparison.cells:
        lines.append(f"  {'identical' if cell.identical else 'differs':10s} {cell.run_name}")
        lines += [f"      {detail}" for detail in _details(cell)]
    lines += [f"  {'only in A':10s} {name}" for name in comparison.only_in_a]
    lines += [f"  {'only in B':10s} {name}" for name in comparison.only_in_b]
    missing = len(comparison.only_in_a) + len(comparison.only_in_b)
    differing = len(comparison.differing)
    lines.append(
        f"{len(comparison.cells) - differing} identical, {differing} differ, {missing} missing"
    )
    return lines


def _details(cell: CellDifference) -> list[str]:
    """What differs in one cell, one line per kind of difference."""
    details = []
    first = cell.first_round
    if first is not None:
        if cell.same_picks_reordered:
            how = "the same picks in another order"
        elif cell.picks_differing:
            how = f"{cell.picks_differing} of {len(first.selected)} picks differ"
        else:
            how = "the round is in one store only"
        details.append(
            f"first differing selection: round {first.round} ({first.labels} labels): {how}"
        )
    elif not cell.identical:
        details.append("every round's selection is identical")
    if cell.largest_gap is not None:
        gap, labels = cell.largest_gap
        details.append(f"test_acc: largest |A - B| = {gap:.4f} at {labels} labels")
    if cell.labels_in_one_curve:
        listed = ", ".join(map(str, cell.labels_in_one_curve))
        details.append(f"test_acc logged in one store only at labels {listed}")
    return details
