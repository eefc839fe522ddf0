"""A metric's values per step, of one run or of many at once.

Reading a report's curves one ``get_metric_history`` request per run and metric costs thousands
of requests at a thousand cells. :func:`metric_histories` asks for one metric of up to 100 runs
per request instead: MLflow's SQL store answers ``get_metric_history_bulk`` in one query, and a
tracking server the same through its ``metrics/get-history-bulk`` route (what its UI charts
many runs with; at most 100 run ids and 25,000 values a request). Any other store, or an answer
that may be cut at the limit, is read one run at a time. Either way a step logged more than
once keeps its latest value (:func:`metric_by_step`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from mlflow.entities import Metric, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from benchmark import metric_names as names

BULK_RUNS = 100
"""Run ids per bulk request (the tracking server's limit)."""
BULK_VALUES = 25_000
"""Values per bulk request (the tracking server's limit): an answer this long may be cut."""
BULK_ROUTE = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"

Reader = Callable[[Sequence[str], str], list[tuple[str, Metric]] | None]


def by_step(history: Iterable[Metric]) -> dict[int, float]:
    """Values per step; where a step was logged more than once (a rerun of a round, a
    re-report), the latest value wins."""
    return {m.step: m.value for m in sorted(history, key=lambda m: m.timestamp)}


def metric_by_step(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    """A metric's value per step in a run (:func:`by_step`)."""
    return by_step(client.get_metric_history(run_id, metric))


def metric_histories(
    client: MlflowClient, runs: Sequence[Run], name: str
) -> dict[str, dict[int, float]]:
    """By run id, :func:`metric_by_step` of metric ``name`` (:mod:`benchmark.metric_names`) as
    each run logged it (under its section, or the flat name of runs older than the sections);
    ``{}`` for a run that never logged it. Up to :data:`BULK_RUNS` runs per request."""
    found: dict[str, dict[int, float]] = {}
    logged_as: dict[str, list[str]] = {}
    for run in runs:
        key = names.logged_name(name, run.data.metrics)
        found[run.info.run_id] = {}
        if key in run.data.metrics:
            logged_as.setdefault(key, []).append(run.info.run_id)
    read = _bulk_reader(client)
    for key, run_ids in logged_as.items():
        for start in range(0, len(run_ids), BULK_RUNS):
            chunk = run_ids[start : start + BULK_RUNS]
            found.update(_histories(client, read, chunk, key))
    return found


def _histories(
    client: MlflowClient, read: Reader | None, run_ids: Sequence[str], key: str
) -> dict[str, dict[int, float]]:
    rows = read(run_ids, key) if read is not None else None
    if rows is None or len(rows) >= BULK_VALUES:  # no bulk read here, or possibly cut short
        return {run_id: metric_by_step(client, run_id, key) for run_id in run_ids}
    grouped: dict[str, list[Metric]] = {run_id: [] for run_id in run_ids}
    for run_id, metric in rows:
        grouped[run_id].append(metric)
    return {run_id: by_step(history) for run_id, history in grouped.items()}


def _bulk_reader(client: MlflowClient) -> Reader | None:
    """How this client's store reads one metric of many runs, or None if it cannot."""
    from mlflow.store.tracking.rest_store import RestStore  # what the client imported already

    store = client._tracking_client.store  # MLflow's client exposes no bulk read of its own
    if hasattr(store, "get_metric_history_bulk"):  # the SQL store (as MLflow's server checks)

        def from_database(run_ids: Sequence[str], key: str) -> list[tuple[str, Metric]]:
            rows = store.get_metric_history_bulk(list(run_ids), key, BULK_VALUES)
            return [(row.run_id, row) for row in rows]  # each row is a Metric with its run id

        return from_database
    if isinstance(store, RestStore):

        def from_server(run_ids: Sequence[str], key: str) -> list[tuple[str, Metric]] | None:
            from mlflow.utils.rest_utils import http_request

            params = {"run_id": list(run_ids), "metric_key": key, "max_results": BULK_VALUES}
            try:
                response = http_request(store.get_host_creds(), BULK_ROUTE, "GET", params=params)
            except MlflowException:
                return None
            if response.status_code != 200:  # a server without the route: one run at a time
                return None
            return [
                (row["run_id"], Metric(row["key"], row["value"], row["timestamp"], row["step"]))
                for row in response.json().get("metrics", [])
            ]

        return from_server
    return None
