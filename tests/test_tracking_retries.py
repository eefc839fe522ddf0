"""Requests that MLflow's client repeats, and requests the harness need not make (issue 18).

A ``runs/create`` whose answer is lost after the server saved the run is retried by the client
and saves a second run: :func:`benchmark.tracking.open_run` must leave exactly one, the one it
returns. Checked against a real ``asvp-bench mlflow-server`` behind a proxy that drops the
first answer to ``runs/create`` once the server has handled it. The report's write-back of
per-seed metrics must log the same values as reading each run with ``get_run`` did, in fewer
requests (counted, never timed).
"""

import http.server
import string
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from report_data import COSTS, synthetic_curves

from benchmark.grid import expand_cells, load_grid
from benchmark.mlflow_server import (
    ServerSettings,
    free_port,
    start_server,
    stop_server,
    wait_until_ready,
)
from benchmark.report import log_summaries, seed_summaries
from benchmark.report import summary as summary_module
from benchmark.tracking import log_changed_values, open_run
from benchmark.tracking.runs import SUBMISSION_ID_TAG

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
READY_TIMEOUT = 180.0
CREATE_ROUTE = "/runs/create"
HOP_HEADERS = {"host", "connection", "transfer-encoding", "content-length"}


class Counting:
    """An MLflow client that counts the calls of each of its methods."""

    def __init__(self, client: MlflowClient):
        self.client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name):
        method = getattr(self.client, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted if callable(method) else method


def _dropping_proxy(target: str, dropped: list[str]) -> http.server.ThreadingHTTPServer:
    """A proxy to ``target`` that forwards everything but withholds the server's answer to the
    first ``runs/create`` (the connection closes instead), after the server handled it."""

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            request = urllib.request.Request(
                target + self.path, data=body or None, method=self.command, headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    status, answer, data = response.status, response.headers, response.read()
            except urllib.error.HTTPError as error:
                status, answer, data = error.code, error.headers, error.read()
            if self.path.endswith(CREATE_ROUTE) and not dropped:
                dropped.append(self.path)  # the run is saved; its answer never arrives
                self.close_connection = True
                return
            self.send_response(status)
            for key, value in answer.items():
                if key.lower() not in HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        def log_message(self, *args):
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Proxy)


@pytest.fixture
def demo_cell(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text((EXPERIMENTS / "demo.yaml").read_text())
    grid = load_grid(path, ["seeds=[0]"])
    return grid.name, expand_cells(grid)[0]


def test_a_create_retried_after_its_answer_was_lost_leaves_one_run(tmp_path, demo_cell):
    grid_name, cell = demo_cell
    settings = ServerSettings(store=tmp_path / "store", port=free_port())
    server = start_server(settings)
    dropped: list[str] = []
    proxy = _dropping_proxy(settings.tracking_uri, dropped)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        wait_until_ready(settings.tracking_uri, READY_TIMEOUT, server)
        through_proxy = MlflowClient(f"http://127.0.0.1:{proxy.server_address[1]}")
        run_id = open_run(through_proxy, grid_name, cell, None, fresh=False)
        direct = MlflowClient(settings.tracking_uri)
        experiment = direct.get_experiment_by_name(grid_name).experiment_id
        query = f"tags.run_key = '{cell.run_key}'"
        live = direct.search_runs([experiment], query)
        every = direct.search_runs([experiment], query, run_view_type=ViewType.ALL)
    finally:
        proxy.shutdown()
        proxy.server_close()
        stop_server(server.pid)
        server.wait(timeout=60)
    assert dropped, "the proxy never withheld a runs/create answer"
    assert len(every) == 2  # the retry did save a second run: the case under test happened
    assert [run.info.run_id for run in live] == [run_id]
    (deleted,) = [run for run in every if run.info.run_id != run_id]
    assert deleted.info.lifecycle_stage == "deleted"
    assert deleted.data.tags[SUBMISSION_ID_TAG] == live[0].data.tags[SUBMISSION_ID_TAG]


def test_each_new_run_has_its_own_submission_id_and_resuming_searches_nothing(tmp_path, demo_cell):
    grid_name, cell = demo_cell
    client = Counting(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    first = open_run(client, grid_name, cell, None, fresh=False)
    second = open_run(client, grid_name, cell, None, fresh=True)
    ids = {client.get_run(run).data.tags[SUBMISSION_ID_TAG] for run in (first, second)}
    assert len(ids) == 2 and all(len(i) == 32 and set(i) <= set(string.hexdigits) for i in ids)
    assert client.calls["search_runs"] == 2 and client.calls["delete_run"] == 0
    client.calls.clear()
    assert open_run(client, grid_name, cell, client.get_run(second), fresh=False) == second
    assert client.calls["create_run"] == client.calls["search_runs"] == 0


def _summary_rows(client: MlflowClient, name: str):
    """Per-seed summary rows of synthetic curves, each with a new run of experiment ``name``."""
    experiment = client.create_experiment(name)
    rows = seed_summaries(synthetic_curves(seeds=(0, 1), never_reaching="badge"), COSTS)
    rows["run_id"] = [client.create_run(experiment).info.run_id for _ in range(len(rows))]
    return rows


def _logged(client: MlflowClient, run_ids) -> list[dict]:
    """Each run's summary metrics: every value with its step, in the order logged."""
    return [
        {
            key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            for key in client.get_run(run_id).data.metrics
        }
        for run_id in run_ids
    ]


def test_the_report_logs_the_same_summaries_with_fewer_requests(tmp_path, monkeypatch):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    before, after = _summary_rows(client, "one_read_per_run"), _summary_rows(client, "bulk")
    assert len(before) >= 10
    one_by_one, bulk = Counting(client), Counting(client)

    def every_run_read_alone(client, run_ids):
        return {}  # what log_changed_values did before: one get_run per run

    for changed in (0.0, 0.0, 0.01):  # first write, a repeat (nothing new), a changed value
        for rows, counting in ((before, one_by_one), (after, bulk)):
            rows["final_acc"] += changed
            with monkeypatch.context() as patch:
                if counting is one_by_one:
                    patch.setattr(summary_module, "latest_metrics", every_run_read_alone)
                counts = log_summaries(counting, rows)
            counting.calls["logged"] += counts
        assert one_by_one.calls["logged"] == bulk.calls["logged"]
    assert _logged(client, before["run_id"]) == _logged(client, after["run_id"])
    assert one_by_one.calls["log_batch"] == bulk.calls["log_batch"] > 0
    assert one_by_one.calls["get_run"] == 3 * len(before)
    reads = bulk.calls["get_run"] + bulk.calls["search_runs"]
    assert reads == 3 * 2  # per report: one get_run (the experiment) and one search


def test_given_latest_values_are_used_instead_of_reading_the_run(tmp_path):
    client = Counting(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    run_id = client.create_run(client.create_experiment("given")).info.run_id
    assert log_changed_values(client, run_id, {"summary/x": 1.0, "summary/y": 2.0}, 0, 1) == 2
    latest = client.get_run(run_id).data.metrics
    client.calls.clear()
    changed = {"summary/x": 1.0, "summary/y": 3.0}
    assert log_changed_values(client, run_id, changed, 0, 2, latest) == 1
    assert client.calls["get_run"] == 0 and client.calls["log_batch"] == 1
    assert client.get_run(run_id).data.metrics == changed
