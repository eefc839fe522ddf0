"""SLURM arrays at scale (issue 18, item 4): a grid is split into arrays no larger than the
cluster's ``MaxArraySize``, each throttled to ``array_parallelism``; a 200-task grid of tiny
cells on the local cluster runs to the end through the real submission and job entry point;
``scontrol requeue`` of 20 running tasks at once and ``scancel`` of 10 more, then a re-run as a
user would type it, end with every cell finished once, in one MLflow run each, with the results
of an undisturbed run.

The local cluster (``cluster/local-slurm.sh``) is brought up here with a small ``MaxArraySize``
(128: the 200 cells become arrays of 128 and 72) and a node that declares more CPUs than the
host has (24), so that many tiny tasks run at once as on a bigger node; it is put back to its
defaults (or stopped, if it was not up) afterwards. Without root these tests skip, except
under CI (``CI=1``), where they fail.
"""

import contextlib
import io
import os
import re
import subprocess
import time
from types import SimpleNamespace

import pytest
from launching import outcome, runs_of
from slurm_storm import (
    array_tasks,
    metric_values,
    run_tasks,
    tiny_grid,
    wait_for,
)
from test_slurm import SCRIPT, tracking_uri  # noqa: F401  (tracking_uri: a fixture used here)

from benchmark.cli import main
from benchmark.executors import slurm
from benchmark.executors.settings import ExecutorSettings
from benchmark.executors.slurm import SlurmExecutor, array_chunks, max_array_size
from benchmark.grid import expand_cells, load_grid
from benchmark.status import cell_statuses
from benchmark.tracking import connect

CELLS = 200
MAX_ARRAY_SIZE = 128
PARALLELISM = 16  # per array: the two arrays together fill the node's 24 declared CPUs
CLUSTER = {"LOCAL_SLURM_CPUS": "24", "LOCAL_SLURM_MAX_ARRAY_SIZE": str(MAX_ARRAY_SIZE)}
EXECUTOR = (
    f"{{kind: slurm, cpus_per_task: 1, mem_gb: 0.25, time_min: 30, "
    f"array_parallelism: {PARALLELISM}}}"
)

CONFIG = """Configuration data as of 2026-12-05T10:57:01
AccountingStorageBackupHost = (null)
MaxArraySize            = {size}
MaxDBDMsgs              = 20008
MaxJobCount             = 10000
"""


# ------------------------------------------------------------------------------------------
# Splitting (no cluster)
# ------------------------------------------------------------------------------------------


def test_max_array_size_is_read_from_scontrol_show_config():
    assert max_array_size(CONFIG.format(size=1001)) == 1001
    assert max_array_size(CONFIG.format(size=0)) == 0
    assert max_array_size("Configuration data as of now\nMaxJobCount = 10000\n") is None


@pytest.mark.parametrize(
    ("count", "largest", "sizes"),
    [
        (200, 128, [128, 72]),
        (256, 128, [128, 128]),
        (129, 128, [128, 1]),
        (128, 128, [128]),
        (3, 1001, [3]),
        (5, 1, [1] * 5),
        (4, 0, [1] * 4),  # arrays disabled: one job per cell
        (1000, None, [1000]),  # limit unknown: one array
        (0, 128, []),
    ],
)
def test_array_chunks_have_the_cluster_sizes_and_hold_every_cell_once_in_order(
    count, largest, sizes
):
    items = [f"cell{i}" for i in range(count)]
    chunks = array_chunks(items, largest)
    assert [len(chunk) for chunk in chunks] == sizes
    assert [item for chunk in chunks for item in chunk] == items


def test_submit_queues_each_resource_group_in_arrays_of_at_most_max_array_size(
    tmp_path, monkeypatch
):
    grid = load_grid(tiny_grid(tmp_path, "split", seeds=range(7), executor=EXECUTOR))
    jobs = [SimpleNamespace(cell=cell) for cell in expand_cells(grid)]  # what submit reads
    assert len(jobs) == 7
    arrays = []
    monkeypatch.setattr(slurm, "max_array_size", lambda: 3)
    monkeypatch.setattr(
        SlurmExecutor,
        "_submit_array",
        lambda self, client, settings, members, report: arrays.append((settings, members)) or [],
    )
    SlurmExecutor(grid, grid.executor).submit(None, jobs, lambda submission: None)
    assert [members for _, members in arrays] == [jobs[0:3], jobs[3:6], jobs[6:7]]
    assert {settings.array_parallelism for settings, _ in arrays} == {PARALLELISM}
    parameters = SlurmExecutor(grid, grid.executor).sbatch_parameters()
    assert parameters["array_parallelism"] == PARALLELISM
    assert ExecutorSettings().array_parallelism == 256


# ------------------------------------------------------------------------------------------
# The local cluster
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster():
    """The local cluster with ``CLUSTER``'s settings; afterwards back to its defaults (or
    stopped, if it was not up)."""
    if os.geteuid() != 0:
        message = "the local SLURM cluster needs root: sudo cluster/local-slurm.sh up"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM tests as root ({message})")
        pytest.skip(message)
    was_up = subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0
    subprocess.run([SCRIPT, "up"], env={**os.environ, **CLUSTER}, check=True)
    yield
    defaults = {k: v for k, v in os.environ.items() if k not in CLUSTER}
    subprocess.run([SCRIPT, "up" if was_up else "down"], env=defaults, check=True)


