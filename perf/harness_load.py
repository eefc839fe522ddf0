"""A load generator for the harness itself: every cell of a grid gets a finished MLflow run as a
real cell leaves it, without training anything (``python -m perf.harness_load GRID --tracking-uri
URI``; :mod:`perf.harness_scale` times the CLI against such stores).

Faithful by construction: each cell goes through the project's own tracking code, as the driver
and the job would (:func:`benchmark.tracking.open_run` with the run key the grid expands to,
:func:`~benchmark.tracking.record_submission` as the local executor tags it, then
:class:`~benchmark.tracking.CellLogger`: its attempt, environment, every round's metrics and
``rounds/round_<r>.json``, ``curve.csv``, ``labeled_order.json``, the finishing tags). Only the
round records are made up (:func:`fake_result`): the phases each pipeline times in each round
(as a real tiny cell of each pipeline logs them; ``tests/test_harness_scale.py`` compares the
two), a saturating accuracy curve, selections, LogME readings that trigger one update, and
selection discrepancies.

Fast: :class:`BufferedClient` keeps a run's metrics, params, tags and artifacts until the run
is terminated, then writes them in a few ``log_batch`` calls and one artifact upload, instead of
the dozens of calls a cell makes while it runs (MLflow's per-request limits respected).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import FileInfo, Metric, Param, Run, RunTag
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.tracking import MlflowClient

from asvp.discrepancy import SelectionDiscrepancy
from asvp.finetune_scale import FineTuneStats
from asvp.pipelines import CellResult
from asvp.pipelines.records import round_record
from asvp.trigger import UpdateDecision
from benchmark.grid import FULL_DATA, Cell, Grid, expand_cells, load_grid
from benchmark.tracking import CellLogger, experiment_id, open_run, record_submission, use_store

MAX_METRICS = 1000  # MLflow's limits per log_batch request
MAX_PARAMS_TAGS = 100
SERVED = "mlflow-artifacts:"  # the scheme of artifacts a server proxies
QUIET = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
WEIGHTS_SHA256 = "0" * 64  # the pre-trained weights' digest a real cell records


@dataclass
class _Pending:
    """What a run has logged that is not written yet."""

    metrics: list[Metric] = field(default_factory=list)
    params: dict[str, Param] = field(default_factory=dict)
    tags: dict[str, RunTag] = field(default_factory=dict)


class BufferedClient(MlflowClient):
    """An MLflow client that holds a run's writes until :meth:`set_terminated`, then writes them
    in bulk; statuses before the end are not written (the run goes from created to terminated).
    Artifacts are staged under ``staging/<run id>`` and uploaded in one ``log_artifacts``."""

    def __init__(
        self, tracking_uri: str | None, staging: Path, artifacts: Path | None = None
    ) -> None:
        super().__init__(tracking_uri)
        self._staging = Path(staging)
        self._artifacts = artifacts
        self._pending: dict[str, _Pending] = {}
        self._artifact_uris: dict[str, str] = {}

    def create_run(self, experiment_id: str, *args: object, **kwargs: object) -> Run:
        run = super().create_run(experiment_id, *args, **kwargs)
        self._artifact_uris[run.info.run_id] = run.info.artifact_uri
        return run

    def _of(self, run_id: str) -> _Pending:
        return self._pending.setdefault(run_id, _Pending())

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        if name is not None:
            super().update_run(run_id, name=name)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        synchronous: bool | None = None,
    ) -> None:
        pending = self._of(run_id)
        pending.metrics.extend(metrics)
        pending.params.update({param.key: param for param in params})
        pending.tags.update({tag.key: tag for tag in tags})

    def set_tag(self, run_id: str, key: str, value: object, synchronous: bool | None = None):
        self._of(run_id).tags[key] = RunTag(key, str(value))

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None):
        folder = self._staging / run_id / (artifact_path or "")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(local_path, folder)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        folder = self._staging / run_id / (path or "")
        if not folder.is_dir():
            return []
        base = self._staging / run_id
        return [
            FileInfo(str(item.relative_to(base)), item.is_dir(), item.stat().st_size)
            for item in sorted(folder.iterdir())
        ]

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        pending = self._pending.pop(run_id, _Pending())
        for metrics, params, tags in _batches(pending):
            super().log_batch(run_id, metrics=metrics, params=params, tags=tags)
        folder = self._staging / run_id
        if folder.is_dir():
            self._upload(run_id, folder)
            shutil.rmtree(folder)
        super().set_terminated(run_id, status=status, end_time=end_time)

    def _upload(self, run_id: str, folder: Path) -> None:
        """The staged artifacts to the run's artifact location: through the store, or for a
        server's ``mlflow-artifacts:`` location straight into the folder it serves them from
        (``artifacts``), with MLflow's local artifact repository."""
        uri = self._artifact_uris.get(run_id, "")
        if self._artifacts is None or not uri.startswith(SERVED):
            super().log_artifacts(run_id, str(folder))
            return
        target = self._artifacts / uri.removeprefix(SERVED).lstrip("/")
        LocalArtifactRepository(str(target)).log_artifacts(str(folder))


