"""Own data as a first-class dataset (issue 16): several ``imagefolder`` datasets in one grid,
each with its own label (run names, tables, figure files, executor settings, preflight), the
one-folder layout with a seeded held-out test set, and dataset options that list the valid
ones. Grids are checked without data; the splits read tiny image folders."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_fixtures import write_image_folder
from mlflow.tracking import MlflowClient
from report_data import record_finished_runs

from asvp.data import check_dataset_options, load_dataset
from asvp.data.folder import HELD_OUT_ARTIFACT, held_out_rows
from benchmark.cli import main
from benchmark.grid import GridError, expand_cells, load_grid
from benchmark.preflight import preflight

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "own-data.yaml"

GRID = """
name: own
data_root: {root}
datasets:
  - name: imagefolder
    label: flowers
    options: {{path: flowers}}
    budgets: [4, 8]
  - name: imagefolder
    label: parts
    options: {{path: parts, test_fraction: 0.25, split_seed: 0}}
    budgets: [4, 8]
backbone: efficientnet_lite0
image_size: 32
seeds: [0, 1]
strategies: [random, margin]
pipelines:
  - {{pipeline: svpp, train_method: ft}}
finetune: {{epochs: 1, batch_size: 8, milestones: []}}
costs: {{label_price: 0.05, device_hour: {{cpu: 0.1}}}}
executor: {{kind: local}}
"""


def grid_file(tmp_path: Path, text: str = GRID, name: str = "own.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.format(root=tmp_path / "data"))
    return path


def refusal(tmp_path: Path, text: str) -> str:
    """The message of the GridError that loading ``text`` raises."""
    with pytest.raises(GridError) as caught:
        load_grid(grid_file(tmp_path, text))
    return str(caught.value)


def entry(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


# -- the grid ------------------------------------------------------------------------------


def test_the_example_grid_validates_with_two_labelled_own_datasets(capsys):
    assert main(["validate", str(EXAMPLE)]) == 0
    assert "valid grid 'own-data', 30 cells" in capsys.readouterr().out
    grid = load_grid(EXAMPLE)
    assert [(spec.name, spec.label) for spec in grid.datasets] == [
        ("imagefolder", "flowers"),
        ("imagefolder", "parts"),
    ]
    assert grid.datasets[1].options == {"path": "parts", "test_fraction": 0.2, "split_seed": 0}


def test_two_labelled_imagefolders_expand_into_distinct_cells_and_run_names(tmp_path):
    cells = expand_cells(load_grid(grid_file(tmp_path)))
    assert len(cells) == 2 * 2 * (1 + 1)  # datasets x seeds x (random + svpp/margin)
    assert {cell.config.dataset for cell in cells} == {"imagefolder"}
    by_label = {
        label: [c for c in cells if c.dataset_label == label] for label in ("flowers", "parts")
    }
    assert [len(members) for members in by_label.values()] == [4, 4]
    assert {c.config.dataset_options["path"] for c in by_label["parts"]} == {"parts"}
    names = [cell.run_name for cell in cells]
    assert len(set(names)) == len(names) == len({cell.run_key for cell in cells})
    assert names[:4] == [
        "random-ft/random/s0 · flowers",
        "svpp-ft/margin/s0 · flowers",
        "random-ft/random/s1 · flowers",
        "svpp-ft/margin/s1 · flowers",
    ]
    assert all(name.endswith(" · parts") for name in names[4:])


def test_a_label_is_not_part_of_the_run_key(tmp_path):
    plain = entry(GRID, "    label: flowers\n", "")
    relabelled = entry(GRID, "label: flowers", "label: roses")
    keys = [
        [c.run_key for c in expand_cells(load_grid(grid_file(tmp_path, text, f"{i}.yaml")))]
        for i, text in enumerate((GRID, plain, relabelled))
    ]
    assert keys[0] == keys[1] == keys[2]


def test_a_label_given_twice_is_refused_with_the_key_and_what_to_do(tmp_path):
    text = entry(GRID, "label: parts", "label: flowers")
    message = refusal(tmp_path, text)
    assert "datasets[1].label: got 'flowers'; expected each dataset label at most once" in message
    assert "already the label of datasets[0]" in message and "its own label" in message


def test_the_same_dataset_twice_without_labels_asks_for_a_label(tmp_path):
    text = entry(entry(GRID, "    label: flowers\n", ""), "    label: parts\n", "")
    message = refusal(tmp_path, text)
    assert (
        "datasets[1].name: got 'imagefolder'; expected each dataset label at most once" in message
    )
    assert "a label defaults to the dataset's name" in message


def test_two_labels_for_the_same_cells_are_refused(tmp_path):
    text = entry(GRID, "{path: parts, test_fraction: 0.25, split_seed: 0}", "{path: flowers}")
    expected = "expected a dataset entry that differs from datasets[0] in more than its label"
    assert f"datasets[1].label: got 'parts'; {expected}" in refusal(tmp_path, text)
    other_budgets = entry(text, "budgets: [4, 8]\nbackbone", "budgets: [4, 12]\nbackbone")
    assert len(load_grid(grid_file(tmp_path, other_budgets, "b.yaml")).datasets) == 2


@pytest.mark.parametrize("label", ["a/b", "../up", ".hidden", "with space", ""])
def test_a_label_must_be_a_file_name_token(tmp_path, label):
    text = entry(GRID, "label: parts", f"label: {label!r}")
    assert f"datasets[1].label: got {label!r}; expected a label made of" in refusal(tmp_path, text)


def test_a_wrong_dataset_option_lists_the_valid_ones(tmp_path):
    text = entry(GRID, "{path: flowers}", "{root: /data/flowers}")
    message = refusal(tmp_path, text)
    assert "datasets[0].options.root: got '/data/flowers'; expected a known option; allowed: " in (
        message
    )
    for option in ("path (required)", "train (default None)", "test_fraction", "split_seed"):
        assert option in message
    assert "the grid's data_root key" in message
    assert "datasets[0].options.path: got '<missing>'" in message


def test_a_test_folder_and_a_test_fraction_together_are_refused(tmp_path):
    text = entry(GRID, "{path: parts, test_fraction", "{path: parts, test: val, test_fraction")
    expected = "expected no train or test folder with test_fraction"
    assert f"datasets[1].options.test: got 'val'; {expected}" in refusal(tmp_path, text)
    with pytest.raises(
        ValueError, match=r"test_fraction: got 1\.0; expected a finite number in \(0, 1\)"
    ):
        check_dataset_options("imagefolder", {"path": "p", "test_fraction": 1.0})


def test_executor_settings_are_per_label(tmp_path):
    text = entry(GRID, "    label: parts\n", "    label: parts\n    executor: {{mem_gb: 99}}\n")
    grid = load_grid(grid_file(tmp_path, text))
    assert grid.executor_for("parts", grid.executor).mem_gb == 99
    assert grid.executor_for("flowers", grid.executor).mem_gb == grid.executor.mem_gb
    with pytest.raises(KeyError, match="no dataset labelled 'imagefolder'; labels: flowers, parts"):
        grid.executor_for("imagefolder", grid.executor)


# -- the one-folder layout -----------------------------------------------------------------


def test_held_out_rows_are_stratified_seeded_and_leave_every_class_in_both_parts():
    labels = np.repeat(np.arange(3), [10, 4, 2])
    rows = held_out_rows(labels, 0.25, seed=0)
    assert np.all(np.diff(rows) > 0)
    assert np.bincount(labels[rows], minlength=3).tolist() == [2, 1, 1]  # round(2.5)=2, 1, 1
    assert np.array_equal(rows, held_out_rows(labels, 0.25, seed=0))
    others = [held_out_rows(labels, 0.25, seed=s) for s in range(1, 6)]
    assert any(not np.array_equal(rows, other) for other in others)
    with pytest.raises(ValueError, match="class 'lonely' has only 1 image"):
        held_out_rows(np.array([0, 0, 1]), 0.5, 0, ("many", "lonely"))


def test_one_folder_is_split_into_pool_and_test_by_the_seed(tmp_path):
    write_image_folder(tmp_path / "parts", ["bolt", "nut", "washer"], [8, 6, 4], size=(8, 8))
    split = load_dataset("imagefolder", root=tmp_path, path="parts", test_fraction=0.25)
    assert (len(split.pool), len(split.test)) == (13, 5)  # held out: 2 of 8, 2 of 6, 1 of 4
    test_rows = split.artifacts[HELD_OUT_ARTIFACT]
    all_labels = np.repeat(np.arange(3), [8, 6, 4])
    assert np.array_equal(split.test.labels, all_labels[test_rows])
    pool_rows = np.setdiff1d(np.arange(18), test_rows)
    assert np.array_equal(split.pool.labels, all_labels[pool_rows])
    again = load_dataset("imagefolder", root=tmp_path, path="parts", test_fraction=0.25)
    assert np.array_equal(again.artifacts[HELD_OUT_ARTIFACT], test_rows)
    seeds = [
        load_dataset(
            "imagefolder", root=tmp_path, path="parts", test_fraction=0.25, split_seed=s
        ).artifacts[HELD_OUT_ARTIFACT]
        for s in range(1, 4)
    ]
    assert any(not np.array_equal(rows, test_rows) for rows in seeds)


def test_the_split_options_are_in_the_run_key(tmp_path):
    keys = []
    for i, options in enumerate(
        [
            "test_fraction: 0.25, split_seed: 0",
            "test_fraction: 0.25, split_seed: 1",
            "test_fraction: 0.3, split_seed: 0",
        ]
    ):
        text = entry(GRID, "test_fraction: 0.25, split_seed: 0", options)
        cells = expand_cells(load_grid(grid_file(tmp_path, text, f"{i}.yaml")))
        keys.append({c.run_key for c in cells if c.dataset_label == "parts"})
    assert keys[0].isdisjoint(keys[1]) and keys[0].isdisjoint(keys[2])


# -- preflight and report ------------------------------------------------------------------


def test_the_preflight_names_each_dataset_by_its_label(tmp_path):
    grid = load_grid(grid_file(tmp_path))
    write_image_folder(tmp_path / "data" / "parts", ["a", "b"], 4, size=(8, 8))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    problems = [p.item for p in preflight(grid, grid.executor, uri, False).problems]
    assert "dataset 'flowers' (imagefolder)" in problems
    assert "dataset 'parts' (imagefolder): last budget 8 exceeds its pool of 6 images" in problems


def test_tables_and_figures_have_a_row_and_a_file_per_label(tmp_path, capsys):
    grid = load_grid(grid_file(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record_finished_runs(MlflowClient(uri), grid)
    out = tmp_path / "report"
    assert main(["report", str(grid.path), "--tracking-uri", uri, "--out", str(out)]) == 0
    table = pd.read_csv(out / "table2.csv")
    assert set(table["dataset"]) == {"flowers", "parts"}
    assert len(table[table["dataset"] == "flowers"]) == len(table[table["dataset"] == "parts"])
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"accuracy_flowers.png", "accuracy_parts.png"} <= figures
    assert not any("imagefolder" in name for name in figures)


def test_a_run_of_two_own_datasets_records_each_under_its_label(tmp_path):
    """``asvp-bench run`` (debug executor) on two tiny folders, one split by test_fraction."""
    data = tmp_path / "data"
    write_image_folder(data / "flowers" / "train", ["a", "b", "c"], 6, size=(16, 16), seed=1)
    write_image_folder(data / "flowers" / "val", ["a", "b", "c"], 2, size=(16, 16), seed=2)
    write_image_folder(data / "parts", ["x", "y"], 8, size=(16, 16), seed=3)
    text = entry(entry(GRID, "budgets: [4, 8]", "budgets: [3, 6]"), "seeds: [0, 1]", "seeds: [0]")
    text = entry(text, "{{kind: local}}", "{{kind: debug}}\nproxy: {{epochs: 2}}")
    text += "feature_store: {root}/../store/features\nstate_dir: {root}/../store/state\n"
    path = grid_file(tmp_path, text)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", str(path), "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("own")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [
        "random-ft/random/s0 · flowers",
        "random-ft/random/s0 · parts",
        "svpp-ft/margin/s0 · flowers",
        "svpp-ft/margin/s0 · parts",
    ]
    for name, run in runs.items():
        assert run.data.tags["state"] == "finished"
        assert run.data.tags["dataset_label"] == name.split(" · ")[1]
        held_out = [a.path for a in client.list_artifacts(run.info.run_id, "dataset")]
        assert held_out == (["dataset/imagefolder_test_rows.npy"] if "parts" in name else [])
    labels = np.repeat([0, 1], 8)
    rows = held_out_rows(labels, 0.25, 0)
    local = client.download_artifacts(
        runs["svpp-ft/margin/s0 · parts"].info.run_id, "dataset/imagefolder_test_rows.npy", tmp_path
    )
    assert np.array_equal(np.load(local), rows)
