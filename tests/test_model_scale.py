"""The model-scale view (the paper's Figure 1): one dataset under several backbones, a point per
backbone and pipeline, from a synthetic store and from a recorded grid."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from report_data import COSTS, record_finished_runs, synthetic_curves

from asvp.models.backbones import load_backbone
from benchmark.cli import main
from benchmark.grid import load_grid
from benchmark.report import (
    MODEL_SCALE_COLUMNS,
    model_scale_table,
    scale_entries,
    seed_summaries,
    write_model_scale,
)
from benchmark.tracking import MlflowClient

# dataset label -> (backbone, how much slower its standard AL selects than the smallest's)
ENTRIES = {
    "digits-big": ("efficientnet_lite2", 3.0),
    "digits-small": ("efficientnet_lite0", 1.0),
    "digits-mid": ("efficientnet_lite1", 2.0),
}


def _scaled(curve):
    """``curve`` moved onto its label's backbone, on one registry dataset (mnist5k); standard
    AL's sampling time scaled by the label's factor."""
    backbone, factor = ENTRIES[curve.cell.dataset_label]
    config = dataclasses.replace(curve.cell.config, dataset="mnist5k", backbone=backbone)
    seconds = curve.sampling_seconds * (factor if config.pipeline == "standard" else 1.0)
    cell = dataclasses.replace(curve.cell, config=config)
    return dataclasses.replace(curve, cell=cell, sampling_seconds=seconds)


@pytest.fixture(scope="module")
def scaled():
    curves = [_scaled(c) for c in synthetic_curves(datasets=tuple(ENTRIES), strategies=("margin",))]
    return curves, seed_summaries(curves, COSTS)


def _parameters(name):
    return sum(p.numel() for p in load_backbone(name).network.parameters())


def test_only_a_dataset_under_several_backbones_gets_the_view(scaled):
    curves, _ = scaled
    assert set(scale_entries(curves)) == {"mnist5k"}
    assert set(scale_entries(curves)["mnist5k"]) == set(ENTRIES)
    one_backbone = synthetic_curves(datasets=("a", "b"), strategies=("margin",))
    assert scale_entries(one_backbone) == {}


def test_the_table_orders_backbones_by_size_and_holds_the_seed_statistics(scaled):
    curves, summaries = scaled
    table = model_scale_table(curves, summaries, "mnist5k")
    assert list(table.columns) == list(MODEL_SCALE_COLUMNS)
    order = list(dict.fromkeys(table["backbone"]))
    assert order == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    sizes = table.drop_duplicates("backbone")["parameters"].tolist()
    assert sizes == [_parameters(name) for name in order] and sizes == sorted(sizes)
    assert "full-ft" not in set(table["pipeline"])  # full-data cells are no point of the view
    for row in table.itertuples():
        mine = summaries[
            (summaries["dataset"] == row.label) & (summaries["pipeline"] == row.pipeline)
        ]
        assert row.seeds == len(mine) == 3
        assert row.sampling_hours_mean == pytest.approx(mine["sampling_hours"].mean())
        assert row.sampling_hours_std == pytest.approx(mine["sampling_hours"].std(ddof=1))
        assert row.final_acc_mean == pytest.approx(mine["final_acc"].mean())
        assert row.final_acc_std == pytest.approx(mine["final_acc"].std(ddof=1))


def test_the_growth_says_which_pipeline_selects_slower_as_the_backbone_grows(scaled):
    curves, summaries = scaled
    table = model_scale_table(curves, summaries, "mnist5k")
    growth = table.pivot(index="backbone", columns="pipeline", values="sampling_growth")
    assert growth["standard-ft"].tolist() == pytest.approx([1.0, 2.0, 3.0])
    assert growth["svpp-lpft"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert growth["random-ft"].isna().all()  # no sampling time: no growth


def test_the_figure_and_the_tables_are_written(scaled, tmp_path):
    curves, summaries = scaled
    written = write_model_scale(curves, summaries, tmp_path)
    assert written == [tmp_path / "figures" / "model_scale_mnist5k.png"]
    assert written[0].stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "model_scale_mnist5k.csv")
    expected = model_scale_table(curves, summaries, "mnist5k")
    assert np.allclose(table["sampling_hours_mean"], expected["sampling_hours_mean"])
    markdown = (tmp_path / "model_scale_mnist5k.md").read_text()
    assert "| efficientnet_lite2 | 4.81M | standard-ft | margin | 3 |" in markdown
    assert "3.00" in markdown  # standard AL's growth on the largest backbone


GRID = """\
name: scale
datasets:
  - {{name: mnist5k, label: small, backbone: efficientnet_lite0, budgets: [20, 40],
     options: {{test_size: 50, pool_size: 100}}}}
  - {{name: mnist5k, label: large, backbone: efficientnet_lite2, budgets: [20, 40],
     options: {{test_size: 50, pool_size: 100}}}}
backbone: efficientnet_lite0
seeds: [0, 1]
strategies: [random, margin]
pipelines:
  - {{pipeline: standard, train_method: ft}}
  - {{pipeline: svpp, train_method: lpft}}
costs: {{label_price: 0.05, device_hour: {{cpu: 0.1}}}}
feature_store: {root}/features
state_dir: {root}/state
"""


def test_the_report_of_a_grid_under_two_backbones_draws_the_view(tmp_path):
    path = tmp_path / "scale.yaml"
    path.write_text(GRID.format(root=tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record_finished_runs(MlflowClient(uri), load_grid(path))
    out = tmp_path / "report"
    assert main(["report", str(path), "--tracking-uri", uri, "--out", str(out)]) == 0
    assert (out / "figures" / "model_scale_mnist5k.png").exists()
    table = pd.read_csv(out / "model_scale_mnist5k.csv")
    assert list(dict.fromkeys(table["label"])) == ["small", "large"]
    assert set(table["pipeline"]) == {"random-ft", "standard-ft", "svpp-lpft"}
