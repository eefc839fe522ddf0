"""The tracking server on a real PostgreSQL (``tests/postgres_server.py``), with 64 jobs at once.

What a cluster's grid does to its server: ``asvp-bench mlflow-server --backend-uri
postgresql://...`` serves from PostgreSQL, and 64 cells logging at once
(``tests/tracking_writers.py``: every round's metrics, tags and artifacts through
:mod:`benchmark.tracking`, no training) lose nothing while the server is killed and started
again, and while PostgreSQL restarts: afterwards the database holds every run, metric value and
tag exactly once and the store every artifact, checked in PostgreSQL's tables and the artifact
folder directly rather than through the server under test. Without PostgreSQL these tests skip,
except under CI (``.ci/run`` installs it).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from launching import write_grid
from mlflow.tracking import MlflowClient
from postgres_server import missing_requirements, running_postgres
from tracking_writers import cell_result

from benchmark.cli import main
from benchmark.grid import expand_cells, load_grid
from benchmark.mlflow_server import (
    ServerSettings,
    free_port,
    server_command,
    start_server,
    stop_server,
    wait_until_ready,
)

WRITERS = 64
BUDGETS = tuple(range(10, 90, 10))  # 8 rounds a cell
READY_TIMEOUT = 180.0
DEADLINE = 900.0
WRITERS_SCRIPT = Path(__file__).with_name("tracking_writers.py")


@pytest.fixture(scope="module")
def postgres():
    missing = missing_requirements()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {missing}")
        pytest.skip(missing)
    with running_postgres() as server:
        yield server


def test_backend_uris_are_checked_before_a_server_starts(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    uri = "postgres://u:secret@db/mlflow"
    code = main(["mlflow-server", "--store", str(store), "--backend-uri", uri])
    error = capsys.readouterr().err
    assert code == 2 and "SQLAlchemy spells PostgreSQL postgresql://" in error
    assert "secret" not in error and "u:***@db" in error
    with pytest.raises(ValueError, match="'db.example' is not a database URI"):
        ServerSettings(store, backend_uri="db.example")

    bare = ServerSettings(store, backend_uri="postgresql://u@db:5432/mlflow")
    command = server_command(bare)
    driver_uri = command[command.index("--backend-store-uri") + 1]
    assert driver_uri == "postgresql+psycopg2://u@db:5432/mlflow"  # whatever SQLAlchemy's default

    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(
        ValueError, match=r"needs the database driver .*pip install psycopg2-binary"
    ):
        ServerSettings(store, backend_uri="postgresql://u@db/mlflow")
    assert not store.exists()


def _start(settings):
    server = start_server(settings)
    wait_until_ready(settings.tracking_uri, READY_TIMEOUT, server)
    return server


def _start_once_the_port_is_free(settings):
    """Start again on the port of a server just killed: its uvicorn child, killed with it, may
    hold the listening socket a moment longer than the ``mlflow`` process it was reaped with."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            return _start(settings)
        except RuntimeError as error:
            if "is in use" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def test_a_server_on_postgresql_serves_runs_from_the_database(postgres, tmp_path):
    settings = ServerSettings(tmp_path / "store", backend_uri=postgres.uri, port=free_port())
    server = _start(settings)
    try:
        client = MlflowClient(settings.tracking_uri)
        run_id = client.create_run(client.create_experiment("served")).info.run_id
        client.log_param(run_id, "strategy", "margin")
        client.log_metric(run_id, "accuracy/test_acc", 0.75, step=20)
        client.log_text(run_id, "round 0", "rounds/round_000.txt")
        run = MlflowClient(settings.tracking_uri).get_run(run_id)
        assert run.data.params == {"strategy": "margin"}
        assert run.data.metrics == {"accuracy/test_acc": 0.75}
    finally:
        stop_server(server.pid)
    assert not (settings.store / "mlflow.db").exists()
    rows = postgres.query("SELECT key, value, step FROM metrics WHERE run_uuid = %s", (run_id,))
    assert rows == [("accuracy/test_acc", 0.75, 20)]
    artifact = settings.artifacts / _artifact_folder(postgres, run_id) / "rounds/round_000.txt"
    assert artifact.read_text() == "round 0"


def _rounds_logged(progress):
    return sum(path.name.split("-")[1].isdigit() for path in progress.iterdir())


def _wait(condition, what, writers):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert writers.poll() is None, f"the writers ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _artifact_folder(postgres, run_id):
    """Where the server keeps a run's artifacts, relative to its artifacts folder."""
    (uri,) = postgres.query("SELECT artifact_uri FROM runs WHERE run_uuid = %s", (run_id,))[0]
    return uri.removeprefix("mlflow-artifacts:/")


