"""The selection benchmark (``perf/``): naive references agree with the real kernels, the
measuring child runs end to end, the synthetic pools and the table are what they claim; the
CLI latency check (``perf/cli_latency.py``) times fresh processes and reports every probe."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# ``perf`` is not an installed package: it runs from the repository root.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perf import cli_latency  # noqa: E402
from perf.document import load_sentence  # noqa: E402
from perf.naive import (  # noqa: E402
    naive_badge,
    naive_badge_min_sq_distances,
    naive_k_center,
    running_min_k_center,
)
from perf.selection import (  # noqa: E402
    BENCH_OPTIONS,
    Row,
    probcover_greedy_steps,
    render_table,
    run_child,
)
from perf.synthetic import load_pool, make_pool, parse_size, save_pool  # noqa: E402


def _rows(n: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen, dtype=torch.float64)


def test_naive_k_center_equals_k_center_greedy():
    kcenter = pytest.importorskip("asvp.strategies.kcenter")
    features = _rows(300, 8, seed=1)
    labeled = np.arange(20)
    expected = kcenter.k_center_greedy(features, labeled, 40)
    picks = naive_k_center(features[20:], features[:20], 40)
    np.testing.assert_array_equal(picks + 20, expected)


def test_running_min_k_center_equals_k_center_greedy_and_the_naive_one():
    kcenter = pytest.importorskip("asvp.strategies.kcenter")
    features = _rows(300, 8, seed=6)
    expected = kcenter.k_center_greedy(features, np.arange(15), 60)
    picks = running_min_k_center(features[15:], features[:15], 60)
    np.testing.assert_array_equal(picks + 15, expected)
    np.testing.assert_array_equal(picks, naive_k_center(features[15:], features[:15], 60))
    whole = running_min_k_center(features[15:20], features[:15], 9)  # budget over the pool
    assert sorted(whole.tolist()) == [0, 1, 2, 3, 4]


def test_probcover_benchmark_radius_leaves_the_greedy_work():
    """On the 20k pool the benchmark's fixed radius leaves candidates uncovered by the labelled
    rows, and the greedy picks an uncovered row at every one of the 1000 steps."""
    delta = BENCH_OPTIONS["probcover"]["delta"]
    steps = probcover_greedy_steps("20k", delta)
    assert steps["delta"] == delta and steps["covered"] < 0.9
    assert steps["greedy_steps"] == 1000
    small = probcover_greedy_steps("400x8x3", None, budget=20)
    assert 0 <= small["greedy_steps"] <= 20 and 0 <= small["covered"] <= 1


def test_naive_badge_min_distances_equal_factorised():
    badge = pytest.importorskip("asvp.strategies.badge")
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(150, 5, generator=gen, dtype=torch.float64) * 2, dim=1)
    embeddings = _rows(150, 7, seed=3)
    centres = [4, 77, 149, 0]
    expected = badge.badge_min_sq_distances(probs, embeddings, centres)
    got = naive_badge_min_sq_distances(probs, embeddings, centres)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert np.all(expected[centres] == 0)  # exact for the factorised form


def test_naive_badge_picks_distinct_rows_reproducibly():
    probs = torch.softmax(_rows(80, 4, seed=4), dim=1)
    embeddings = _rows(80, 6, seed=5)
    first = naive_badge(probs, embeddings, 30, np.random.default_rng(0))
    again = naive_badge(probs, embeddings, 30, np.random.default_rng(0))
    assert first.size == 30 and np.unique(first).size == 30
    np.testing.assert_array_equal(first, again)


def test_synthetic_pool_views_probs_and_round_trip(tmp_path):
    spec = parse_size("500x16x4", labelled=50)
    pool = make_pool(spec)
    assert pool.features.shape == (500, 16) and pool.features.dtype == torch.float32
    assert pool.probs.shape == (450, 4)
    torch.testing.assert_close(pool.probs.sum(dim=1), torch.ones(450))
    assert 0.3 < float(pool.probs.amax(dim=1).mean()) < 0.9  # neither one-hot nor uniform
    rep = pool.representation()
    assert rep.pool.data_ptr() == pool.features[50:].data_ptr()  # a view, not a copy
    request = pool.request(10, {"embeddings", "features", "probs"})
    assert request.embeddings is request.features
    np.testing.assert_array_equal(request.labeled, np.arange(50))
    save_pool(pool, tmp_path)
    loaded = load_pool(tmp_path)
    torch.testing.assert_close(loaded.features, pool.features, rtol=0, atol=0)
    torch.testing.assert_close(loaded.probs, pool.probs, rtol=0, atol=0)
    assert load_pool(tmp_path, with_probs=False, with_features=True).probs is None
    again = make_pool(spec)
    torch.testing.assert_close(again.features, pool.features, rtol=0, atol=0)


def test_measure_child_end_to_end():
    status, record = run_child(
        ["measure", "--strategy", "margin", "--size", "400x8x3", "--budget", "25"], timeout=300
    )
    assert status == "ok", record
    assert record["selected"] == 25
    assert record["seconds"] > 0
    assert record["peak_rss_bytes"] > 0 and record["rss_before_bytes"] > 0
    assert record["peak_rss_bytes"] >= record["rss_before_bytes"]


def test_run_child_reports_timeout_and_error():
    assert run_child(["measure", "--strategy", "margin", "--size", "400x8x3"], 0.01)[0] == (
        "timeout"
    )
    status, record = run_child(["measure", "--strategy", "no_such", "--size", "400x8x3"], 300)
    assert status == "error" and "no_such" in record["error"]


def test_render_table():
    gib = 1 << 30
    ok = {"seconds": 2.0, "peak_rss_bytes": 3 * gib, "rss_before_bytes": gib, "input_bytes": gib}
    rows = [
        Row("badge", "20k×512", ok, naive={"seconds": 100.0}, naive_status="ok"),
        Row("coreset", "20k×512", ok, naive_status="timeout"),
        Row("probcover", "200k×2048", status="skipped", notes=["quadratic: 20k only"]),
        Row("typiclust", "200k×2048", status="timeout"),
    ]
    lines = render_table(rows).splitlines()
    assert lines[0].startswith("| strategy | pool |") and "speed-up" in lines[0]
    assert len(lines) == 2 + len(rows)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| 2.000 | 3.00 | 1.00 | 100.0 | 50× |" in lines[2]
    assert "| timeout |  |" in lines[3]
    assert "skipped" in lines[4] and "quadratic: 20k only" in lines[4]
    assert "| timeout |" in lines[5]
    assert "peak GPU" in render_table(rows, gpu=True).splitlines()[0]
    both = Row(
        "coreset",
        "20k×512",
        ok,
        naive={"seconds": 500.0},
        naive_status="ok",
        official={"seconds": 30.0},
        official_status="ok",
    )
    line = render_table([both]).splitlines()[2]
    assert "| 500.0 | 250× | 30.0 | 15× |" in line
    assert "official-manner seconds" in render_table([both]).splitlines()[0]


def test_cli_latency_measures_fresh_processes():
    probe = cli_latency.Probe("asvp-bench --help", ("--help",), cli_latency.HELP_TARGET)
    (timing,) = cli_latency.measure([probe], repeats=1)
    assert timing.probe == probe
    assert len(timing.seconds) == 1 and timing.seconds[0] > 0
    assert len(timing.exit_codes) == 1
    assert timing.median == timing.seconds[0]
    assert isinstance(timing.passed, bool)
    assert (timing.error == "") == (timing.exit_codes == (0,))
    row = cli_latency.render_table([timing]).splitlines()[-1]
    assert row.startswith("| `asvp-bench --help` |") and row.endswith(("| pass |", "| **fail** |"))


def test_cli_latency_probes_and_verdicts():
    found = cli_latency.probes(Path("experiments/table2.yaml"), ["validate", "run"])
    assert [p.label for p in found] == [
        "asvp-bench --help",
        "asvp-bench validate --help",
        "asvp-bench run --help",
        "asvp-bench validate experiments/table2.yaml",
    ]
    assert [p.target for p in found] == [1.0, 1.0, 1.0, 3.0]
    assert Path(found[-1].args[1]).is_absolute()  # the runs start in an empty folder
    fast = cli_latency.Timing(found[0], (0.3, 0.2, 5.0), (0, 0, 0))
    failing = cli_latency.Timing(found[-1], (0.5,), (2,), "error: no data")
    assert fast.median == 0.3 and fast.passed
    assert not failing.passed  # fast, but a non-zero exit


def test_the_load_sentence_warns_only_when_the_cores_were_shared():
    calm = load_sentence(0.7, 1.1, cores=2)
    assert calm == "1-minute load average 0.7 at the start, 1.1 at the end."
    busy = load_sentence(0.7, 2.6, cores=2)
    assert busy.startswith("1-minute load average 0.7 at the start, 2.6 at the end (above")
    assert "inflated" in busy
