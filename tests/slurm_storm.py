"""Helpers of the SLURM array tests: the tiniest real cells, array tasks as SLURM lists them,
and a run's logged values minus its timings."""

import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from data_fixtures import write_image_folder
from mlflow.tracking import MlflowClient

from benchmark.metric_names import is_measurement

GRID = """
name: {name}
data_root: {data}
datasets:
  - name: imagefolder
    options: {{path: parts, test_fraction: 0.25, split_seed: 0}}
    budgets: [3, 6]
backbone: efficientnet_lite0
image_size: 16
seeds: {seeds}
strategies: [random]
pipelines:
  - {{pipeline: svpp, train_method: ft}}
finetune: {{epochs: 1, batch_size: 8, milestones: []}}
costs: {{label_price: 0.05, device_hour: {{cpu: 0.1}}}}
executor: {executor}
feature_store: {root}/features
state_dir: {root}/state
"""


def tiny_grid(
    root: Path,
    name: str,
    seeds: Iterable[int],
    executor: str = "{kind: debug}",
    data: Path | None = None,
) -> Path:
    """A grid of the tiniest real cells: the random baseline (fine-tuning, 2 rounds) on 24
    images of 8x8 pixels in 3 classes, one cell per seed. ``data``: the image folder's root
    (default ``root/data``, written if missing); cells of grids with the same data and seeds
    have the same run keys."""
    data = data or root / "data"
    if not (data / "parts").is_dir():
        write_image_folder(data / "parts", ["bolt", "nut", "washer"], 8, size=(8, 8))
    path = root / f"{name}.yaml"
    path.write_text(
        GRID.format(name=name, data=data, seeds=list(seeds), executor=executor, root=root)
    )
    return path


def run_tasks(arrays: Iterable[str], states: str) -> list[str]:
    """The array tasks (``123_4``) of ``arrays`` that ``squeue`` shows in ``states``."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", states, "-o", "%i", "-j", ",".join(arrays)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def array_tasks(array: str) -> set[str]:
    """Every task of an array: queued or running (``squeue``) or ended (``sacct``)."""
    queued = set(run_tasks([array], "all"))
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID", "-j", array],
        capture_output=True,
        text=True,
        check=True,
    )
    return queued | {task for task in out.stdout.split() if "[" not in task}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """Poll ``condition`` every second until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(1)


def metric_values(client: MlflowClient, run_id: str) -> dict[str, dict[int, float]]:
    """Every metric of a run by step, but the measurements of how it ran (``time/``,
    ``compute/``), which differ from run to run."""
    names = [name for name in client.get_run(run_id).data.metrics if not is_measurement(name)]
    return {
        name: {m.step: m.value for m in client.get_metric_history(run_id, name)} for name in names
    }
