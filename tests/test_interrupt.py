"""Stopping a grid: SIGINT (a terminal's Ctrl-C, to the whole process group) and SIGTERM (to
the driver alone) sent to a real `asvp-bench run` with the local executor, mid-grid.

The driver must stop starting cells, stop the running ones (their runs KILLED in MLflow, state
``killed``, round checkpoints kept), print one line on what it stopped and how to resume, and
exit 130 without a traceback; the next ``run`` finishes every cell with the results of an
uninterrupted run.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

from launching import checkpointed_rounds, cli, outcome, runs_of, write_grid
from mlflow.tracking import MlflowClient

from benchmark.cli import main

BUDGETS = (10, 20, 30, 40, 50)
TWO_AT_ONCE = "{kind: local, max_parallel: 2}"
SUMMARY = re.compile(
    r"^stopped by (SIGINT|SIGTERM): (\d+) running cells killed \(round checkpoints kept\), "
    r"(\d+) not started; resume with: asvp-bench run \S+ --tracking-uri \S+$"
)


def _stopped_mid_grid(tmp_path, name, uri, stop):
    """Run the grid ``name`` (two seeds x random, svpp, asvp: 6 cells, 2 at once), call
    ``stop(driver)`` once a cell has saved a round, and return (exit status, stdout, stderr)
    and the rounds saved in each checkpoint when it had exited."""
    grid = write_grid(tmp_path, name, BUDGETS, seeds=(0, 1), executor=TWO_AT_ONCE)
    driver = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", "run", grid, "--tracking-uri", uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 300
        while max(checkpointed_rounds(tmp_path / "state"), default=0) < 1:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no cell saved a round in 300 s"
            time.sleep(0.05)
        stop(driver)
        out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    return grid, driver.returncode, out, err, checkpointed_rounds(tmp_path / "state")


def _check_stopped(uri, name, returncode, out, err, signal_name):
    """What a stopped grid must show; returns the killed runs' ids."""
    assert returncode == 130, (out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    (line,) = [line for line in out.splitlines() if line.startswith("stopped by")]
    found = SUMMARY.match(line)
    assert found, line
    assert found[1] == signal_name
    killed, not_started = int(found[2]), int(found[3])
    assert killed >= 1 and not_started >= 1, line
    runs = runs_of(uri, name)
    assert "running" not in set(runs["tags.state"]), runs[["tags.run_key", "tags.state"]]
    stopped = runs.loc[runs["tags.state"] == "killed"]
    assert len(stopped) == killed
    assert set(stopped["status"]) == {"KILLED"}
    assert set(stopped["tags.stopped"]) == {f"stopped by {signal_name}"}
    never_started = runs.loc[runs["tags.attempts"].isna()]
    assert len(never_started) >= not_started  # not started: the run the driver opened, pending
    assert set(never_started["tags.state"]) == {"pending"}
    return list(stopped["run_id"])


def test_ctrl_c_stops_a_grid_and_the_next_run_resumes_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid, returncode, out, err, saved = _stopped_mid_grid(
        tmp_path, "stopped", uri, lambda driver: os.killpg(driver.pid, signal.SIGINT)
    )
    killed = _check_stopped(uri, "stopped", returncode, out, err, "SIGINT")
    assert max(saved) >= 1, "round checkpoints kept"

    status = cli("status", grid, "--tracking-uri", uri, "--state", "killed")
    assert status.returncode == 0, status.stderr
    assert f"{len(killed)} killed" in status.stdout
    assert "stopped by SIGINT; run resumes it from its round checkpoint" in status.stdout

    resumed = cli("run", grid, "--tracking-uri", uri)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    reference = write_grid(tmp_path, "reference", BUDGETS, seeds=(0, 1), executor=TWO_AT_ONCE)
    assert cli("run", reference, "--tracking-uri", uri).returncode == 0
    runs, expected = runs_of(uri, "stopped"), runs_of(uri, "reference")
    assert len(runs) == len(expected) == 6, "a resumed cell logs into its one run"
    assert set(runs["tags.state"]) == {"finished"}
    by_key = dict(zip(expected["tags.run_key"], expected["run_id"], strict=True))
    for run_key, run_id in zip(runs["tags.run_key"], runs["run_id"], strict=True):
        assert outcome(uri, run_id) == outcome(uri, by_key[run_key]), run_key
    client = MlflowClient(uri)
    for run_id in killed:
        tags = client.get_run(run_id).data.tags
        assert tags["attempts"] == "2" and client.get_run(run_id).info.status == "FINISHED"
    assert sum(int(client.get_run(i).data.tags["resumed_rounds"]) for i in killed) == sum(saved)


def test_sigterm_to_the_driver_alone_stops_its_workers_cells(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, returncode, out, err, _ = _stopped_mid_grid(
        tmp_path, "terminated", uri, lambda driver: driver.send_signal(signal.SIGTERM)
    )
    _check_stopped(uri, "terminated", returncode, out, err, "SIGTERM")


def test_ctrl_c_stops_the_debug_executor_in_its_own_process(tmp_path, capsys):
    handler = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a background job
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, "inprocess", BUDGETS)

    def press_ctrl_c_after_a_round():
        deadline = time.monotonic() + 300
        while max(checkpointed_rounds(tmp_path / "state"), default=0) < 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=press_ctrl_c_after_a_round, daemon=True)
    watcher.start()
    run = ["run", str(grid), "--executor", "debug", "--tracking-uri", uri]
    assert main(run) == 130
    watcher.join()
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("stopped by")]
    assert line.startswith(
        "stopped by SIGINT: 1 running cells killed (round checkpoints kept), 2 not"
    )
    runs = runs_of(uri, "inprocess")
    (killed,) = runs.loc[runs["tags.state"] == "killed"]["status"]
    assert killed == "KILLED"
    assert sorted(runs["tags.state"]) == ["killed", "pending", "pending"]
    assert signal.getsignal(signal.SIGINT) is handler, "handlers restored"


def _store_call(body):
    """``body`` run as if it were code of SQLAlchemy (its module name), as MLflow's writes are."""
    code = compile("def call(body):\n    return body()\n", "<sqlalchemy stand-in>", "exec")
    namespace = {"__name__": "sqlalchemy.stand_in"}
    exec(code, namespace)  # noqa: S102  (a fixed two-line function)
    return namespace["call"](body)


def test_a_stop_inside_the_tracking_store_waits_until_its_call_returns():
    """A stop raised inside a store write would leave its transaction open and the database
    locked (the killed state could then not be recorded): the cell stops right after it."""
    handler = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a background job
    from benchmark.executors.stopping import CellInterrupted, interruptible

    events = []

    def write_with_a_stop_in_the_middle():
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # the write goes on, signal or not
            time.sleep(0.01)
        events.append("write finished")

    try:
        with interruptible():
            _store_call(write_with_a_stop_in_the_middle)
            events.append("after the write")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)
            events.append("not stopped")
    except CellInterrupted as stop:
        events.append(str(stop))
    assert events == ["write finished", "after the write", "stopped by SIGINT"]
    assert signal.getsignal(signal.SIGINT) is handler, "handlers restored"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_stop_outside_the_store_raises_at_once():
    from benchmark.executors.stopping import CellInterrupted, interruptible

    started = time.monotonic()
    try:
        with interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
    except CellInterrupted as stop:
        assert str(stop) == "stopped by SIGTERM"
    assert time.monotonic() - started < 30
