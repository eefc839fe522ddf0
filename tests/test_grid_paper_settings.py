"""Grid keys of paper-scale grids: data root, backbone checkpoints, per-dataset settings and
SLURM resources, full-data cells and replayed orders (benchmark/grid/), and the preflight's
checks of their data."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmark.grid import GridError, expand_cells, load_grid
from benchmark.launch import SlurmExecutor
from benchmark.preflight import preflight

BASE = textwrap.dedent(
    """\
    name: paper-like
    data_root: ${{TEST_DATA_ROOT:-{data_root}}}
    full_data: true
    datasets:
      - name: mnist5k
        options: {{test_size: 100, pool_size: 200}}
        budgets: [10, 20, 30]
        image_size: 32
        finetune: {{epochs: 2, milestones: []}}
        executor: {{gpus_per_node: 2, mem_gb: 8}}
    backbone: {backbone}
    image_size: 48
    seeds: [0]
    strategies: {strategies}
    pipelines:
      - {{pipeline: svpp, train_method: ft}}
    finetune: {{epochs: 5}}
    executor: {{kind: slurm, gpus_per_node: 1, mem_gb: 4, partition: gpu}}
    """
)


def _grid(tmp_path, backbone="efficientnet_lite0", strategies="[random, margin]", **env):
    path = tmp_path / "grid.yaml"
    path.write_text(
        BASE.format(data_root=tmp_path / "data", backbone=backbone, strategies=strategies)
    )
    return path


def test_dataset_settings_override_the_grids_and_paths_stay_out_of_run_keys(tmp_path, monkeypatch):
    grid = load_grid(_grid(tmp_path))
    cells = expand_cells(grid)
    assert [c.config.pipeline for c in cells] == ["random", "full", "svpp"]
    config = cells[2].config
    assert config.transform.size == 32 and config.finetune.epochs == 2
    assert config.finetune.milestones == () and config.finetune.lr_backbone == 0.01
    assert Path(config.data_root) == (tmp_path / "data").resolve()
    monkeypatch.setenv("TEST_DATA_ROOT", str(tmp_path / "elsewhere"))
    moved = expand_cells(load_grid(_grid(tmp_path)))
    assert moved[2].config.data_root != config.data_root
    assert [c.run_key for c in moved] == [c.run_key for c in cells]


def test_the_full_data_cell_has_no_budgets_and_is_named_all(tmp_path):
    full = expand_cells(load_grid(_grid(tmp_path)))[1]
    assert full.config.budgets == () and full.strategy_label == "all"
    assert full.run_name == "full-ft/all/s0 · mnist5k"


def test_each_dataset_gets_its_own_slurm_resources(tmp_path):
    grid = load_grid(_grid(tmp_path))
    settings = grid.executor_for("mnist5k", grid.executor)
    assert (settings.gpus_per_node, settings.mem_gb, settings.partition) == (2, 8.0, "gpu")
    parameters = SlurmExecutor(grid, grid.executor).sbatch_parameters(settings)
    assert parameters["gpus_per_node"] == 2 and parameters["mem"] == "8192M"


def test_a_dataset_may_not_set_an_unknown_executor_key(tmp_path):
    path = _grid(tmp_path)
    path.write_text(path.read_text().replace("mem_gb: 8}", "mem_gb: 8, kind: local}"))
    with pytest.raises(GridError, match=r"datasets\[0\]\.executor.*kind"):
        load_grid(path)


def test_a_replayed_order_is_keyed_by_its_content_and_labelled_by_the_grid(tmp_path):
    order = tmp_path / "alidx.npy"
    np.save(order, np.arange(50, dtype=np.int64))
    strategies = f"[random, {{name: replay, label: official, options: {{order: {order}}}}}]"
    cells = expand_cells(load_grid(_grid(tmp_path, strategies=strategies)))
    replay = cells[2]
    assert replay.run_name == "svpp-ft/official/s0 · mnist5k"
    moved = tmp_path / "moved.npy"
    order.rename(moved)
    path = _grid(tmp_path, strategies=strategies.replace(str(order), str(moved)))
    assert expand_cells(load_grid(path))[2].run_key == replay.run_key
    np.save(moved, np.arange(1, 51, dtype=np.int64))
    assert expand_cells(load_grid(path))[2].run_key != replay.run_key


def _preflight_problems(path: Path) -> list[str]:
    """The preflight's problems for the grid at ``path`` (debug executor, a local store)."""
    grid = load_grid(path)
    settings = dataclasses.replace(grid.executor, kind="debug")
    uri = f"sqlite:///{path.parent / 'mlflow.db'}"
    return [str(problem) for problem in preflight(grid, settings, uri, True).problems]


def test_a_replayed_order_that_does_not_fit_is_refused_by_the_preflight(tmp_path):
    """The grid checker reads no file; the preflight reads the order and refuses it."""
    order = tmp_path / "alidx.npy"
    np.save(order, np.arange(25, dtype=np.int64))
    strategies = f"[random, {{name: replay, options: {{order: {order}}}}}]"
    path = _grid(tmp_path, strategies=strategies)
    assert any("fewer than the last budget" in p for p in _preflight_problems(path))
    np.save(order, np.array([0, 1, 1] + list(range(2, 40)), dtype=np.int64))
    assert any("appears more than once" in p for p in _preflight_problems(path))
    np.save(order, np.arange(150, 250, dtype=np.int64))  # the pool holds 200 images
    assert any("index 249 is outside the pool (size 200)" in p for p in _preflight_problems(path))
    missing = r"strategies\[1\]\.order: got '<missing>'; expected .*required"
    with pytest.raises(GridError, match=missing):
        load_grid(_grid(tmp_path, strategies="[random, replay]"))


def test_a_budget_beyond_the_pool_is_refused_by_the_preflight(tmp_path):
    path = _grid(tmp_path)
    path.write_text(path.read_text().replace("budgets: [10, 20, 30]", "budgets: [10, 20, 300]"))
    assert load_grid(path).datasets[0].budgets == (10, 20, 300)  # the grid checker reads no data
    problems = _preflight_problems(path)
    assert any("last budget 300 exceeds its pool of 200 images" in p for p in problems), problems
