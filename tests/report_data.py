"""Synthetic finished cells for the report's tests: :class:`CellCurve` lists shaped like a real
grid's (random baseline, full-data cell, standard / svpp / asvp pipelines, several seeds and
strategies, discrepancy regions on proxy cells), built without training anything."""

from __future__ import annotations

import numpy as np

from asvp.config import CellConfig, TransformConfig
from benchmark.grid import Cell, Costs
from benchmark.report import CellCurve

BUDGETS = tuple(range(1000, 10001, 1000))
POOL = 50000
COSTS = Costs(label_price=0.8, reviews_per_label=1, device_hour={"cuda": 3.0})

# family, train method -> (label efficiency, sampling hours per round, one-off hours at round 3)
PIPELINES = {
    ("random", "ft"): (1.0, 0.0, 0.0),
    ("standard", "ft"): (1.35, 1.6, 0.0),
    ("standard", "lpft"): (1.3, 1.7, 0.0),
    ("svpp", "lpft"): (1.1, 0.01, 0.0),
    ("asvp", "auto"): (1.3, 0.01, 2.5),
}


def make_cell(
    dataset: str, family: str, method: str, strategy: str, seed: int, budgets=BUDGETS
) -> Cell:
    config = CellConfig(
        dataset=dataset,
        backbone="resnet50",
        pipeline=family,
        strategy=strategy,
        train_method=method,
        seed=seed,
        budgets=tuple(budgets),
        transform=TransformConfig(size=224),
    )
    label = f"{family}-{method}"
    return Cell(
        config=config,
        run_key=f"{dataset}-{label}-{strategy}-{seed}",
        run_name=f"{dataset}/resnet50/{label}/{strategy}/s{seed}",
        pipeline_label=label,
        strategy_label=strategy,
        dataset_label=dataset,
    )


def _accuracy(budgets: np.ndarray, efficiency: float, rng: np.random.Generator) -> np.ndarray:
    acc = 0.9 - 0.5 * np.exp(-budgets * efficiency / 4000.0)
    return np.clip(acc + rng.normal(0.0, 0.006, budgets.size), 0.0, 1.0)


def _discrepancy(budgets: np.ndarray, rng: np.random.Generator) -> dict[str, dict[int, float]]:
    regions: dict[str, dict[int, float]] = {}
    batch = 1000
    for labels in budgets[:-1]:
        both = int(rng.integers(300, 700))
        only = batch - both
        values = {
            "both": both,
            "proxy_only": only,
            "model_only": only,
            "both_proxy_correct": int(both * 0.6),
            "proxy_only_proxy_correct": int(only * 0.7),
            "model_only_proxy_correct": int(only * 0.3),
            "overlap": both / batch,
        }
        for name, value in values.items():
            regions.setdefault(name, {})[int(labels)] = float(value)
    return regions


def synthetic_curves(
    datasets=("cifar10",),
    seeds=(0, 1, 2),
    strategies=("margin", "badge"),
    full: bool = True,
    never_reaching: str | None = None,
) -> list[CellCurve]:
    """Curves of a grid with every pipeline of :data:`PIPELINES`; ``never_reaching`` (a
    strategy) makes svpp with it stay below the random baseline."""
    budgets = np.array(BUDGETS, dtype=float)
    curves = []
    for d, dataset in enumerate(datasets):
        for seed in seeds:
            rng = np.random.default_rng([d, seed])
            for (family, method), (efficiency, hours, update) in PIPELINES.items():
                for strategy in ["random"] if family == "random" else strategies:
                    if family == "svpp" and strategy == never_reaching:
                        efficiency = 0.5
                    seconds = np.full(budgets.size, hours * 3600.0)
                    seconds[3] += update * 3600.0
                    seconds[-1] = 0.0  # the last round selects nothing
                    curves.append(
                        CellCurve(
                            cell=make_cell(dataset, family, method, strategy, seed),
                            budgets=budgets,
                            acc=_accuracy(budgets, efficiency, rng),
                            sampling_seconds=seconds,
                            evaluation_seconds=np.full(budgets.size, 1800.0),
                            device="cuda",
                            updates_at="[4000]" if family == "asvp" else "",
                            discrepancy=_discrepancy(budgets, rng)
                            if family in ("svpp", "asvp")
                            else {},
                        )
                    )
            if full:
                curves.append(
                    CellCurve(
                        cell=make_cell(dataset, "full", "ft", "all", seed, budgets=()),
                        budgets=np.array([POOL]),
                        acc=np.array([0.93 + rng.normal(0.0, 0.003)]),
                        sampling_seconds=np.array([0.0]),
                        evaluation_seconds=np.array([7200.0]),
                        device="cuda",
                        updates_at="",
                        discrepancy={},
                    )
                )
    return curves


def record_finished_runs(client, grid, flat_names: bool = False) -> int:
    """Record a finished MLflow run for every cell of ``grid`` (without full-data cells) as a
    job would, through :func:`benchmark.tracking.open_run`: a synthetic curve that reaches the
    random baseline's accuracy in every seed, timings and, on proxy cells, discrepancy regions.
    ``flat_names``: under the metric names of runs logged before the sections
    (:mod:`benchmark.metric_names`). Returns the number of runs."""
    from mlflow.entities import Metric

    from benchmark import metric_names as names
    from benchmark.grid import expand_cells
    from benchmark.tracking import open_run

    cells = expand_cells(grid)
    for cell in cells:
        config = cell.config
        efficiency = PIPELINES.get((config.pipeline, config.train_method), (1.2, 0.0, 0.0))[0]
        budgets = np.array(config.budgets, dtype=float)
        shift = 0.0 if config.pipeline == "random" else 0.005 * config.seed  # all reach a*
        acc = 0.9 - 0.5 * np.exp(-budgets * 200.0 * efficiency / 4000.0) + shift
        run_id = open_run(client, grid.name, cell, None, fresh=False)
        metrics = []
        for i, labels in enumerate(config.budgets):
            values = {
                names.TEST_ACC: float(acc[i]),
                names.SAMPLING_SECONDS: 0.0 if config.pipeline == "random" else 30.0 * (i + 1),
                names.EVALUATION_SECONDS: 20.0,
            }
            if config.pipeline in ("svpp", "asvp") and i < len(config.budgets) - 1:
                batch = config.budgets[i + 1] - labels
                regions = {
                    "both": batch // 2,
                    "proxy_only": batch - batch // 2,
                    "model_only": batch - batch // 2,
                    "both_proxy_correct": 1,
                    "proxy_only_proxy_correct": 2,
                    "model_only_proxy_correct": 0,
                    "overlap": (batch // 2) / batch,
                }
                values |= {names.discrepancy(k): v for k, v in regions.items()}
            if flat_names:
                values = {names.flat_name(k): v for k, v in values.items()}
            metrics += [Metric(k, float(v), 1000 + i, labels) for k, v in values.items()]
        client.log_batch(run_id, metrics=metrics)
        client.set_tag(run_id, "device", "cpu")
        client.set_tag(run_id, "state", "finished")
        client.set_terminated(run_id, status="FINISHED")
    return len(cells)
