"""Under each table, the hardware its runs came from, and a warning when its cells came from
more than one (docs/design.md, "Numbers that mean one thing"); read from the runs' ``env.hardware``
tags, ``unknown (not recorded)`` for runs made before runs recorded it."""

import dataclasses

from mlflow.tracking import MlflowClient
from report_data import COSTS, record_finished_runs, synthetic_curves

from benchmark.cli import main
from benchmark.grid import load_grid
from benchmark.report import UNKNOWN_HARDWARE, hardware_note, seed_summaries, table2, write_report

EPYC = "AMD EPYC 7B13 (AVX2), cpu"
XEON = "Intel(R) Xeon(R) Platinum 8481C (AVX512), cpu"
WARNING = "cells of this table ran on different hardware"

GRID = """
name: hardware
datasets:
  - name: mnist5k
    options: {test_size: 100, pool_size: 200}
    budgets: [10, 20, 30]
backbone:  # the paper's, so the report writes the published comparison (no training here)
  name: resnet50_byol_eman
  options: {checkpoint: /absent/byol.pth}
image_size: 32
seeds: [0, 1]
strategies: [random, margin]
pipelines:
  - {pipeline: svpp, train_method: lpft}
costs: {label_price: 0.5, device_hour: {cpu: 3.0}}
"""


def _grid(tmp_path):
    path = tmp_path / "hardware.yaml"
    path.write_text(GRID)
    return load_grid(path)


def _table(labels):
    """Table 2 of the synthetic curves, run ``i`` computed on ``labels[i % len(labels)]``."""
    curves = synthetic_curves(seeds=(0,), strategies=("margin",))
    curves = [
        dataclasses.replace(c, hardware=labels[i % len(labels)]) for i, c in enumerate(curves)
    ]
    return table2(seed_summaries(curves, COSTS)), len(curves)


def test_one_machine_gives_the_hardware_line_and_no_warning(tmp_path):
    table, runs = _table([EPYC])
    assert table.hardware == {EPYC: runs}
    markdown = write_report(_grid(tmp_path), table, tmp_path / "out")
    line = f"Hardware: {EPYC} ({runs} runs)."
    assert line in markdown and line in (tmp_path / "out" / "table2.md").read_text()
    assert WARNING not in markdown
    caption = (tmp_path / "out" / "table2.tex").read_text().split("\\caption{")[1]
    assert caption.startswith("Hardware: AMD EPYC 7B13 (AVX2), cpu (")


def test_two_machines_give_both_counts_and_the_warning(tmp_path):
    table, runs = _table([EPYC, XEON, EPYC])
    xeon = sum(1 for i in range(runs) if i % 3 == 1)
    assert table.hardware == {EPYC: runs - xeon, XEON: xeon}
    markdown = write_report(_grid(tmp_path), table, tmp_path / "out")
    assert f"Hardware: {EPYC} ({runs - xeon} runs); {XEON} ({xeon} runs)." in markdown
    warning = (
        f"{WARNING}: {EPYC}, {XEON}; their differences may come from the kernels, not the method."
    )
    assert warning in markdown
    tex = (tmp_path / "out" / "table2.tex").read_text()
    assert WARNING in tex and "Intel(R) Xeon(R) Platinum 8481C (AVX512), cpu" in tex


def test_hardware_note_of_one_run_and_of_none():
    assert hardware_note({EPYC: 1}) == f"Hardware: {EPYC} (1 run)."
    assert hardware_note({}) == ""


def test_report_reads_the_hardware_tags_and_counts_untagged_runs_as_unknown(tmp_path, capsys):
    grid = _grid(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = record_finished_runs(client, grid)
    experiment = client.get_experiment_by_name("hardware").experiment_id
    tagged = client.search_runs([experiment], max_results=runs)[: runs // 2]
    for run in tagged:
        client.set_tag(run.info.run_id, "env.hardware", XEON)
    out = tmp_path / "report"
    assert main(["report", str(grid.path), "--tracking-uri", uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    untagged = runs - len(tagged)
    counts = sorted(
        [(XEON, len(tagged)), (UNKNOWN_HARDWARE, untagged)], key=lambda c: (-c[1], c[0])
    )
    line = "Hardware: " + "; ".join(f"{label} ({n} runs)" for label, n in counts) + "."
    assert line in printed and line in (out / "table2.md").read_text()
    assert WARNING in printed
    comparison = (out / "published_comparison.md").read_text()
    assert f"Ours: {line}" in comparison
    every_run = client.search_runs([experiment], max_results=runs)
    proxy_runs = [r for r in every_run if r.info.run_name.startswith("svpp-")]
    proxy_xeon = sum(r.data.tags.get("env.hardware") == XEON for r in proxy_runs)
    proxy_counts = sorted(
        [(XEON, proxy_xeon), (UNKNOWN_HARDWARE, len(proxy_runs) - proxy_xeon)],
        key=lambda c: (-c[1], c[0]),
    )
    proxy_line = "; ".join(f"{label} ({n} run{'s' * (n != 1)})" for label, n in proxy_counts if n)
    assert f"Hardware: {proxy_line}." in (out / "discrepancy.md").read_text()
