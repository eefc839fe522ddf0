"""Helpers of the launching tests: small grids, runs read back, round checkpoints on disk."""

import contextlib
import json
import subprocess
import sys

import mlflow
from mlflow.tracking import MlflowClient

GRID = """
name: {name}
datasets:
  - name: mnist5k
    options: {{test_size: 100, pool_size: 200}}
    budgets: {budgets}
backbone: efficientnet_lite0
image_size: 32
seeds: {seeds}
strategies: {strategies}
pipelines:
  - {{pipeline: svpp, train_method: lpft}}
  - {{pipeline: asvp, train_method: auto, trigger: {{rule: schedule, at_labels: [20]}}}}
finetune: {{epochs: 1, batch_size: 8, lr_backbone: 0.003, lr_head: 0.03, milestones: []}}
linear_probe: {{epochs: 5}}
proxy: {{epochs: 5, batch_size: 64}}
costs: {{label_price: 0.1, device_hour: {{cpu: 1.0}}}}
executor: {executor}
tracking: {tracking}
feature_store: {root}/features
state_dir: {root}/state
"""


def write_grid(
    root,
    name,
    budgets=(10, 20, 30),
    seeds=(0,),
    strategies=("random", "margin"),
    executor="{kind: local, max_parallel: 1}",
    tracking="{}",
):
    """A tiny grid (MNIST-5k, 200-image pool, 32 px) named ``name``; random, svpp-lpft and
    asvp-auto (scheduled update at 20 labels) cells per seed and strategy."""
    path = root / f"{name}.yaml"
    text = GRID.format(
        name=name,
        budgets=list(budgets),
        seeds=list(seeds),
        strategies="[" + ", ".join(strategies) + "]",
        executor=executor,
        tracking=tracking,
        root=root,
    )
    path.write_text(text)
    return path


def runs_of(uri, grid_name):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[grid_name])


def outcome(uri, run_id):
    """What must be identical between two runs of a cell: selections and accuracy curve."""
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    order = mlflow.artifacts.load_dict(f"runs:/{run_id}/labeled_order.json")
    curve = {m.step: m.value for m in client.get_metric_history(run_id, "accuracy/test_acc")}
    rounds = [
        mlflow.artifacts.load_dict(f"runs:/{run_id}/rounds/round_{r:03d}.json")["selected"]
        for r in range(len(curve))
    ]
    return order, curve, rounds


def rounds_saved(checkpoint):
    """Rounds saved in a cell's round checkpoint directory (0 if absent, or being replaced)."""
    with contextlib.suppress(OSError, ValueError):
        return len(json.loads((checkpoint / "state.json").read_text())["state"]["rounds"])
    return 0


def checkpointed_rounds(state_dir):
    """Rounds saved in each cell's round checkpoint under a state directory."""
    return [rounds_saved(path.parent) for path in state_dir.glob("*/checkpoints/*/state.json")]


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
