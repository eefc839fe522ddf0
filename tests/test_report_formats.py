"""The report's tables (CSV, Markdown, LaTeX), its per-seed metrics and what it logs to MLflow,
from synthetic curves and from runs recorded in a real SQLite MLflow store."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from report_data import BUDGETS, COSTS, POOL, make_cell, record_finished_runs, synthetic_curves

from benchmark.cli import main
from benchmark.grid import load_grid
from benchmark.report import (
    RATIO_TO_RANDOM,
    SUMMARY_METRICS,
    SUMMARY_PREFIX,
    ReportError,
    latex_escape,
    log_summaries,
    read_curves,
    seed_summaries,
    table2,
    table2_latex,
    write_report,
)

GRID = """
name: formats
datasets:
  - name: mnist5k
    options: {test_size: 100, pool_size: 200}
    budgets: [10, 20, 30, 40]
backbone: efficientnet_lite0
image_size: 32
seeds: [0, 1]
strategies: [random, margin]
pipelines:
  - {pipeline: standard, train_method: ft}
  - {pipeline: svpp, train_method: lpft}
  - {pipeline: asvp, train_method: auto}
costs: {label_price: 0.5, reviews_per_label: 2, device_hour: {cpu: 3.0}, note: "Test prices."}
"""


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One SQLite MLflow store for the module (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def summaries():
    return seed_summaries(synthetic_curves(never_reaching="badge"), COSTS)


def test_latex_escape_handles_every_special_character():
    assert latex_escape("a_b $5 10% R&D #1") == r"a\_b \$5 10\% R\&D \#1"
    assert latex_escape("{x}~^\\") == r"\{x\}\textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert latex_escape("0.120 ± 0.042") == r"0.120 $\pm$ 0.042"
    assert latex_escape("Grid `demo`.") == "Grid demo."


def test_latex_table_is_booktabs_with_one_row_per_table_row(summaries):
    table = table2(pd.concat([summaries, summaries.assign(dataset="pets")])).rows.fillna("")
    tex = table2_latex(table, "Prices: $0.8 per label.\n\nSSR = 1 - n/B", "tab:t2_x")
    lines = tex.splitlines()
    assert lines.index("\\toprule") < lines.index("\\bottomrule")
    assert f"\\begin{{tabular}}{{lll{'r' * (len(table.columns) - 4)}l}}" in tex
    body = [line for line in lines if line.endswith("\\\\")]
    assert len(body) == len(table) + 1  # header + rows
    assert all(line.count(" & ") == len(table.columns) - 1 for line in body)
    assert lines.count("\\midrule") == 2  # under the header, between the two datasets
    assert "\\caption{Prices: \\$0.8 per label. SSR = 1 - n/B}" in tex
    assert "\\label{tab:t2\\_x}" in tex
    assert "standard-ft & margin" in tex and "$\\pm$" in tex
    assert "±" not in tex


def test_write_report_writes_csv_markdown_and_latex(tmp_path, summaries):
    grid = load_grid_text(tmp_path)
    markdown = write_report(grid, table2(summaries), tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["table2.csv", "table2.md", "table2.tex"]
    assert "| SSR |" in markdown.splitlines()[0].replace("| seeds | SSR", "| SSR")
    tex = (tmp_path / "out" / "table2.tex").read_text()
    assert "\\$0.5 per label x 2 review(s); cpu: \\$3.0/device-hour. Test prices." in tex
    assert "asvp-bench's own" in tex
    csv = pd.read_csv(tmp_path / "out" / "table2.csv")
    assert {"SSR", "total cost (USD)", "AUBC", "cost saving vs random"} <= set(csv.columns)


def load_grid_text(tmp_path):
    path = tmp_path / "formats.yaml"
    path.write_text(GRID)
    return load_grid(path)


def test_costs_split_into_labelling_and_training(summaries):
    reached = summaries[np.isfinite(summaries["labels_needed"])]
    assert len(reached) > 0
    expected = reached["labels_needed"] * COSTS.label_price * COSTS.reviews_per_label
    np.testing.assert_allclose(reached["labelling_cost_usd"], expected)
    np.testing.assert_allclose(
        reached["labelling_cost_usd"] + reached["training_cost_usd"], reached["total_cost_usd"]
    )
    assert (reached.loc[reached["family"] == "random", "training_cost_usd"] == 0).all()
    never = summaries[(summaries["pipeline"] == "svpp-lpft") & (summaries["strategy"] == "badge")]
    assert never["ssr"].isna().all() and never["total_cost_usd"].isna().all()


def test_full_data_cells_show_accuracy_only_and_give_the_upper_bound(summaries):
    report = table2(summaries)
    (full,) = report.rows[report.rows["pipeline"] == "full-ft"].to_dict("records")
    assert full["strategy"] == "all" and full["SSR"] == "" and full["total cost (USD)"] == ""
    assert full["final acc"].startswith("0.9")
    assert list(report.rows["pipeline"][:2]) == ["random-ft", "full-ft"]
    bound = summaries.loc[summaries["family"] == "full", "final_acc"].mean()
    bound_line = f"cifar10: full-data upper bound (full-ft, 3 seed(s)) is {bound:.3f}"
    assert bound_line in report.references
    assert (summaries.loc[summaries["family"] == "full", "labels_needed"].isna()).all()
    assert POOL not in set(summaries["reference_budget"])


def test_a_dataset_without_random_baseline_is_an_error():
    curves = [c for c in synthetic_curves() if c.cell.config.pipeline != "random"]
    with pytest.raises(ReportError, match="no finished random-baseline run for cifar10"):
        seed_summaries(curves, COSTS, "grid.yaml")


def test_summary_metrics_are_logged_into_the_runs_once(uri):
    client = MlflowClient(uri)
    experiment = client.create_experiment("synthetic")
    curves = synthetic_curves(seeds=(0,), strategies=("badge",), never_reaching="badge")
    runs = seed_summaries([c for c in curves if c.cell.config.pipeline != "standard"], COSTS)
    runs["run_id"] = [client.create_run(experiment).info.run_id for _ in range(len(runs))]
    logged = log_summaries(client, runs)
    expected = 0
    for row in runs.to_dict("records"):
        metrics = client.get_run(row["run_id"]).data.metrics
        assert not set(metrics) & set(SUMMARY_METRICS)  # no bare name sorting among curves
        for name in SUMMARY_METRICS:
            key = f"{SUMMARY_PREFIX}{name}"
            if row["family"] == "random" and name in RATIO_TO_RANDOM:
                assert key not in metrics  # the reference is not scored against itself
            elif math.isnan(row[name]):
                assert key not in metrics  # NaN is skipped, not logged
            else:
                assert metrics[key] == pytest.approx(row[name])
                assert [m.step for m in client.get_metric_history(row["run_id"], key)] == [0]
                expected += 1
    assert logged == expected
    assert log_summaries(client, runs) == 0  # unchanged: nothing appended
    first = runs["run_id"].iloc[0]
    assert len(client.get_metric_history(first, "summary/final_acc")) == 1
    changed = runs.assign(final_acc=runs["final_acc"] + 0.01)
    assert log_summaries(client, changed) == len(runs)
    assert client.get_run(first).data.metrics["summary/final_acc"] == pytest.approx(
        changed["final_acc"].iloc[0]
    )


def test_report_command_writes_everything_and_logs_once(tmp_path, uri, capsys):
    grid = load_grid_text(tmp_path)
    client = MlflowClient(uri)
    assert record_finished_runs(client, grid) == 8
    out = tmp_path / "report"
    args = ["report", str(grid.path), "--tracking-uri", uri, "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    experiment = client.get_experiment_by_name(grid.name).experiment_id
    assert f"/#/experiments/{experiment}?workflowType=machine_learning" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "discrepancy.csv",
        "discrepancy.md",
        "figures",
        "paired.csv",
        "table2.csv",
        "table2.md",
        "table2.tex",
    ]
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == [
        f"{kind}_mnist5k.png"
        for kind in ("accuracy", "cost", "discrepancy", "pairwise", "selection_time")
    ]
    # an efficientnet_lite0 grid on MNIST is not the paper's setting: one line, no rows
    assert "Ours vs published: no published counterpart for this grid" in printed
    assert "Ratios between pipelines" not in printed

    runs = client.search_runs([client.get_experiment_by_name("formats").experiment_id])
    for run in runs:
        random = run.data.tags["pipeline"] == "random"
        assert "summary/final_acc" in run.data.metrics
        assert ("summary/ssr" in run.data.metrics) is not random  # random: the reference
    published = client.get_experiment_by_name("published").experiment_id
    assert len(client.search_runs([published])) == 4

    assert main(args) == 0  # again: nothing new anywhere
    assert "0 new run(s), 4 unchanged" in capsys.readouterr().out
    assert len(client.search_runs([published])) == 4
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "summary/final_acc")) == 1


def test_a_grid_in_the_papers_setting_gets_the_published_comparison(tmp_path, uri, capsys):
    text = GRID.replace("name: formats", "name: paperlike").replace(
        "backbone: efficientnet_lite0",
        "backbone: {name: resnet50_byol_eman, options: {checkpoint: /absent/byol.pth}}",
    )
    path = tmp_path / "paperlike.yaml"
    path.write_text(text)
    grid = load_grid(path)
    client = MlflowClient(uri)
    record_finished_runs(client, grid)
    out = tmp_path / "report"
    assert main(["report", str(path), "--tracking-uri", uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Ratios between pipelines" in printed and "no published counterpart" not in printed
    comparison = pd.read_csv(out / "published_comparison.csv")
    ratios = comparison[comparison["comparison"] == "ratio"]
    assert set(ratios["pipeline"]) >= {"asvp-auto/standard-ft", "svpp-lpft/standard-ft"}


def test_a_malformed_published_file_stops_the_report_before_it_writes(tmp_path, uri, capsys):
    grid = load_grid_text(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("source,value\nx,1\n")
    out = tmp_path / "r"
    args = ["report", str(grid.path), "--tracking-uri", uri, "--out", str(out)]
    assert main([*args, "--published", str(bad)]) == 2
    assert f"{bad}, line 1, column 'how_read': missing" in capsys.readouterr().err
    assert not out.exists()


def test_a_full_data_run_is_read_at_the_one_step_it_logged(uri):
    client = MlflowClient(uri)
    experiment = client.create_experiment("full-data")
    cells = [
        make_cell("cifar10", "random", "ft", "random", 0),
        make_cell("cifar10", "full", "ft", "all", 0, budgets=()),
    ]
    for cell, steps in zip(cells, ([*BUDGETS], [POOL]), strict=True):
        tags = {"run_key": cell.run_key, "state": "finished", "device": "cuda"}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        metrics = [Metric("test_acc", 0.5 + step / 1e5, 0, step) for step in steps]
        if cell.config.pipeline == "random":
            metrics += [
                Metric(name, 60.0, 0, step)
                for step in steps
                for name in ("sampling_seconds", "evaluation_seconds")
            ]
        client.log_batch(run_id, metrics=metrics)
    random, full = read_curves(client, SimpleNamespace(name="full-data"), cells)
    assert list(full.budgets) == [POOL] and full.acc[0] == pytest.approx(0.5 + POOL / 1e5)
    assert list(full.sampling_seconds) == [0.0] and np.isnan(full.evaluation_seconds).all()
    assert list(random.budgets) == list(BUDGETS)
    summary = seed_summaries([random, full], COSTS).set_index("family")
    assert summary.loc["full", "final_acc"] == pytest.approx(0.5 + POOL / 1e5)
    assert np.isnan(summary.loc["full", "ssr"])
