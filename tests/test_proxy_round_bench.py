"""The proxy-round benchmark (``perf/proxy_round.py``) and its helpers: the three ways run on
a small pool, the memory probe counts anonymous pages only, the verdicts follow the figures,
and each benchmark rewrites only its own section of ``docs/benchmarks.md``."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asvp.timing import PhaseTimer  # noqa: E402
from perf import proxy_round  # noqa: E402
from perf.document import TITLE, write_section  # noqa: E402
from perf.proxy_round import Measurement, RoundSpec, render_table, verdicts  # noqa: E402

SMALL = RoundSpec(rows=700, dim=16, classes=3, labelled=120, epochs=2, budget=25, batch_size=64)


@pytest.fixture
def small_pool(tmp_path, monkeypatch):
    monkeypatch.setitem(proxy_round.PARTS, "a", SMALL)
    proxy_round.generate("a", tmp_path)
    return tmp_path


def test_generated_pool_is_a_float16_memory_map_with_a_labelled_set(small_pool):
    features = np.load(small_pool / "features.npy", mmap_mode="r")
    labeled = np.load(small_pool / "labeled.npy")
    assert features.dtype == np.float16 and features.shape == (700, 16)
    assert np.isfinite(np.asarray(features)).all()
    assert labeled.size == 120 and np.unique(labeled).size == 120 and labeled.max() < 700
    assert set(np.load(small_pool / "labels.npy")) == {0, 1, 2}


@pytest.mark.parametrize("way", proxy_round.WAYS)
def test_each_way_runs_the_round_and_reports_its_phases(small_pool, way):
    record = proxy_round.measure("a", small_pool, "cpu", way)
    assert set(record["seconds"]) == {"train", "score", "select"}
    assert record["total"] >= record["seconds"]["train"] > 0
    assert record["selected"] == SMALL.budget
    assert record["peak_anonymous_bytes"] > 0 and record["cuda_peak_bytes"] is None


@pytest.mark.parametrize("way", ["ours", "dataloader"])
def test_margin_ways_select_unlabelled_rows_a_trained_proxy_finds_uncertain(small_pool, way):
    pool = proxy_round._load(small_pool)
    clock = PhaseTimer("cpu")
    run = {"ours": proxy_round._ours, "dataloader": proxy_round._dataloader}[way]
    selected = run(pool, SMALL, "cpu", clock)
    assert np.unique(selected).size == SMALL.budget
    assert not np.isin(selected, pool.labeled).any()


PROBE = """
import json, sys
import numpy as np
from perf.memory import AnonymousPeak, anonymous_bytes
mapped = np.load(sys.argv[1], mmap_mode="r")
with AnonymousPeak() as reading:
    total = sum(float(mapped[i].max()) for i in range(len(mapped)))  # every page read
base = anonymous_bytes()
with AnonymousPeak() as allocating:  # the block is freed after the end sample: its peak is
    block = np.ones(96 << 20, dtype=np.uint8)  # seen even if the sampler thread never ran
    block[::4096] = 2  # 96 MiB, every page written