@pytest.fixture(scope="module")
def big_grid(tracking_uri, tmp_path_factory):  # noqa: F811  (the imported fixture)
    """The 200-cell grid, submitted; its path and the submission's printed lines."""
    root = tmp_path_factory.mktemp("storm")
    grid = tiny_grid(root, "storm", seeds=range(CELLS), executor=EXECUTOR)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(grid), "--tracking-uri", tracking_uri]) == 0
    return grid, printed.getvalue()


def test_200_cells_are_queued_as_arrays_the_cluster_accepts_each_throttled(big_grid):
    _, printed = big_grid
    assert max_array_size() == MAX_ARRAY_SIZE
    found = re.search(r"submitted (\d+) cells to SLURM: jobs (\d+)_0 \.\. (\d+)_(\d+)", printed)
    assert found, printed
    assert found.group(1) == str(CELLS)
    first, last, last_index = found.group(2), found.group(3), int(found.group(4))
    assert last != first and last_index == CELLS - MAX_ARRAY_SIZE - 1, printed
    arrays = {first: MAX_ARRAY_SIZE, last: CELLS - MAX_ARRAY_SIZE}
    for array, size in arrays.items():
        shown = subprocess.run(
            ["scontrol", "show", "job", array], capture_output=True, text=True, check=True
        ).stdout
        assert f"ArrayTaskThrottle={PARALLELISM}" in shown, shown
        assert len(array_tasks(array)) == size
    running = run_tasks(list(arrays), "RUNNING")  # never more than the throttle per array
    for array in arrays:
        assert sum(task.startswith(f"{array}_") for task in running) <= PARALLELISM


def test_a_requeue_storm_then_a_rerun_ends_with_every_cell_once_as_undisturbed(
    big_grid,
    tracking_uri,  # noqa: F811  (the imported fixture)
    tmp_path,
):
    grid_path, printed = big_grid
    arrays = sorted(set(re.findall(r"jobs (\d+)_0 \.\. (\d+)_", printed)[0]))

    # 20 running tasks requeued at once (first those whose cell has started), then 10 more
    # that run by then cancelled
    wait_for(lambda: len(run_tasks(arrays, "RUNNING")) >= 20, "20 running tasks")
    cells = runs_of(tracking_uri, "storm")
    started = set(cells.loc[cells["tags.state"] == "running", "tags.job_id"])
    running = run_tasks(arrays, "RUNNING")
    requeued = sorted(running, key=lambda task: (task not in started, task))[:20]
    subprocess.run(["scontrol", "requeue", ",".join(requeued)], check=True)
    wait_for(
        lambda: len(set(run_tasks(arrays, "RUNNING")) - set(requeued)) >= 10,
        "10 more running tasks",
    )
    cancelled = sorted(set(run_tasks(arrays, "RUNNING")) - set(requeued))[:10]
    subprocess.run(["scancel", *cancelled], check=True)
    wait_for(
        lambda: not set(cancelled) & set(run_tasks(arrays, "RUNNING,COMPLETING")),
        "the cancelled tasks to end",
    )

    started = time.monotonic()
    rerun = ["run", str(grid_path), "--tracking-uri", tracking_uri]
    assert main([*rerun, "--wait", "--poll-seconds", "2"]) == 0
    print(f"re-run after the storm waited {time.monotonic() - started:.0f} s")

    grid = load_grid(grid_path)
    client = connect()
    statuses = cell_statuses(client, grid, expand_cells(grid))
    assert len(statuses) == CELLS
    assert {status.state for status in statuses} == {"finished"}
    runs = runs_of(tracking_uri, grid.name)
    assert len(runs) == CELLS and runs["tags.run_key"].nunique() == CELLS, "one run per cell"
    assert set(runs["tags.state"]) == {"finished"}
    by_job = runs.set_index("tags.job_id")
    resubmitted = runs.loc[~runs["tags.job_id"].str.split("_").str[0].isin(arrays)]
    assert len(resubmitted) == len(cancelled)  # only the cancelled cells were submitted again
    attempts = by_job.loc[by_job.index.isin(requeued), "tags.attempts"].astype(int)
    assert len(attempts) == len(requeued), "a requeued cell finished in its own task"
    assert set(attempts) <= {1, 2}  # 2: requeued after its cell had started
    print(f"requeued cells by attempts: {attempts.value_counts().to_dict()}")

    # the disturbed cells and 5 undisturbed ones, run undisturbed in one process
    disturbed = set(runs.loc[runs["tags.job_id"].isin(requeued), "tags.seed"])
    disturbed |= set(resubmitted["tags.seed"])
    seeds = sorted(int(seed) for seed in disturbed)
    seeds += [seed for seed in range(CELLS) if seed not in seeds][-5:]
    data = grid_path.parent / "data"
    reference = tiny_grid(tmp_path, "undisturbed", seeds=seeds, data=data)
    assert main(["run", str(reference), "--tracking-uri", tracking_uri]) == 0
    undisturbed = runs_of(tracking_uri, "undisturbed").set_index("tags.run_key")
    assert len(undisturbed) == len(requeued) + len(cancelled) + 5
    assert set(undisturbed.index) <= set(runs["tags.run_key"])
    for run_key, run in undisturbed.iterrows():
        mine = runs.loc[runs["tags.run_key"] == run_key].iloc[0]
        assert outcome(tracking_uri, mine["run_id"]) == outcome(tracking_uri, run["run_id"])
        assert metric_values(client, mine["run_id"]) == metric_values(client, run["run_id"])
