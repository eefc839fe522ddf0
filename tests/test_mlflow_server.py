"""The MLflow tracking server for a grid: real server processes, real clients, no mocks.

Each test starts its own servers on a free port with a store in ``tmp_path`` and stops them by
pid at teardown, whatever happened. A start takes 5-13 s on a busy 2-core machine.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from benchmark.mlflow_server import (
    ServerProcess,
    ServerSettings,
    free_port,
    server_command,
    server_environment,
    start_server,
    stop_server,
    wait_until_ready,
)

READY_TIMEOUT = 120.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path):
    return ServerSettings(store=tmp_path / "store", port=free_port())


@pytest.fixture
def servers(settings):
    """Starts a server with ``settings`` (again, for a restart) and waits until it answers."""
    started = []

    def start(settings=settings):
        began = time.perf_counter()
        process = start_server(settings)
        started.append(process)
        wait_until_ready(settings.tracking_uri, READY_TIMEOUT, process)
        print(f"server on port {settings.port} ready in {time.perf_counter() - began:.1f} s")
        return process

    yield start
    for process in started:
        if process.poll() is None:  # a reaped pid may already belong to another process
            stop_server(process.pid)
            process.wait(timeout=30)


def server_processes(port):
    """Live processes (zombies excluded) whose command line serves ``port``."""
    listing = subprocess.run(
        ["ps", "-eww", "-o", "pid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [
        line
        for line in listing.splitlines()
        if f"--port {port} " in line and line.split(maxsplit=2)[1][0] != "Z"
    ]


def new_run(client):
    return client.create_run(client.create_experiment("grid")).info.run_id


def history(client, run_id, key="test_acc"):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_settings_resolve_the_store_uris_and_the_command(tmp_path, monkeypatch):
    local = ServerSettings(store=tmp_path / "store", port=5123, workers=2)
    assert local.backend == f"sqlite:///{tmp_path}/store/mlflow.db"
    assert local.artifacts == tmp_path / "store" / "artifacts"
    assert local.tracking_uri == "http://127.0.0.1:5123"
    command = server_command(local)
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert "--serve-artifacts" in command

    def option(name, command=command):
        return command[command.index(name) + 1]

    assert option("--backend-store-uri") == local.backend
    assert option("--artifacts-destination") == str(local.artifacts)
    assert [option("--host"), option("--port"), option("--workers")] == ["127.0.0.1", "5123", "2"]
    assert "--allowed-hosts" not in command  # MLflow's default already accepts localhost

    cluster = ServerSettings(tmp_path, backend_uri="postgresql://u:p@db/mlflow", host="0.0.0.0")
    assert cluster.backend == "postgresql://u:p@db/mlflow"
    assert cluster.tracking_uri == f"http://{socket.gethostname()}:5000"
    allowed = option("--allowed-hosts", server_command(cluster)).split(",")
    assert {"localhost:*", socket.gethostname(), f"{socket.gethostname()}:*"} <= set(allowed)

    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    assert server_environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert server_environment({"A": "1"}) == {
        "A": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def test_a_run_is_logged_read_back_and_stored_under_the_store(settings, servers):
    process = servers()
    assert server_processes(settings.port)
    client = MlflowClient(settings.tracking_uri)
    run_id = new_run(client)
    client.log_param(run_id, "strategy", "margin")
    client.log_metric(run_id, "test_acc", 0.5, step=10)
    client.log_metric(run_id, "test_acc", 0.75, step=20)
    client.log_dict(run_id, {"selected": [3, 1, 4]}, "rounds/round_000.json")

    assert client.get_run(run_id).data.params == {"strategy": "margin"}
    assert history(client, run_id) == [(10, 0.5), (20, 0.75)]
    # load_dict resolves runs:/ through the global tracking URI; restore it afterwards
    with _use_tracking_uri(settings.tracking_uri):
        loaded = mlflow.artifacts.load_dict(f"runs:/{run_id}/rounds/round_000.json")
    assert loaded == {"selected": [3, 1, 4]}

    stop_server(process.pid)
    assert process.wait(timeout=5) == 0  # MLflow's CLI exits 0 after a graceful SIGTERM
    assert server_processes(settings.port) == []
    assert (settings.store / "mlflow.db").is_file()
    (artifact,) = settings.artifacts.glob(f"*/{run_id}/artifacts/rounds/round_000.json")
    assert json.loads(artifact.read_text()) == {"selected": [3, 1, 4]}
    assert "Uvicorn running" in (settings.store / "server.log").read_text()


def test_runs_survive_a_restart_and_an_old_client_reconnects(settings, servers):
    first = servers()
    client = MlflowClient(settings.tracking_uri)
    run_id = new_run(client)
    client.log_metric(run_id, "test_acc", 0.5, step=10)
    stop_server(first.pid)
    first.wait(timeout=5)

    servers()
    assert client.get_run(run_id).data.metrics == {"test_acc": 0.5}
    client.log_metric(run_id, "test_acc", 0.75, step=20)
    assert history(MlflowClient(settings.tracking_uri), run_id) == [(10, 0.5), (20, 0.75)]


def test_a_client_logging_during_a_short_outage_succeeds_by_retrying(settings, servers):
    """The default retries (7, backoff factor 2: attempts after about 0, 0, 4, 12, 28 s) ride
    out a stop, 3 s down and a start (5-13 s here), so they are left as jobs will have them."""
    first = servers()
    client = MlflowClient(settings.tracking_uri)
    run_id = new_run(client)
    client.log_metric(run_id, "test_acc", 0.5, step=10)
    down = threading.Event()

    def restart():
        stop_server(first.pid)
        first.wait(timeout=5)
        down.set()
        time.sleep(3)
        servers()

    with ThreadPoolExecutor(1) as pool:
        restarted = pool.submit(restart)
        assert down.wait(timeout=60)
        began = time.perf_counter()
        client.log_metric(run_id, "test_acc", 0.75, step=20)
        took = time.perf_counter() - began
        restarted.result()
    print(f"log_metric during the outage returned after {took:.1f} s")
    assert took > 3
    assert history(client, run_id) == [(10, 0.5), (20, 0.75)]


def test_a_server_bound_to_all_interfaces_accepts_clients_by_hostname(tmp_path, servers):
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
    except socket.gaierror:
        pytest.skip(f"hostname {name!r} does not resolve here")
    cluster = ServerSettings(store=tmp_path / "store", host="0.0.0.0", port=free_port())
    servers(cluster)
    client = MlflowClient(cluster.tracking_uri)  # Host header <hostname>:<port>, not localhost
    run_id = new_run(client)
    client.log_param(run_id, "seed", "3")
    assert client.get_run(run_id).data.params == {"seed": "3"}


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} is in use"):
            start_server(ServerSettings(store=tmp_path / "store", port=port))
    assert server_processes(port) == []


def test_bad_settings_are_refused(tmp_path):
    not_a_folder = tmp_path / "mlflow.db"
    not_a_folder.write_text("")
    with pytest.raises(ValueError, match="mlflow.db' exists and is not a directory"):
        ServerSettings(store=not_a_folder)
    for port in (0, 65536):
        with pytest.raises(ValueError, match=f"port {port} is outside"):
            ServerSettings(store=tmp_path, port=port)


def test_waiting_reports_a_server_that_exits_or_never_answers(tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        crashed = ServerProcess(
            [sys.executable, "-c", "import sys; print('no such backend'); sys.exit(3)"],
            log_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 3.*no such backend"):
        wait_until_ready(uri, timeout=30, process=crashed)
    with pytest.raises(RuntimeError, match=rf"{uri} not ready.*within 0.5 s"):
        wait_until_ready(uri, timeout=0.5)


def test_serve_runs_in_the_foreground_until_sigterm(tmp_path):
    store, pid_file, port = tmp_path / "store", tmp_path / "server.pid", free_port()
    code = (
        "from pathlib import Path; from benchmark.mlflow_server import ServerSettings, serve; "
        f"raise SystemExit(serve(ServerSettings(Path({str(store)!r}), port={port}), "
        f"Path({str(pid_file)!r})))"
    )
    with open(tmp_path / "serve.err", "wb") as errors:
        serving = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True
        )
    server_pid = None
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not pid_file.exists():
            assert serving.poll() is None, (tmp_path / "serve.err").read_text()
            assert time.monotonic() < deadline, "serve() wrote no pid file"
            time.sleep(0.2)
        server_pid = int(pid_file.read_text())
        uri = f"http://127.0.0.1:{port}"
        assert serving.stdout.readline() == (
            f"MLflow server for {store} at {uri} (pid {server_pid}); "
            f"export MLFLOW_TRACKING_URI={uri}\n"
        )
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
            assert response.status == 200
        assert MlflowClient(uri).search_experiments()[0].name == "Default"

        serving.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=30) == 0
        assert not pid_file.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(server_pid, 0)
        assert server_processes(port) == []
    finally:
        if serving.poll() is None:  # killed, serve() cannot stop its server: stop it here
            serving.kill()
            serving.wait()
            if server_pid is not None:
                stop_server(server_pid)
