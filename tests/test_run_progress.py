"""What `asvp-bench run` prints while cells run: each cell's start with its log, each round's
end (budget, test accuracy, seconds), relayed from the workers' logs (local executor) or
written straight to stderr (debug executor)."""

import io
import re

from launching import cli, write_grid
from mlflow.tracking import MlflowClient

from asvp.progress import PROGRESS_PREFIX, Progress, announce, progress_message
from benchmark.cli import main
from benchmark.executors.local import _LogTail

BUDGETS = (10, 20, 30)
ROUND = re.compile(
    r"round (\d)/3 done: (\d+) labels, test accuracy (\d\.\d{4}), (\d+\.\d) s \((\w+)\)$"
)


def test_progress_lines_are_told_apart_from_the_rest_of_a_log():
    stream = io.StringIO()
    announce("round 1/3 done", stream)
    assert stream.getvalue() == f"{PROGRESS_PREFIX}round 1/3 done\n"
    assert progress_message(stream.getvalue()) == "round 1/3 done"
    assert progress_message("a warning from a library\n") is None


def test_extraction_progress_on_stderr_is_a_progress_line(capsys):
    Progress("pool features", 4).advance(4)
    (line,) = capsys.readouterr().err.splitlines()
    assert progress_message(line).startswith("pool features: 4/4 (100%)")


def test_a_log_tail_gives_only_new_whole_progress_lines(tmp_path):
    log = tmp_path / "cell.log"
    log.write_text(f"{PROGRESS_PREFIX}an earlier attempt\n")
    tail = _LogTail(str(log))
    assert tail.messages() == []
    with log.open("a") as out:
        out.write(f"noise\n{PROGRESS_PREFIX}round 1/3 done\n{PROGRESS_PREFIX}round 2")
    assert tail.messages() == ["round 1/3 done"]
    with log.open("a") as out:
        out.write("/3 done\n")
    assert tail.messages() == ["round 2/3 done"]
    assert _LogTail(str(tmp_path / "not yet.log")).messages() == []


def _check_rounds(lines, client, run_id):
    """Every round's line, in order, with the budget and the accuracy MLflow recorded."""
    curve = {m.step: m.value for m in client.get_metric_history(run_id, "accuracy/test_acc")}
    rounds = [ROUND.search(line) for line in lines]
    rounds = [found for found in rounds if found]
    assert [int(found[1]) for found in rounds] == [1, 2, 3], lines
    assert [int(found[2]) for found in rounds] == list(BUDGETS)
    for found in rounds:
        assert float(found[3]) == round(curve[int(found[2])], 4)
        assert float(found[4]) > 0


def test_run_prints_each_cells_start_log_and_rounds(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, "progress", BUDGETS)
    result = cli("run", grid, "--tracking-uri", uri, "--strategy", "margin")
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("progress").experiment_id])
    assert len(runs) == 2
    out = result.stdout.splitlines()
    for run in runs:
        name = run.info.run_name
        lines = [line for line in out if f"] {name}: " in line or line.endswith(f" {name}")]
        (started,) = [line for line in lines if ": started (attempt 1), log: " in line]
        log_path = started.rsplit(", log: ", 1)[1]
        assert log_path == run.data.tags["log_path"]
        with open(log_path) as log:
            assert f"{PROGRESS_PREFIX}round 3/3 done" in log.read()
        assert lines.index(started) == 0 and "] finished " in lines[-1], lines
        _check_rounds(lines, client, run.info.run_id)


def test_the_debug_executor_prints_progress_directly(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, "debugged", BUDGETS)
    run = ["run", str(grid), "--executor", "debug", "--tracking-uri", uri, "--strategy", "random"]
    assert main(run) == 0
    printed = capsys.readouterr()
    client = MlflowClient(uri)
    (only,) = client.search_runs([client.get_experiment_by_name("debugged").experiment_id])
    assert f"{only.info.run_name}: starting in this process" in printed.out
    lines = [progress_message(line) for line in printed.err.splitlines()]
    assert lines.index("started (attempt 1)") < min(
        i for i, x in enumerate(lines) if x and "round" in x
    )
    _check_rounds([line for line in lines if line], client, only.info.run_id)