def _batches(pending: _Pending) -> Iterable[tuple[list[Metric], list[Param], list[RunTag]]]:
    """The pending values in requests within MLflow's limits."""
    metrics, params, tags = (
        pending.metrics,
        list(pending.params.values()),
        list(pending.tags.values()),
    )
    while metrics or params or tags:
        yield metrics[:MAX_METRICS], params[:MAX_PARAMS_TAGS], tags[:MAX_PARAMS_TAGS]
        metrics, params, tags = (
            metrics[MAX_METRICS:],
            params[MAX_PARAMS_TAGS:],
            tags[MAX_PARAMS_TAGS:],
        )


def _phases(cell: Cell, index: int, last: bool, updated: bool) -> tuple[str, ...]:
    """The phases a real cell of this pipeline times in round ``index`` (the last round only
    fine-tunes and evaluates; ``updated``: the features are updated in this round)."""
    config = cell.config
    if config.pipeline == FULL_DATA:
        return ("finetune", "test_eval")
    proxy = config.pipeline in ("svpp", "asvp")
    indicator = ("indicator",) if config.pipeline == "asvp" else ()
    if last:
        return (*indicator, "finetune", "test_eval")
    if config.strategy == "random":
        return ("finetune", "test_eval", "select")
    if not proxy:
        return ("finetune", "test_eval", "pool_score", "select")
    first = ("extract_features",) if index == 0 else ()
    update = ("update_extract",) if updated else ()
    steps = ("finetune", "test_eval", *update, "proxy_train", "pool_score", "select", "analysis")
    return (*first, *indicator, *steps)


def _pool_size(cell: Cell) -> int:
    """The pool size the fake selections are drawn from: the dataset's ``pool_size`` option."""
    size = cell.config.dataset_options.get("pool_size")
    if not isinstance(size, int) or size < 1:
        raise ValueError(
            f"{cell.run_name}: dataset option pool_size is {size!r}; fake runs need a positive "
            "pool_size in the dataset's options"
        )
    return size


def _budgets(cell: Cell) -> list[int]:
    """The labels of each round: the budgets, or the whole pool for a full-data cell."""
    config = cell.config
    return [_pool_size(cell)] if config.pipeline == FULL_DATA else list(config.budgets)


