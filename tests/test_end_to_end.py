"""A tiny grid through the same code path as `make demo`: CLI run -> MLflow -> report.

Real pieces only: MNIST-5k pixels, EfficientNet-Lite0 weights fine-tuned whole, a SQLite MLflow
store read back through MLflow's own API, and cells run in separate processes by the local
executor.
"""

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.grid import expand_cells, load_grid

GRID = """
name: tiny
datasets:
  - name: mnist5k
    options: {{test_size: 100, pool_size: 200}}
    budgets: [10, 20, 30]
backbone: efficientnet_lite0
image_size: 32
seeds: [0]
strategies: [random, margin]
pipelines:
  - {{pipeline: standard, train_method: ft}}
  - {{pipeline: svpp, train_method: lpft}}
  - {{pipeline: asvp, train_method: auto}}
finetune: {{epochs: 1, batch_size: 8, lr_backbone: 0.003, lr_head: 0.03, milestones: []}}
linear_probe: {{epochs: 5}}
proxy: {{epochs: 5, batch_size: 64}}
trigger: {{rule: logme, threshold: 1000.0, max_updates: 1}}   # fires at the first budget
costs: {{label_price: 0.1, reviews_per_label: 2, device_hour: {{cpu: 1.0, cuda: 3.06}}}}
feature_store: {store}
"""


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    grid_path = root / "tiny.yaml"
    grid_path.write_text(GRID.format(store=root / "features"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert main(["run", str(grid_path), "--tracking-uri", uri, "--max-parallel", "2"]) == 0
    mlflow.set_tracking_uri(uri)
    return grid_path, uri, root


def _runs(uri):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["tiny"])


def test_every_cell_has_one_finished_run_with_its_curve(finished_grid):
    grid_path, uri, _ = finished_grid
    runs = _runs(uri)
    cells = expand_cells(load_grid(grid_path))
    assert len(runs) == len(cells) == 4
    assert set(runs["tags.run_key"]) == {cell.run_key for cell in cells}
    assert set(runs["tags.state"]) == {"finished"}
    client = MlflowClient()
    for run_id in runs["run_id"]:
        history = client.get_metric_history(run_id, "accuracy/test_acc")
        assert sorted(m.step for m in history) == [10, 20, 30]
        assert all(0.0 <= m.value <= 1.0 for m in history)
        assert client.get_metric_history(run_id, "time/finetune_seconds")
        first_round = mlflow.artifacts.load_dict(f"runs:/{run_id}/rounds/round_000.json")
        assert len(first_round["selected"]) == 10
        order = mlflow.artifacts.load_dict(f"runs:/{run_id}/labeled_order.json")
        assert len(order) == len(set(order)) == 30


def test_the_asvp_cell_updated_its_features(finished_grid):
    runs = _runs(finished_grid[1])
    (asvp_id,) = runs.loc[runs["tags.pipeline"] == "asvp", "run_id"]
    client = MlflowClient()
    updates = {m.step: m.value for m in client.get_metric_history(asvp_id, "indicator/update")}
    assert updates == {10: 1.0, 20: 0.0, 30: 0.0}
    versions = {m.step: m.value for m in client.get_metric_history(asvp_id, "features/version")}
    assert versions == {10: 1.0, 20: 1.0, 30: 1.0}
    assert client.get_run(asvp_id).data.tags["feature_updates_at"] == "[10]"


def test_a_second_run_skips_finished_cells(finished_grid, capsys):
    grid_path, uri, _ = finished_grid
    assert main(["run", str(grid_path), "--tracking-uri", uri]) == 0
    assert "4 finished, 0 to run" in capsys.readouterr().out
    assert len(_runs(uri)) == 4


def test_report_writes_the_table_from_the_runs(finished_grid, tmp_path, capsys):
    grid_path, uri, _ = finished_grid
    assert main(["report", str(grid_path), "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    table = (tmp_path / "table2.csv").read_text()
    for row in ("random-ft", "standard-ft", "svpp-lpft", "asvp-auto"):
        assert row in table and row in printed
    assert "$0.1 per label x 2 review(s)" in (tmp_path / "table2.md").read_text()
    assert "asvp-bench's own" in printed
    regions = pd.read_csv(tmp_path / "discrepancy.csv")
    assert sorted(set(regions["pipeline"])) == ["asvp-auto", "svpp-lpft"]
    assert sorted(set(regions["labels"])) == [10, 20]
    assert ((regions["both"] + regions["proxy_only"]) == 10).all()
    assert ((regions["both"] + regions["model_only"]) == 10).all()


def test_proxy_cells_log_what_the_fine_tuned_model_would_select(finished_grid):
    runs = _runs(finished_grid[1])
    (svpp_id,) = runs.loc[runs["tags.pipeline"] == "svpp", "run_id"]
    first_round = mlflow.artifacts.load_dict(f"runs:/{svpp_id}/rounds/round_000.json")
    assert len(first_round["model_selected"]) == 10
    both = len(set(first_round["model_selected"]) & set(first_round["selected"]))
    assert first_round["discrepancy"]["both"] == both
    history = MlflowClient().get_metric_history(svpp_id, "discrepancy/overlap")
    overlap = {m.step: m.value for m in history}
    assert set(overlap) == {10, 20}
    assert overlap[10] == pytest.approx(both / 10)


def test_a_misspelt_key_stops_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GRID.format(store=tmp_path / "f").replace("strategies:", "strategys:"))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(bad), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert str(bad) in error and "strategys" in error
    assert not (tmp_path / "m.db").exists()
