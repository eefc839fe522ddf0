"""``make gpu-check`` on a machine without CUDA: the refusal, the plan, the section."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from perf import gpu_check
from perf.gpu_check import (
    NO_CUDA_MESSAGE,
    STEPS,
    TOTAL_BUDGET_S,
    StepResult,
    cuda_only_tests,
    planned_seconds,
    render_section,
    run_step,
    step_command,
)

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "benchmarks.md"


def test_refuses_without_cuda_and_touches_nothing():
    before = DOCUMENT.read_bytes() if DOCUMENT.is_file() else None
    done = subprocess.run(
        [sys.executable, "-m", "perf.gpu_check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert done.returncode == 2
    assert NO_CUDA_MESSAGE in done.stderr and done.stdout == ""
    assert (DOCUMENT.read_bytes() if DOCUMENT.is_file() else None) == before


def test_refusal_writes_no_section_and_runs_no_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "cuda_available", lambda: False)
    monkeypatch.setattr(gpu_check, "run_check", lambda *a: pytest.fail("a step ran"))
    output = tmp_path / "benchmarks.md"
    assert gpu_check.main(["--output", str(output)]) == 2
    assert gpu_check.main(["finetune"]) == 2
    assert gpu_check.main(["finetune-large"]) == 2
    assert not output.exists()
    assert capsys.readouterr().err.strip().splitlines() == [NO_CUDA_MESSAGE] * 3


def test_collects_the_known_cuda_only_tests():
    ids = cuda_only_tests()
    for known in (
        "tests/test_loading.py::test_bf16_autocast_on_cuda",  # a module-level marker name
        "tests/test_loading.py::test_workers_deliver_channels_last_batches_to_cuda",
        "tests/test_extraction.py::test_cuda_extraction_with_autocast_and_channels_last_matches_float32",
        "tests/test_pool.py::test_cuda_pool_is_resident_in_float16_and_matches_the_host",
        "tests/test_strategy_contract.py::test_contract_cuda_tensors",  # parametrised
    ):
        assert known in ids
    assert len(ids) == len(set(ids))
    assert not any("test_gpu_check" in node for node in ids)
    assert "tests/test_loading.py::test_worker_count_from_the_environment" not in ids


def test_collection_reads_markers_classes_and_pytestmark(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_text(
        "import pytest, torch\n"
        "gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\n"
        "slow = pytest.mark.skipif(True, reason='not cuda')\n"
        "@gpu\ndef test_named(): pass\n"
        "@slow\ndef test_other_skip(): pass\n"
        "def test_plain(): pass\n"
        "class TestBox:\n"
        "    @pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\n"
        "    def test_method(self): pass\n"
        "    def test_cpu(self): pass\n"
        "@gpu\nclass TestAll:\n    def test_one(self): pass\n"
    )
    (tests / "test_b.py").write_text(
        "import pytest, torch\n"
        "pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason='x')]\n"
        "def test_any(): pass\n"
    )
    assert cuda_only_tests(tmp_path) == [
        "tests/test_a.py::test_named",
        "tests/test_a.py::TestBox::test_method",
        "tests/test_a.py::TestAll",
        "tests/test_b.py",
    ]


def test_the_steps_fit_in_eight_minutes():
    assert [step.name for step in STEPS] == [
        "cuda-tests",
        "demo-cell",
        "finetune",
        "finetune-large",
        "proxy-round",
        "selection",
    ]
    assert all(step.budget_s > 0 for step in STEPS)
    assert planned_seconds() == sum(s.budget_s for s in STEPS) + gpu_check.DRIVER_ALLOWANCE_S
    assert planned_seconds() < TOTAL_BUDGET_S == 8 * 60


def test_step_commands_run_the_chosen_cell_and_bench_parts_without_writing(tmp_path):
    ids = ["tests/test_pool.py::test_x"]
    tests = step_command("cuda-tests", tmp_path, ids)
    assert tests[-1] == ids[0] and "--junitxml" in tests
    demo = " ".join(step_command("demo-cell", tmp_path, ids))
    for part in ("--dataset mnist5k", "--pipeline svpp-lpft", "--strategy margin", "--seed 0"):
        assert part in demo
    assert f"--tracking-uri sqlite:///{tmp_path}/mlflow.db" in demo
    for name in ("finetune", "finetune-large"):  # this module's own children, by step name
        assert step_command(name, tmp_path, ids)[-3:] == ["-m", "perf.gpu_check", name]
    for name in ("proxy-round", "selection"):
        command = step_command(name, tmp_path, ids)
        assert command[command.index("--device") + 1] == "cuda"
        assert command[command.index("--output") + 1] == "-"  # the gpu-check section only


def test_run_step_kills_a_step_past_its_budget(tmp_path):
    status, seconds, output = run_step(
        [sys.executable, "-c", "print('started', flush=True); import time; time.sleep(30)"],
        1,
        tmp_path,
    )
    assert status == "timeout" and seconds < 10 and "started" in output
    assert run_step([sys.executable, "-c", "raise SystemExit(3)"], 30, tmp_path)[0] == "failed"


def test_section_renders_the_given_figures():
    results = [
        StepResult(
            "cuda-tests",
            "failed",
            41.0,
            {"passed": 8, "failed": 1, "skipped": 1, "failed_ids": ["tests.test_pool::test_x"]},
        ),
        StepResult("demo-cell", "ok", 63.25, {"cell": "svpp-lpft/margin", "test_acc": {"20": 0.5}}),
        StepResult(
            "finetune",
            "ok",
            50.0,
            {
                "fp32": 400.0,
                "mixed": 1000.0,
                "precision": "bf16",
                "workers": 8,
                "images": 2048,
                "size": 224,
                "batch": 128,
            },
        ),
        StepResult(
            "finetune-large",
            "ok",
            40.0,
            {
                "model": "vit_base_patch14_dinov2",
                "images": 1024,
                "size": 224,
                "batch": 128,
                "plain": {"images_per_second": 800.0, "peak_gpu_memory_gib": 20.0},
                "checkpointing": {"images_per_second": 600.0, "peak_gpu_memory_gib": 5.0},
            },
        ),
        StepResult("proxy-round", "timeout", 100.0, {"table": []}),
        StepResult("selection", "ok", 80.0, {"table": ["| strategy | s |", "|---|---|"]}),
    ]
    text = render_section(results, "NVIDIA H200", "2026-12-06", "a machine", 334.5)
    assert text.startswith("## GPU check")
    assert "on 2026-12-06 on **NVIDIA H200**" in text and "5.6 min" in text
    assert "| demo-cell |" in text and "| 63.2 | ok |" in text
    assert "8 passed, 1 failed, 1 skipped" in text and "`tests.test_pool::test_x`" in text
    assert "| 20 | 0.5000 |" in text and "`svpp-lpft/margin`" in text
    assert "fp32 400.0 images/s" in text and "2.50×" in text and "8 loader workers" in text
    assert "| finetune-large |" in text and "`vit_base_patch14_dinov2`" in text
    assert "800.0 images/s, peak 20.00 GiB" in text and "600.0 images/s, peak 5.00 GiB" in text
    assert "0.25× the memory, 0.75× the speed" in text
    assert "| proxy-round |" in text and "no table printed" in text
    assert "  | strategy | s |" in text
    assert render_section(results, "NVIDIA H200", "2026-12-06", "a machine", 334.5) == text


def test_step_figures_read_the_junit_counts_and_the_printed_tables(tmp_path):
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_pool" name="test_a"/>'
        '<testcase classname="tests.test_pool" name="test_b"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_kcenter" name="test_c"><skipped message="y"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert gpu_check.step_figures("cuda-tests", "", tmp_path) == {
        "passed": 1,
        "failed": 1,
        "skipped": 1,
        "failed_ids": ["tests.test_pool::test_b"],
    }
    printed = "Machine: x\n| a | b |\n|---|---|\n* (a) met\nTotal: 1.0 min\n"
    figures = gpu_check.step_figures("proxy-round", printed, tmp_path)
    assert figures == {"table": ["| a | b |", "|---|---|", "* (a) met"]}
    assert gpu_check.step_figures("finetune", 'noise\n{"fp32": 1.0}\n', tmp_path) == {"fp32": 1.0}
    large = gpu_check.step_figures("finetune-large", '{"plain": {}}\n', tmp_path)
    assert large == {"plain": {}}
    unmeasured = [StepResult("finetune-large", "timeout", 60.0, {})]
    assert "not measured" in render_section(unmeasured, "GPU", "2026-12-06", "m", 60.0)
    assert gpu_check.step_figures("demo-cell", "", tmp_path) == {}  # no store: no figures


def test_the_large_model_fine_tune_runs_through_the_timm_backbone_on_a_cpu():
    """The ``finetune-large`` child's measurement at a size a CPU runs (timm's ViT-Ti/16, the
    smallest ViT with a pretrained config, at 32 px): both settings fine-tune, and a CPU has no
    peak GPU memory to give (its images/s is a difference of two timings: a number, whose sign
    a loaded CPU does not promise)."""
    from perf.finetune import large_model_record

    record = large_model_record("cpu", "vit_tiny_patch16_224", 8, 32, 4)
    assert record["model"] == "vit_tiny_patch16_224" and record["batch"] == 4
    for setting in ("plain", "checkpointing"):
        assert record[setting]["peak_gpu_memory_gib"] is None
        assert math.isfinite(record[setting]["images_per_second"])