def test_64_writers_lose_nothing_when_the_server_is_killed_and_postgres_restarts(
    postgres, tmp_path
):
    grid = write_grid(
        tmp_path,
        "pg64",
        budgets=BUDGETS,
        seeds=tuple(range(10)),
        strategies=("random", "margin", "entropy", "least_confidence"),
    )
    cells = {cell.run_key: cell for cell in expand_cells(load_grid(grid))[:WRITERS]}
    settings = ServerSettings(tmp_path / "store", backend_uri=postgres.uri, port=free_port())
    progress, output = tmp_path / "progress", tmp_path / "writers.out"
    progress.mkdir()
    server = _start(settings)
    writers = None
    try:
        with open(output, "wb") as out:
            writers = subprocess.Popen(
                [sys.executable, str(WRITERS_SCRIPT), settings.tracking_uri, str(grid)]
                + [str(WRITERS), str(progress), "--pause", "1"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # Kill the server mid-run once every run exists (each writer logged a round): every
        # request of a cell is then safe to repeat (a create_run retried after a lost answer
        # leaves a second run, which open_run deletes: tests/test_tracking_retries.py).
        started = [progress / f"{index}-0" for index in range(WRITERS)]
        _wait(lambda: all(path.exists() for path in started), "every writer's first round", writers)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=60)
        at_kill = _rounds_logged(progress)
        server = _start_once_the_port_is_free(settings)
        _wait(lambda: _rounds_logged(progress) >= at_kill + WRITERS, "rounds after", writers)
        at_postgres_restart = _rounds_logged(progress)
        postgres.restart()
        code = writers.wait(timeout=DEADLINE)
        errors = "".join(path.read_text() for path in progress.glob("*-error"))
        assert code == 0, output.read_text()[-3000:] + errors
    finally:
        if writers is not None and writers.poll() is None:
            writers.kill()
        stop_server(server.pid)
    print(output.read_text().splitlines()[-1])
    total = WRITERS * len(BUDGETS)
    assert at_kill < at_postgres_restart < total  # both happened with rounds still to log
    _check_everything_is_there_once(postgres, settings, cells)


def _check_everything_is_there_once(postgres, settings, cells):
    (experiment,) = postgres.query("SELECT experiment_id FROM experiments WHERE name = 'pg64'")[0]
    runs = postgres.query(
        "SELECT run_uuid, status, lifecycle_stage FROM runs"
        " WHERE experiment_id = %s AND lifecycle_stage = 'active'",
        (experiment,),
    )
    assert len(runs) == WRITERS  # no duplicate run from a retried request
    assert {(status, stage) for _, status, stage in runs} == {("FINISHED", "active")}
    ids = tuple(run_id for run_id, _, _ in runs)
    tags = defaultdict(dict)
    for run_id, key, value in postgres.query(
        "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN %s", (ids,)
    ):
        tags[run_id][key] = value
    keys = {run_id: tags[run_id]["run_key"] for run_id in ids}
    assert sorted(keys.values()) == sorted(cells)
    params = defaultdict(dict)
    for run_id, key, value in postgres.query(
        "SELECT run_uuid, key, value FROM params WHERE run_uuid IN %s", (ids,)
    ):
        params[run_id][key] = value
    points = postgres.query(
        "SELECT run_uuid, key, step, value FROM metrics WHERE run_uuid IN %s", (ids,)
    )
    counted = Counter((run_id, key, step) for run_id, key, step, _ in points)
    assert set(counted.values()) == {1}, "every metric value once"
    for run_id, run_key in keys.items():
        cell, expected = cells[run_key], cell_result(cells[run_key])
        run_tags = tags[run_id]
        assert run_tags["state"] == "finished" and run_tags["attempts"] == "1"
        assert run_tags["weights_sha256"] == expected.weights_sha256
        assert params[run_id] == cell.params()
        steps = defaultdict(set)
        for key, step in (k[1:] for k in counted if k[0] == run_id):
            steps[key].add(step)
        assert len(steps) >= 8 and set(map(frozenset, steps.values())) == {frozenset(BUDGETS)}
        accuracy = {s: v for r, k, s, v in points if r == run_id and k == "accuracy/test_acc"}
        assert accuracy == {r.labels: r.test_acc for r in expected.rounds}
        _check_artifacts(settings.artifacts / _artifact_folder(postgres, run_id), expected)


def _check_artifacts(folder, expected):
    for record in expected.rounds:
        logged = json.loads((folder / f"rounds/round_{record.round:03d}.json").read_text())
        written = json.loads(json.dumps(dataclasses.asdict(record)))
        assert {**logged, "finished_at_ms": 0} == {**written, "finished_at_ms": 0}
    assert json.loads((folder / "labeled_order.json").read_text()) == expected.labeled_order
    assert (folder / "curve.csv").read_text().count("\n") == len(expected.rounds) + 1
    assert {"config.json", "environment.json"} <= {path.name for path in folder.iterdir()}
    kept = np.load(folder / "dataset" / "kept_indices.npy")
    assert np.array_equal(kept, expected.artifacts["kept_indices"])
