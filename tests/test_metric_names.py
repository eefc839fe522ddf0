"""Per-round metrics go into MLflow sections (``accuracy/``, ``time/``, ``features/``,
``indicator/``, ``discrepancy/``) so that the test accuracy leads the chart view, and stores
logged under the flat names of before still report the same tables."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from report_data import record_finished_runs

from benchmark import metric_names as names
from benchmark.cli import main
from benchmark.grid import load_grid

GRID = """
name: {name}
datasets:
  - name: mnist5k
    budgets: [20, 40, 60]
seeds: [0, 1]
strategies: [random, margin]
pipelines:
  - {{pipeline: standard, train_method: ft}}
  - {{pipeline: svpp, train_method: lpft}}
backbone: efficientnet_lite0
feature_store: {store}
costs: {{label_price: 0.5, reviews_per_label: 2, device_hour: {{cpu: 3.0}}, note: "Test prices."}}
"""


@pytest.mark.parametrize(
    ("sectioned", "flat"),
    [
        (names.SAMPLING_SECONDS, "sampling_seconds"),
        (names.EVALUATION_SECONDS, "evaluation_seconds"),
        (names.phase_seconds("finetune"), "time_finetune"),
        (names.FEATURE_VERSION, "feature_version"),
        (names.INDICATOR_UPDATE, "indicator_update"),
        (names.discrepancy("overlap"), "discrepancy_overlap"),
        (names.TEST_ACC, "test_acc"),
    ],
)
def test_each_sectioned_name_knows_its_flat_name(sectioned, flat):
    assert names.flat_name(sectioned) == flat
    assert names.logged_name(sectioned, {flat: 1.0}) == flat
    assert names.logged_name(sectioned, {sectioned: 1.0, flat: 1.0}) == sectioned


def test_the_accuracy_section_sorts_before_every_other_section():
    """MLflow 3.17 orders the chart view's sections alphabetically, unprefixed metrics last."""
    logged = [
        names.TEST_ACC,
        names.SAMPLING_SECONDS,
        names.EVALUATION_SECONDS,
        names.FEATURE_VERSION,
        names.INDICATOR_VALUE,
        names.INDICATOR_REFERENCE,
        names.INDICATOR_UPDATE,
        names.phase_seconds("extract_features"),
        names.discrepancy("both"),
        "summary/final_acc",
    ]
    sections = sorted({name.rsplit("/", 1)[0] for name in logged if "/" in name})
    assert len(sections) == 6 and all("/" in name for name in logged)
    assert sections[0] == names.TEST_ACC.rsplit("/", 1)[0]
    assert sum(name.startswith(sections[0] + "/") for name in logged) == 1  # alone in it


def _report(tmp_path, name: str, flat: bool) -> pd.DataFrame:
    path = tmp_path / f"{name}.yaml"
    path.write_text(GRID.format(name=name, store=tmp_path / "features"))
    uri = f"sqlite:///{tmp_path / name}.db"
    record_finished_runs(MlflowClient(uri), load_grid(path), flat_names=flat)
    out = tmp_path / name
    assert main(["report", str(path), "--tracking-uri", uri, "--out", str(out)]) == 0
    return pd.read_csv(out / "table2.csv"), pd.read_csv(out / "discrepancy.csv")


def test_a_store_of_flat_names_reports_the_same_tables(tmp_path):
    table, regions = _report(tmp_path, "sectioned", flat=False)
    old_table, old_regions = _report(tmp_path, "flat", flat=True)
    pd.testing.assert_frame_equal(table, old_table)
    pd.testing.assert_frame_equal(regions, old_regions)
    assert len(regions) > 0 and table["sampling h"].notna().all()


def test_measurements_of_how_a_run_ran_are_told_from_what_it_computed():
    """Wall seconds, throughput and memory differ between two runs of one cell; accuracy,
    features, indicators and discrepancies do not."""
    measured = [
        names.SAMPLING_SECONDS,
        names.phase_seconds("finetune"),
        names.FINETUNE_IMAGES_PER_SECOND,
        names.FINETUNE_PEAK_GPU_MEMORY_GIB,
        "time_finetune",  # an old flat name
    ]
    computed = [
        names.TEST_ACC,
        names.FEATURE_VERSION,
        names.INDICATOR_VALUE,
        names.discrepancy("both"),
        "test_acc",
    ]
    assert all(names.is_measurement(name) for name in measured)
    assert not any(names.is_measurement(name) for name in computed)