def fake_result(cell: Cell, seed: int) -> CellResult:
    """Made-up round records of a finished ``cell`` in the shape its pipeline logs them: an
    accuracy curve rising towards 0.9, selections, and for ASVP one feature update in its second
    round, when its indicator falls below 90% of the first reading (the grid's LogME rule)."""
    rng = np.random.default_rng(seed)
    config = cell.config
    budgets = _budgets(cell)
    pool = _pool_size(cell)
    order = rng.permutation(pool)
    proxy = config.pipeline in ("svpp", "asvp")
    start_ms = int(time.time() * 1000)
    rounds, version, reference = [], 0, math.nan
    for index, labels in enumerate(budgets):
        last = index == len(budgets) - 1
        decision = None
        if config.pipeline == "asvp":  # LogME falls 12% a round: the update comes in round 1
            reading = 30.0 * (1 - 0.12 * index) + float(rng.normal(0, 0.1))
            reference = reading if index == 0 else reference
            update = version == 0 and reading < 0.9 * reference
            reason = f"indicator: {'update' if update else 'keep'}"
            decision = UpdateDecision(reading, reference, update, reason)
        updated = decision is not None and decision.update
        version += int(updated)
        method = config.train_method
        if method == "auto":
            method = "ft" if version else "lpft"
        seconds = {p: float(rng.uniform(0.1, 5.0)) for p in _phases(cell, index, last, updated)}
        chosen = order[labels : budgets[index + 1]] if not last else order[:0]
        record = round_record(
            round_index=index,
            labels_used=labels,
            test_acc=float(0.9 - 0.6 * math.exp(-labels / 80) + rng.normal(0, 0.01)),
            method=method,
            seconds=seconds,
            finetune_is_sampling=config.pipeline == "standard" and config.strategy != "random",
            selected=chosen,
            feature_version=version,
            decision=decision,
            finetune=FineTuneStats(labels * config.finetune.epochs, seconds["finetune"]),
        )
        record.finished_at_ms = start_ms + 1000 * index
        if proxy and not last:
            size = len(chosen)
            both = int(rng.integers(0, size + 1))
            record.model_selected = rng.choice(pool, size, replace=False).tolist()
            record.discrepancy = SelectionDiscrepancy(
                both,
                size - both,
                size - both,
                both // 2,
                (size - both) // 2,
                (size - both) // 3,
                both / size if size else math.nan,
            )
        rounds.append(record)
    return CellResult(rounds, order[: budgets[-1]].tolist(), 0, {}, WEIGHTS_SHA256)


def log_fake_cell(client: MlflowClient, grid: Grid, cell: Cell, seed: int) -> str:
    """Log one finished cell as the driver and the local executor's job would; its run id."""
    run_id = open_run(client, grid.name, cell, None, fresh=False)
    log_path = grid.cell_state_dir.resolve() / "logs" / f"{cell.run_key}.log"
    record_submission(client, run_id, "local", None, str(log_path))
    logger = CellLogger(client, grid.name, run_id, "cpu")
    result = fake_result(cell, seed)
    for record in result.rounds:
        logger.log_round(record)
    logger.finish(result)
    return run_id


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set while inside, restored after."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def generate(
    grid_path: Path,
    tracking_uri: str,
    cells: Sequence[Cell] | None = None,
    workers: int = 8,
    server_store: Path | None = None,
) -> int:
    """Log a finished fake run for every cell of the grid (or ``cells`` of it) into the store at
    ``tracking_uri``, ``workers`` cells at a time; return how many were logged.

    ``server_store``: the folder of the local ``asvp-bench mlflow-server`` at ``tracking_uri``
    (:class:`benchmark.mlflow_server.ServerSettings`): the grid's experiment is made through
    the server (so its runs' artifacts are the server's), the runs are written straight into
    its SQLite file and artifact folder, one cell at a time: the same rows and files, without
    two dozen HTTP requests per cell through one server process.
    """
    grid = load_grid(grid_path)
    chosen = expand_cells(grid) if cells is None else list(cells)
    use_store(tracking_uri)
    quiet = {QUIET: "true"}  # no "View run" line (and no lookup of the run) per finished run
    with _environment(quiet), tempfile.TemporaryDirectory(prefix="harness-load-") as staging:
        if server_store is None:
            client = BufferedClient(tracking_uri, Path(staging))
        else:
            experiment_id(MlflowClient(tracking_uri), grid.name)
            direct = f"sqlite:///{Path(server_store) / 'mlflow.db'}"
            client = BufferedClient(direct, Path(staging), Path(server_store) / "artifacts")
            workers = 1  # one SQLite writer
        with ThreadPoolExecutor(workers) as pool:  # cells are independent: requests overlap
            runs = pool.map(
                lambda item: log_fake_cell(client, grid, item[1], item[0]), enumerate(chosen)
            )
            return len(list(runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.harness_load", description=__doc__)
    parser.add_argument("grid", type=Path, help="the grid file whose cells get fake runs")
    parser.add_argument("--tracking-uri", required=True, help="the store to write into")
    parser.add_argument(
        "--server-store",
        type=Path,
        help="the folder of the local server at --tracking-uri: write its files directly",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    count = generate(args.grid, args.tracking_uri, server_store=args.server_store)
    print(f"logged {count} finished fake cells in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
