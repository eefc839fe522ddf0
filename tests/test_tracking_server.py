"""Eight cells logging at once to one MLflow server started here, restarted mid-grid.

Nothing may be lost: every cell ends with one finished run holding every round's metrics and
artifacts, including rounds that ended while the server was down (the client's retries and
the round hand-over of :mod:`asvp.pipelines` carry them over).
"""

import subprocess
import sys
import time

import mlflow
from launching import checkpointed_rounds, runs_of, write_grid
from mlflow.tracking import MlflowClient

from benchmark.mlflow_server import (
    ServerSettings,
    free_port,
    start_server,
    stop_server,
    wait_until_ready,
)

BUDGETS = (10, 20, 30, 40)


def test_eight_concurrent_cells_lose_nothing_when_the_server_restarts(tmp_path):
    settings = ServerSettings(tmp_path / "mlflow", port=free_port())
    server = start_server(settings)
    driver = None
    try:
        wait_until_ready(settings.tracking_uri, process=server)
        uri = settings.tracking_uri
        grid = write_grid(
            tmp_path,
            "eight",
            budgets=BUDGETS,
            seeds=(0, 1),
            strategies=("random", "margin", "entropy", "least_confidence"),
            executor="{kind: local, max_parallel: 8}",
        )
        cells = ("--pipeline", "random", "--pipeline", "svpp")  # 4 cells per seed
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmark.cli",
                "run",
                str(grid),
                *cells,
                "--tracking-uri",
                uri,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        state = tmp_path / "state"
        deadline = time.monotonic() + 600
        while sum(checkpointed_rounds(state)) < 1:  # some cell is logging rounds
            assert time.monotonic() < deadline and driver.poll() is None
            time.sleep(0.1)
        stop_server(server.pid)
        down_at = time.time()
        rounds_before = sum(checkpointed_rounds(state))
        # a round must end while the server is down
        while sum(checkpointed_rounds(state)) == rounds_before:
            assert time.monotonic() < deadline and driver.poll() is None
            time.sleep(0.1)
        server = start_server(settings)
        wait_until_ready(uri, process=server)
        up_at = time.time()
        output, _ = driver.communicate(timeout=900)
        assert driver.returncode == 0, output

        runs = runs_of(uri, "eight")
        assert len(runs) == 8 and set(runs["tags.state"]) == {"finished"}
        assert runs["tags.run_key"].nunique() == 8
        client = MlflowClient(uri)
        ended_during_outage = 0
        for run_id in runs["run_id"]:
            history = client.get_metric_history(run_id, "accuracy/test_acc")
            assert sorted(m.step for m in history) == list(BUDGETS), "one value per round"
            mlflow.set_tracking_uri(uri)
            for index in range(len(BUDGETS)):
                record = mlflow.artifacts.load_dict(f"runs:/{run_id}/rounds/round_{index:03d}.json")
                ended_during_outage += down_at <= record["finished_at_ms"] / 1000 <= up_at
            order = mlflow.artifacts.load_dict(f"runs:/{run_id}/labeled_order.json")
            assert len(order) == len(set(order)) == BUDGETS[-1]
        assert ended_during_outage >= 1
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        stop_server(server.pid)
