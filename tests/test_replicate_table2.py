"""`make replicate-table2`: the preflight that stops a grid with nothing to run on, and the whole
path (preflight, local run, report) on a grid in table2.yaml's format over real-format
fixtures: CIFAR-10-LT from CIFAR's pickled batches, ImageNet as an ImageFolder tree, and a
ResNet-50 checkpoint in BYOL-EMAN's format."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import yaml

from tests.checkpoint_fixtures import write_byol_eman_checkpoint
from tests.data_fixtures import IMAGENET_WNIDS, write_cifar10, write_imagenet_folder

REPO = Path(__file__).resolve().parents[1]
TABLE2 = REPO / "experiments" / "table2.yaml"
CHECKPOINT = "res50_byol_eman_200ep.pth.tar"


def _environment(tmp_path: Path, data: Path, checkpoints: Path) -> dict[str, str]:
    """Where the grid looks (its ${...} references) and where runs go: all under tmp_path."""
    return {
        **os.environ,
        "ASVP_DATA": str(data),
        "ASVP_CHECKPOINTS": str(checkpoints),
        "ASVP_FEATURES": str(tmp_path / "features"),
        "ASVP_STATE": str(tmp_path / "state"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }


def _make(target_args: list[str], env: dict[str, str], timeout: float):
    return subprocess.run(
        ["make", "-C", str(REPO), "--no-print-directory", "replicate-table2", *target_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _runs(tmp_path: Path, experiment: str):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    if mlflow.get_experiment_by_name(experiment) is None:
        return []
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_without_data_or_checkpoints_it_stops_in_preflight_and_submits_nothing(tmp_path):
    data, checkpoints = tmp_path / "no-data", tmp_path / "no-checkpoints"
    started = time.perf_counter()
    done = _make([], _environment(tmp_path, data, checkpoints), timeout=120)
    elapsed = time.perf_counter() - started
    assert done.returncode != 0
    assert elapsed < 60
    message = done.stderr
    assert "nothing was submitted" in message
    for folder in ("imagenet", "cifar-10-batches-py", "cifar-100-python", "oxford-iiit-pet"):
        assert f"looked at: {data / folder}" in message
    for dataset in ("imagenet", "cifar10", "cifar100", "cifar10_lt", "pets"):
        assert f"dataset {dataset!r}" in message
    assert f"looked at: {checkpoints / CHECKPOINT}" in message
    assert "exponential-moving-average-normalization" in message  # where to get it
    assert "tracking URI" in message  # slurm with a SQLite store is refused too
    assert _runs(tmp_path, "table2") == []
    assert not (tmp_path / "state").exists()


def _fixture_grid(tmp_path: Path) -> Path:
    """table2.yaml with its structure and ${...} references kept, made small: two datasets
    (CIFAR-10-LT, ImageNet) with tiny budgets and fine-tunes, one seed, two strategies, the
    full-data cell, per-dataset settings and SLURM resources, a CPU price, one thread."""
    grid = yaml.safe_load(TABLE2.read_text())
    grid["name"] = "table2-fixture"
    grid["seeds"] = [0]
    grid["image_size"] = 32
    grid["strategies"] = ["random", "margin"]
    grid["pipelines"] = [p for p in grid["pipelines"] if p["train_method"] != "lpft"]
    grid["finetune"] = {**grid["finetune"], "epochs": 2, "batch_size": 16, "milestones": [1]}
    grid["linear_probe"] = {"epochs": 3, "lr": 0.5}
    grid["proxy"] = {**grid["proxy"], "epochs": 5, "batch_size": 64}
    grid["trigger"] = {"rule": "schedule", "at_labels": [10], "max_updates": 1}
    # one thread: a cell never computes with more threads than the CPUs it is given, and the
    # local executor on a CI machine gives it one or two
    grid["compute"] = {**grid["compute"], "threads": 1}
    by_name = {spec["name"]: spec for spec in grid["datasets"]}
    # a random-weight ResNet-50 (the fixture checkpoint) needs gentle steps: its re-extracted
    # features must stay within float16, as real features do
    small_finetune = {
        "epochs": 2,
        "batch_size": 16,
        "lr_backbone": 0.001,
        "lr_head": 0.01,
        "milestones": [1],
        "eval_batch_size": 64,
    }
    lt, imagenet = by_name["cifar10_lt"], by_name["imagenet"]
    lt.update(budgets=[5, 10, 15], finetune=small_finetune)
    imagenet.update(budgets=[5, 10, 15], finetune=small_finetune)
    grid["datasets"] = [lt, imagenet]
    path = tmp_path / "table2-fixture.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def test_the_replicate_path_runs_and_reports_a_table2_format_grid_on_fixtures(tmp_path):
    data, checkpoints = tmp_path / "data", tmp_path / "checkpoints"
    write_cifar10(data, train_per_class=20, test_per_class=4)
    write_imagenet_folder(data, classes=IMAGENET_WNIDS[:5], train_per_class=6, val_per_class=3)
    checkpoints.mkdir()
    write_byol_eman_checkpoint(checkpoints / CHECKPOINT)
    grid = _fixture_grid(tmp_path)
    out = tmp_path / "report"
    env = _environment(tmp_path, data, checkpoints)
    done = _make([f"TABLE2={grid}", "EXECUTOR=local", f"REPORT_DIR={out}"], env, timeout=1700)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "preflight:" in done.stdout and "ready" in done.stdout

    runs = _runs(tmp_path, "table2-fixture")
    # per dataset: random, full, margin x (standard-ft, svpp-ft, asvp-auto)
    assert len(runs) == 10
    assert {run.data.tags["state"] for run in runs} == {"finished"}
    full = [run for run in runs if run.data.tags["pipeline"] == "full"]
    assert sorted(run.data.tags["dataset"] for run in full) == ["cifar10_lt", "imagenet"]
    lt_run = next(r for r in runs if r.data.tags["dataset"] == "cifar10_lt")
    kept = mlflow.artifacts.download_artifacts(
        run_id=lt_run.info.run_id, artifact_path="dataset/cifar10_lt_kept_indices.npy"
    )
    assert len(np.load(kept)) == sum(int(20 * 0.1 ** (c / 9)) for c in range(10))  # 78

    for name in ("table2.csv", "table2.md", "table2.tex"):
        assert (out / name).stat().st_size > 0, name
    figures = sorted(path.name for path in (out / "figures").glob("*.png"))
    for dataset in ("cifar10_lt", "imagenet"):
        assert f"accuracy_{dataset}.png" in figures
        assert f"cost_{dataset}.png" in figures
    assert "svpp-ft" in (out / "table2.md").read_text()
    assert _runs(tmp_path, "published")  # the paper's values beside ours
