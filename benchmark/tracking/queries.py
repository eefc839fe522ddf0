"""Reading a grid's runs: the runs of an experiment page by page, each cell's current and finished
run, many runs' latest metric values at once, a metric's values per step, a run's round records,
and the finished cells as :mod:`benchmark.compare` lines them up (:mod:`benchmark.tracking`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence

from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from benchmark import metric_names as names
from benchmark.compare import CellRun, RoundPicks
from benchmark.tracking.artifacts import downloaded
from benchmark.tracking.histories import BULK_RUNS, metric_by_step
from benchmark.tracking.states import STATE_FINISHED, STATE_SUPERSEDED, run_state


def paged_runs(
    client: MlflowClient,
    experiment: str,
    query: str = "",
    order_by: list[str] | None = None,
    view: int = ViewType.ACTIVE_ONLY,
) -> Iterator[Run]:
    """Every run of the experiment with id ``experiment`` that ``query`` selects, in
    ``order_by`` order (None: MLflow's default, newest first), fetched a page at a time; the
    active runs, or those ``view`` (a :class:`~mlflow.entities.ViewType`) names."""
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=query,
            run_view_type=view,
            max_results=1000,
            order_by=order_by,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def experiment_runs(client: MlflowClient, experiment: str) -> list[Run]:
    """Every run of the experiment with id ``experiment``, newest first (MLflow's order)."""
    return list(paged_runs(client, experiment))


def grid_run_list(
    client: MlflowClient, grid_name: str, run_key: str | None = None
) -> Iterator[Run]:
    """Every run of a grid's experiment (of one run key if given), oldest first, paged."""
    found = client.get_experiment_by_name(grid_name)
    if found is None:
        return
    query = f"tags.run_key = '{run_key}'" if run_key else ""
    yield from paged_runs(client, found.experiment_id, query, ["attributes.start_time ASC"])


def newest_per_key(runs: Iterable[Run], keep: Callable[[Run], bool]) -> dict[str, Run]:
    """Per run key, the last of ``runs`` (given oldest first) that ``keep`` accepts."""
    newest: dict[str, Run] = {}
    for run in runs:
        if "run_key" in run.data.tags and keep(run):
            newest[run.data.tags["run_key"]] = run
    return newest


def _newest_runs(
    client: MlflowClient, grid_name: str, keep: Callable[[Run], bool]
) -> dict[str, Run]:
    """Per run key, the newest run of the grid's experiment that ``keep`` accepts."""
    return newest_per_key(grid_run_list(client, grid_name), keep)


def current_runs(client: MlflowClient, grid_name: str) -> dict[str, Run]:
    """Per run key, the run that status and resumption look at: the newest not superseded."""
    return _newest_runs(client, grid_name, lambda run: run_state(run) != STATE_SUPERSEDED)


def finished_runs(client: MlflowClient, grid_name: str) -> dict[str, Run]:
    """Per run key, the newest finished run (what reports read): a forced re-run still in
    progress does not hide the finished result it is to replace."""
    return _newest_runs(client, grid_name, lambda run: run_state(run) == STATE_FINISHED)


def quoted_ids(run_ids: Iterable[str]) -> str:
    """Run ids as the list of a search filter's ``IN (...)``."""
    return ", ".join(f"'{run_id}'" for run_id in run_ids)


def latest_metrics(client: MlflowClient, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """By run id, the run's latest metric values (``run.data.metrics``, as ``get_run`` answers),
    read a search of up to :data:`BULK_RUNS` ids at a time in the experiment of the first run
    (a report's runs are one grid's), not one ``get_run`` per run; a run not found there (of
    another experiment, or deleted) is left out."""
    if not run_ids:
        return {}
    experiment = client.get_run(run_ids[0]).info.experiment_id
    found: dict[str, dict[str, float]] = {}
    for start in range(0, len(run_ids), BULK_RUNS):
        quoted = quoted_ids(run_ids[start : start + BULK_RUNS])
        for run in paged_runs(client, experiment, f"attributes.run_id IN ({quoted})"):
            found[run.info.run_id] = dict(run.data.metrics)
    return found


def round_records(client: MlflowClient, run_id: str) -> list[dict]:
    """The run's ``rounds/round_<r>.json`` artifacts (:class:`asvp.pipelines.RoundRecord` as
    :func:`CellLogger.log_round` wrote them), in round order; [] when it has none."""
    if not client.list_artifacts(run_id, "rounds"):
        return []
    with downloaded(client, run_id, "rounds") as local:
        records = [json.loads(path.read_text()) for path in local.glob("round_*.json")]
    return sorted(records, key=lambda record: record["round"])


def run_metric(client: MlflowClient, run: Run, name: str) -> dict[int, float]:
    """:func:`metric_by_step` of metric ``name`` (:mod:`benchmark.metric_names`) as ``run``
    logged it: under its section, or under the flat name of runs logged before the sections."""
    return metric_by_step(client, run.info.run_id, names.logged_name(name, run.data.metrics))


def finished_cell_runs(client: MlflowClient, grid_name: str) -> dict[str, CellRun]:
    """Per run key, the grid's finished run (:func:`finished_runs`: the one reports read) with
    its rounds' picks and its test-accuracy curve, as :mod:`benchmark.compare` lines them up."""
    cells = {}
    for key, run in finished_runs(client, grid_name).items():
        run_id = run.info.run_id
        rounds = tuple(
            RoundPicks(record["round"], record["labels"], tuple(record["selected"]))
            for record in round_records(client, run_id)
        )
        curve = run_metric(client, run, names.TEST_ACC)
        cells[key] = CellRun(run.info.run_name, rounds, curve)
    return cells