del block
print(json.dumps([total, reading.bytes - base, allocating.bytes - base]))
"""


def test_anonymous_peak_counts_allocations_but_not_mapped_file_pages(tmp_path):
    """In a fresh process (a test process's heap may already hold freed pages to reuse)."""
    path = tmp_path / "big.npy"
    np.save(path, np.ones((64, 1 << 20), dtype=np.float16))  # 128 MiB file
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    total, reading, allocating = json.loads(done.stdout)
    assert total == 64.0
    assert allocating > 64 << 20
    assert reading < 32 << 20


def _measurement(part, way, total, peak_gib=1.0):
    record = {
        "seconds": {"train": total / 2, "score": total / 2, "select": 0.0},
        "total": total,
        "peak_anonymous_bytes": int(peak_gib * (1 << 30)),
        "cuda_peak_bytes": None,
    }
    return Measurement(part, way, "ok", record)


def test_verdicts_follow_the_measured_ratios():
    within = [_measurement("a", "ours", 12.0), _measurement("a", "matmul", 10.0)]
    assert "1.20× the bare matrix products" in verdicts(within, gpu=False)[0]
    assert verdicts(within, gpu=False)[0].endswith(": met")
    slow = [_measurement("a", "ours", 16.0), _measurement("a", "matmul", 10.0)]
    assert verdicts(slow, gpu=False)[0].endswith("NOT met")
    gpu = [_measurement("a", "ours", 1.0), _measurement("a", "dataloader", 4.0)]
    assert verdicts(gpu, gpu=True) == [
        "(a) ours 4.0× faster than the per-sample DataLoader loop (4.0 s); "
        "target ≥ 5× on a GPU: NOT met"
    ]
    big = [_measurement("b", "ours", 300.0, peak_gib=8.5)]
    assert verdicts(big, gpu=False)[0].endswith("target < 8 GiB: NOT met")
    failed = [Measurement("b", "ours", "timeout", {})]
    assert verdicts(failed, gpu=False) == ["(b) did not complete: NOT met"]


def test_table_shows_each_way_relative_to_ours():
    table = render_table([_measurement("a", "ours", 10.0), _measurement("a", "dataloader", 25.0)])
    lines = table.splitlines()
    assert lines[2].endswith("| 1.00 |") and lines[3].endswith("| 2.50 |")
    assert "`dataloader`" in lines[3] and "| 25.0 |" in lines[3]


def test_each_benchmark_rewrites_only_its_own_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    write_section(path, "selection", "## Selection\nfirst")
    write_section(path, "proxy-round", "## Proxy\nround one")
    write_section(path, "selection", "## Selection\nsecond")
    text = path.read_text()
    assert text.startswith(TITLE)
    assert "second" in text and "first" not in text and "round one" in text
    assert text.index("## Selection") < text.index("## Proxy")
    assert text.count("<!-- bench:selection -->") == 1


def test_finetune_throughput_is_measured_through_fine_tune():
    from perf.finetune import images_per_second, render_section

    # a figure, not a verdict: on a shared CPU the difference of two short runs is noise
    rate = images_per_second("cpu", True, images=16, image_size=32, architecture="resnet18")
    assert isinstance(rate, float) and np.isfinite(rate)
    text = render_section({"fp32": 10.0, "mixed": 25.0}, {"device": "cuda (GPU)", **_INFO}, 16, 32)
    assert "| mixed | 25.0 |" in text and "2.50× the float32 throughput" in text


def test_finetune_throughput_trains_through_the_official_augmentation(monkeypatch):
    import asvp.training
    from perf.finetune import OFFICIAL_AUGMENTATION, images_per_second, render_section

    transforms = []
    real = asvp.training.fine_tune

    def recording(*args, **kwargs):
        transforms.append(args[6])  # fine_tune(backbone, data, indices, method, ft, lp, transform)
        return real(*args, **kwargs)

    monkeypatch.setattr(asvp.training, "fine_tune", recording)
    rate = images_per_second(
        "cpu", False, 16, image_size=32, architecture="resnet18", augmentation=OFFICIAL_AUGMENTATION
    )
    assert isinstance(rate, float) and np.isfinite(rate)
    assert [t.augmentation for t in transforms] == [OFFICIAL_AUGMENTATION] * 2
    assert transforms[0].input.size == 32 and OFFICIAL_AUGMENTATION.kind == "random_resized_crop"
    text = render_section(
        {"fp32": 10.0, "mixed": 25.0}, _INFO | {"device": "cuda"}, 16, 32, "official"
    )
    assert "RandomResizedCrop + horizontal flip" in text


_INFO = {
    "cpu": "CPU",
    "cores": "2",
    "threads": "2",
    "memory": "1 GiB",
    "python": "3.11",
    "torch": "2",
}


@pytest.mark.parametrize("strategy", proxy_round.SELECT_STRATEGIES)
def test_gpu_selection_part_runs_each_strategy_on_the_proxy_outputs(
    tmp_path, monkeypatch, strategy
):
    monkeypatch.setitem(proxy_round.PARTS, "b", SMALL)
    monkeypatch.setattr(proxy_round, "SELECT_BUDGET", 40)
    proxy_round.generate("b", tmp_path)
    record = proxy_round.measure("select", tmp_path, "cpu", strategy=strategy)
    assert record["way"] == strategy and record["selected"] == 40
    assert set(record["seconds"]) == {"select"}
