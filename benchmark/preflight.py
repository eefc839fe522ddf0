"""Preflight: everything a grid needs, checked before anything is submitted.

A grid of hundreds of GPU jobs that fails in every job because a checkpoint path is wrong
wastes a queue slot per job and hides the cause in hundreds of logs. :func:`preflight` checks,
on the submitting machine and within seconds when something is absent: every dataset (loaded
from the grid's ``data_root``, so its files and options are checked, and its pool must fit the
last budget), the backbone (its checkpoint file is read and mapped strictly onto the network,
so a file in the wrong format is caught here too), replayed order files, the tracking URI
(reachable) and what the executor itself needs (:meth:`Executor.tracking_problems`,
:meth:`Executor.problems`: for SLURM no SQLite file unless allowed, ``sbatch`` on this machine,
the partitions known to it). This is the one place a grid's data is read before a run. Each
problem names the missing item, the resolved path where it was looked for, and what to
download or configure. ``asvp-bench run`` (and so
``make replicate-table2``) stops with all of them and submits nothing.
"""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asvp.data import DatasetNotFoundError, load_dataset
from asvp.models.backbones import CheckpointFormatError, CheckpointNotFoundError, load_backbone
from asvp.strategies.replay import REPLAY, replayed_order
from benchmark.executors.base import Problem
from benchmark.executors.registry import make_executor

if TYPE_CHECKING:
    from benchmark.executors.settings import ExecutorSettings
    from benchmark.grid import DatasetSpec, Grid

__all__ = ["PreflightReport", "Problem", "preflight", "with_kind"]


@dataclass(frozen=True)
class PreflightReport:
    """The problems found, and notes that do not stop a run (the device cells will use)."""

    problems: list[Problem]
    notes: list[str]


def preflight(
    grid: Grid, executor: ExecutorSettings, tracking_uri: str, allow_sqlite: bool
) -> PreflightReport:
    """Check data, checkpoint, order files, tracking and executor for ``grid``; what the
    executor needs (its tracking store, its scheduler) is the executor's to say."""
    runner = make_executor(executor.kind, grid, executor)
    problems, pool_sizes = _data_problems(grid)
    problems += _backbone_problems(grid) + _order_problems(grid, pool_sizes)
    problems += runner.tracking_problems(tracking_uri, allow_sqlite) or _server_problems(
        tracking_uri
    )
    problems += runner.problems()
    return PreflightReport(problems, runner.notes())


def _data_problems(grid: Grid) -> tuple[list[Problem], dict[str, int]]:
    """What is wrong with each dataset (absent, unreadable, a pool smaller than its last
    budget), and the pool size of each dataset that could be read, by its label."""
    problems, pool_sizes = [], {}
    for spec in grid.datasets:
        try:
            split = load_dataset(
                spec.name, root=grid.data_root, download=grid.download, **spec.options
            )
        except DatasetNotFoundError as error:
            problems.append(Problem(_dataset(spec), str(error.path), error.remedy))
            continue
        except (OSError, ValueError, TypeError) as error:
            where = str(Path(grid.data_root).resolve())
            problems.append(
                Problem(f"{_dataset(spec)} cannot be read: {error}", where, "fix the data")
            )
            continue
        pool_sizes[spec.label] = len(split.pool)
        if spec.budgets[-1] > len(split.pool):
            problems.append(
                Problem(
                    f"{_dataset(spec)}: last budget {spec.budgets[-1]} exceeds its pool of "
                    f"{len(split.pool)} images",
                    str(grid.path),
                    "lower the budgets or complete the dataset",
                )
            )
    return problems, pool_sizes


def _dataset(spec: DatasetSpec) -> str:
    """How a problem names a dataset: ``dataset 'flowers' (imagefolder)`` when labelled."""
    kind = f" ({spec.name})" if spec.label != spec.name else ""
    return f"dataset {spec.label!r}{kind}"


def _backbone_problems(grid: Grid) -> list[Problem]:
    problems = []
    for name, given in grid.backbones():
        options = dict(given)
        if isinstance(options.get("checkpoint"), str):
            options["checkpoint"] = str(Path(options["checkpoint"]).resolve())
        try:
            load_backbone(name, **options)
        except CheckpointNotFoundError as error:
            problems.append(
                Problem(f"checkpoint of backbone {name!r}", str(error.path), error.remedy)
            )
        except CheckpointFormatError as error:
            where = str(options.get("checkpoint", grid.path))
            remedy = "use a checkpoint in the format named above, or another backbone"
            problems.append(Problem(f"checkpoint of backbone {name!r}: {error}", where, remedy))
    return problems


def _order_problems(grid: Grid, pool_sizes: dict[str, int]) -> list[Problem]:
    """What is wrong with each replayed order file: unreadable, not distinct pool indices,
    an index outside a dataset's pool (``pool_sizes``), or shorter than a last budget."""
    problems = []
    for strategy in grid.strategies:
        if strategy.name != REPLAY:
            continue
        order = strategy.options["order"]
        try:
            indices = replayed_order(order)
        except (OSError, ValueError) as error:
            remedy = "point options.order at a .npy of pool indices (e.g. the official alidx.npy)"
            problems.append(
                Problem(f"replayed order of {strategy.label!r}: {error}", order, remedy)
            )
            continue
        for dataset, size in pool_sizes.items():
            try:
                replayed_order(order, size)
            except ValueError as error:
                problems.append(
                    Problem(
                        f"replayed order of {strategy.label!r} for {dataset!r}: {error}",
                        str(Path(order).resolve()),
                        "replay a run of this dataset, with its loader's options",
                    )
                )
        short = [s.label for s in grid.datasets if len(indices) < s.budgets[-1]]
        if short:
            problems.append(
                Problem(
                    f"replayed order of {strategy.label!r} has {len(indices)} indices, fewer "
                    f"than the last budget of {', '.join(short)}",
                    str(Path(order).resolve()),
                    "replay a complete run, or lower the budgets",
                )
            )
    return problems


def _server_problems(uri: str) -> list[Problem]:
    """An MLflow server named by ``uri`` answers its health check (other stores: nothing)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                if response.status == 200:
                    return []
        except (urllib.error.URLError, OSError, ValueError):
            pass
        remedy = (
            "start the server (asvp-bench mlflow-server --store DIR --host 0.0.0.0) or point "
            "MLFLOW_TRACKING_URI / tracking.uri at a running one"
        )
        return [Problem("MLflow tracking server not reachable", uri, remedy)]
    return []


def with_kind(settings: ExecutorSettings, kind: str | None) -> ExecutorSettings:
    """``settings`` with the executor kind chosen on the command line, if any."""
    return dataclasses.replace(settings, kind=kind) if kind else settings
