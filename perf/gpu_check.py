"""``make gpu-check``: what only a GPU can check, as one command of under 8 minutes.

Usage (from the repository root, on a machine with a CUDA device)::

    python -m perf.gpu_check [--output PATH]      # the whole check (``make gpu-check``)
    python -m perf.gpu_check --plan                # the steps, budgets and test ids; no GPU needed
    python -m perf.gpu_check finetune              # the throughput child (one JSON line)
    python -m perf.gpu_check finetune-large        # the large-model child (one JSON line)

Without a CUDA device it stops at once with "gpu-check needs a CUDA device; none found" and
exit status 2, touching nothing. Otherwise it runs :data:`STEPS` in order, each in its own
process group and killed when it runs past its budget (so the whole check ends within the sum
of the budgets, :data:`TOTAL_BUDGET_S` with the driver's allowance):

1. ``cuda-tests``: the tests skipped on a CPU (``skipif(not torch.cuda.is_available())``),
   found in ``tests/`` by :func:`cuda_only_tests` and run by node id (never the whole suite);
2. ``demo-cell``: one cell of ``experiments/demo.yaml`` (:data:`DEMO_FILTERS`) through
   ``asvp-bench run`` into a temporary MLflow store, feature store and state dir: its wall
   time (interpreter start included) and its test accuracy at every budget;
3. ``finetune``: fine-tuning images/s of a ResNet-50 at 224 px, float32 vs mixed precision,
   through the official augmentation in the loader workers (:mod:`perf.finetune`);
4. ``finetune-large``: a fine-tune of DINOv2 ViT-B/14 (random weights saved as safetensors,
   loaded through the ``timm`` backbone) on synthetic 224 px images, batch 128, mixed
   precision, with gradient checkpointing off and on: images/s and peak GPU memory of each
   (:func:`perf.finetune.large_model_record`);
5. ``proxy-round`` and ``selection``: the GPU parts of ``make bench``, at sizes that fit:
   the SVPp round three ways (part a; the issue's GPU target is 5× the DataLoader loop) and
   :data:`SELECTION_STRATEGIES` each selecting 1,000 from the 200k×2048 pool (no naive CPU
   references; the other strategies' kernels are these or elementwise).

The figures, with the GPU's name and the date, become the section ``gpu-check`` of
``docs/benchmarks.md`` (:func:`perf.document.publish_section`), printed too. Exit status 0 when
every step passed, 1 otherwise (the section still says what was measured).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .document import publish_section
from .selection import DEFAULT_OUTPUT

ROOT = Path(__file__).resolve().parent.parent
SECTION = "gpu-check"
NO_CUDA_MESSAGE = "gpu-check needs a CUDA device; none found"
TOTAL_BUDGET_S = 480
"""The promise: the whole check in under 8 minutes on one H100/H200."""
DRIVER_ALLOWANCE_S = 30
"""Kept out of the steps' budgets for the driver itself (imports, collection, writing)."""
DEMO_GRID = "experiments/demo.yaml"
DEMO_FILTERS = {"dataset": "mnist5k", "pipeline": "svpp-lpft", "strategy": "margin", "seed": "0"}
FINETUNE_IMAGES = 2048
FINETUNE_SIZE = 224
SELECTION_SIZE = "200k"
SELECTION_STRATEGIES = ("margin", "badge", "coreset", "typiclust", "activeft_self")
"""The strategies with GPU kernels worth timing (margin: the floor), one process each."""
CHILD_TIMEOUT_S = 40
"""Per measurement process of the ``make bench`` modules (their own ``--timeout``)."""


@dataclass(frozen=True)
class Step:
    """One planned step: its name, its time budget and what it runs, in words."""

    name: str
    budget_s: int
    what: str


#: The budgets are upper bounds chosen before any GPU run (on the 2-core CPU the demo cell took
#: 165 s, mostly its fine-tunes at one thread); the section shows each step's wall time beside
#: its budget, so a first GPU run says where they should move. ``finetune-large`` took its 60 s
#: from the demo cell (130 -> 100: on a GPU its fine-tunes of 10-40 MNIST images take seconds)
#: and the proxy round (90 -> 80).
STEPS = (
    Step("cuda-tests", 60, "the CUDA-only tests, by node id"),
    Step("demo-cell", 100, f"one cell of `{DEMO_GRID}` through `asvp-bench run`"),
    Step("finetune", 70, "fine-tuning images/s, ResNet-50, fp32 vs mixed, official augmentation"),
    Step(
        "finetune-large",
        60,
        "fine-tuning DINOv2 ViT-B/14 at 224 px, gradient checkpointing off and on",
    ),
    Step("proxy-round", 80, "`perf.proxy_round --device cuda --parts a`"),
    Step("selection", 70, f"`perf.selection --device cuda --sizes {SELECTION_SIZE} --only ...`"),
)


@dataclass
class StepResult:
    """What one step gave: ``status`` ok, failed, timeout or skipped, its wall seconds, and its
    figures (JSON-ready, by step: see :func:`step_figures`)."""

    name: str
    status: str
    seconds: float
    figures: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the plan


def _is_cuda_skip(node: ast.expr, markers: set[str]) -> bool:
    """Whether a decorator (or ``pytestmark`` value) skips unless CUDA is available: a
    ``skipif`` whose condition reads ``cuda.is_available``, or a name bound to one."""
    if isinstance(node, ast.Name):
        return node.id in markers
    if isinstance(node, ast.List | ast.Tuple):
        return any(_is_cuda_skip(item, markers) for item in node.elts)
    return (
        isinstance(node, ast.Call)
        and ast.unparse(node.func).endswith("skipif")
        and bool(node.args)
        and "cuda.is_available" in ast.unparse(node.args[0])
    )


def _cuda_ids_in(path: Path, relative: str) -> list[str]:
    """The node ids of ``path``'s CUDA-only tests (module, class or function level)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    markers: set[str] = set()
    ids: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and _is_cuda_skip(node.value, markers):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if "pytestmark" in names:
                return [relative]
            markers |= names
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name.lower().startswith(
            "test"
        ):
            if any(_is_cuda_skip(d, markers) for d in node.decorator_list):
                ids.append(f"{relative}::{node.name}")
            elif isinstance(node, ast.ClassDef):
                ids += [
                    f"{relative}::{node.name}::{method.name}"
                    for method in node.body
                    if isinstance(method, ast.FunctionDef)
                    and any(_is_cuda_skip(d, markers) for d in method.decorator_list)
                ]
    return ids


def cuda_only_tests(root: Path = ROOT) -> list[str]:
    """Node ids (relative to ``root``) of every test in ``root/tests`` that a CPU machine skips
    for want of CUDA, read from the source (nothing imported): these run nowhere but here.
    Tests that merely add a CUDA case when one is present run in ``make test`` already."""
    ids = []
    for path in sorted((root / "tests").glob("test_*.py")):
        ids += _cuda_ids_in(path, path.relative_to(root).as_posix())
    return ids


def planned_seconds(steps: Sequence[Step] = STEPS) -> int:
    """The most the check can take: the steps' budgets plus the driver's allowance."""
    return sum(step.budget_s for step in steps) + DRIVER_ALLOWANCE_S


def step_command(name: str, scratch: Path, test_ids: Sequence[str]) -> list[str]:
    """The command line of step ``name``; its scratch files go under ``scratch``."""
    python = sys.executable
    bench = ["--device", "cuda", "--timeout", str(CHILD_TIMEOUT_S), "--output", "-"]
    commands = {
        "cuda-tests": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["--junitxml", str(scratch / "junit.xml"), *test_ids],
        "demo-cell": [python, "-m", "benchmark.cli", "run", str(ROOT / DEMO_GRID)]
        + ["--tracking-uri", _demo_store(scratch)]
        + [arg for key, value in DEMO_FILTERS.items() for arg in (f"--{key}", value)],
        "finetune": [python, "-m", "perf.gpu_check", "finetune"],
        "finetune-large": [python, "-m", "perf.gpu_check", "finetune-large"],
        "proxy-round": [python, "-m", "perf.proxy_round", "--parts", "a"]
        + ["--scratch", str(scratch), *bench],
        "selection": [python, "-m", "perf.selection", "--sizes", SELECTION_SIZE, "--no-naive"]
        + ["--only", *SELECTION_STRATEGIES, *bench],
    }
    return commands[name]


def _demo_store(scratch: Path) -> str:
    return f"sqlite:///{scratch / 'mlflow.db'}"


# ----------------------------------------------------------------------------- running


def run_step(command: Sequence[str], budget_s: float, cwd: Path) -> tuple[str, float, str]:
    """Run ``command`` in ``cwd`` in its own process group, killing the group (workers and
    child processes included) past ``budget_s``. Returns the status (ok, failed, timeout), the
    wall seconds and the standard output (stderr goes to the terminal as it comes)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=budget_s)
        status = "ok" if process.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        status = "timeout"
    return status, time.perf_counter() - start, output


def _last_json(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _junit_counts(path: Path) -> dict:
    """Passed, failed and skipped counts, and the failed node ids, of a pytest JUnit XML."""
    if not path.is_file():
        return {}
    cases = list(ElementTree.parse(path).getroot().iter("testcase"))
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in cases
        if case.find("failure") is not None or case.find("error") is not None
    ]
    skipped = sum(case.find("skipped") is not None for case in cases)
    return {
        "passed": len(cases) - len(failed) - skipped,
        "failed": len(failed),
        "skipped": skipped,
        "failed_ids": failed,
    }


def _demo_accuracies(scratch: Path) -> dict:
    """The demo cell's name and test accuracy per label count, read from its MLflow store."""
    if not (scratch / "mlflow.db").is_file():
        return {}
    from benchmark.grid import load_grid
    from benchmark.metric_names import TEST_ACC
    from benchmark.tracking import finished_runs, run_metric, store_client

    client = store_client(_demo_store(scratch))
    runs = list(finished_runs(client, load_grid(ROOT / DEMO_GRID).name).values())
    if len(runs) != 1:
        return {"error": f"{len(runs)} finished runs in the store, expected 1"}
    curve = run_metric(client, runs[0], TEST_ACC)
    return {
        "cell": runs[0].info.run_name,
        "test_acc": {str(labels): acc for labels, acc in sorted(curve.items())},
    }


def step_figures(name: str, output: str, scratch: Path) -> dict:
    """The figures of step ``name`` from its output and scratch files: the test counts, the
    demo cell's accuracies, the throughput record, or the tables a ``make bench`` module
    printed (its lines of Markdown table and its checks)."""
    if name == "cuda-tests":
        return _junit_counts(scratch / "junit.xml")
    if name == "demo-cell":
        return _demo_accuracies(scratch)
    if name in ("finetune", "finetune-large"):
        return _last_json(output)
    lines = [line for line in output.splitlines() if line.startswith(("|", "* "))]
    return {"table": lines}


def run_check(test_ids: Sequence[str], steps: Sequence[Step] = STEPS) -> list[StepResult]:
    """Run every step in order, each in a scratch directory of its own (removed after)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="asvp-gpu-check-") as tmp:
        for step in steps:
            scratch = Path(tmp) / step.name
            scratch.mkdir()
            print(f"== {step.name} (budget {step.budget_s} s): {step.what}", flush=True)
            if step.name == "cuda-tests" and not test_ids:
                results.append(StepResult(step.name, "skipped", 0.0, {"error": "no tests found"}))
                continue
            cwd = scratch if step.name == "demo-cell" else ROOT
            command = step_command(step.name, scratch, test_ids)
            status, seconds, output = run_step(command, step.budget_s, cwd)
            print(output, flush=True)
            figures = step_figures(step.name, output, scratch)
            results.append(StepResult(step.name, status, seconds, figures))
            print(f"== {step.name}: {status} in {seconds:.1f} s", flush=True)
    return results


# ----------------------------------------------------------------------------- the section


def _tests_text(figures: dict) -> str:
    if not figures:
        return "no result (see the run's output)"
    text = f"{figures['passed']} passed, {figures['failed']} failed, {figures['skipped']} skipped"
    return text + "".join(f"\n  - failed: `{node}`" for node in figures["failed_ids"])


def _demo_text(figures: dict) -> str:
    curve = figures.get("test_acc", {})
    if not curve:
        return figures.get("error", "no finished run (see the run's output)")
    rows = "\n".join(f"  | {labels} | {acc:.4f} |" for labels, acc in curve.items())
    return f"cell `{figures.get('cell', '?')}`\n\n  | labels | test accuracy |\n  |---|---|\n{rows}"


def _finetune_text(figures: dict) -> str:
    if "fp32" not in figures:
        return "not measured (see the run's output)"
    fp32, mixed = figures["fp32"], figures["mixed"]
    return (
        f"fp32 {fp32:.1f} images/s, mixed precision ({figures['precision']}) {mixed:.1f} "
        f"images/s: {mixed / fp32:.2f}× ({figures['images']:,} synthetic images at "
        f"{figures['size']} px, batch {figures['batch']}, RandomResizedCrop + flip in "
        f"{figures['workers']} loader workers)"
    )


def _large_finetune_text(figures: dict) -> str:
    if "plain" not in figures:
        return "not measured (see the run's output)"
    plain, checkpointed = figures["plain"], figures["checkpointing"]
    return (
        f"`{figures['model']}` (random weights through the `timm` backbone), "
        f"{figures['size']} px, batch {figures['batch']}, {figures['images']:,} synthetic "
        f"images, mixed precision: without gradient checkpointing "
        f"{plain['images_per_second']:.1f} images/s, peak {plain['peak_gpu_memory_gib']:.2f} "
        f"GiB; with it {checkpointed['images_per_second']:.1f} images/s, peak "
        f"{checkpointed['peak_gpu_memory_gib']:.2f} GiB "
        f"({checkpointed['peak_gpu_memory_gib'] / plain['peak_gpu_memory_gib']:.2f}× the "
        f"memory, {checkpointed['images_per_second'] / plain['images_per_second']:.2f}× the "
        "speed)"
    )


def _table_text(figures: dict) -> str:
    table = figures.get("table") or ["(no table printed: see the run's output)"]
    return "\n\n" + "\n".join(f"  {line}" for line in table)


_TEXTS = {
    "cuda-tests": _tests_text,
    "demo-cell": _demo_text,
    "finetune": _finetune_text,
    "finetune-large": _large_finetune_text,
    "proxy-round": _table_text,
    "selection": _table_text,
}


def render_section(
    results: Sequence[StepResult], gpu: str, date: str, machine: str, total_s: float
) -> str:
    """The ``gpu-check`` section of ``docs/benchmarks.md`` from the steps' results (pure: the
    GPU's name, the date and the machine line are given)."""
    budgets = {step.name: step for step in STEPS}
    overview = "\n".join(
        f"| {r.name} | {budgets[r.name].what} | {budgets[r.name].budget_s} | "
        f"{r.seconds:.1f} | {r.status} |"
        for r in results
    )
    details = "\n".join(f"- **{r.name}**: {_TEXTS[r.name](r.figures)}" for r in results)
    return f"""## GPU check

Written by `make gpu-check` (`python -m perf.gpu_check`) on {date} on **{gpu}**; total wall
time {total_s / 60:.1f} min (budget {TOTAL_BUDGET_S / 60:.0f} min).

**Machine.** {machine}.

Each step runs in its own process, killed past its budget. The demo cell's wall time includes
the interpreter's start, the preflight and the MLflow store (a temporary one).

| step | what | budget s | wall s | status |
|---|---|---|---|---|
{overview}

{details}
"""


# ----------------------------------------------------------------------------- entry points


def finetune_record(images: int = FINETUNE_IMAGES, size: int = FINETUNE_SIZE) -> dict:
    """The ``finetune`` step's figures: images/s in fp32 and mixed precision through the
    official augmentation on CUDA, with the loader workers and precision that produced them."""
    import torch

    from asvp.loading import MixedPrecision, loader_workers

    from .finetune import BATCH_SIZE, OFFICIAL_AUGMENTATION, images_per_second

    cuda = torch.device("cuda")
    figures = {
        name: images_per_second("cuda", mixed, images, size, augmentation=OFFICIAL_AUGMENTATION)
        for name, mixed in (("fp32", False), ("mixed", True))
    }
    return {
        **figures,
        "precision": MixedPrecision.for_device(cuda).name,
        "workers": loader_workers(cuda),
        "images": images,
        "size": size,
        "batch": BATCH_SIZE,
    }


def large_finetune_record() -> dict:
    """The ``finetune-large`` step's figures (:func:`perf.finetune.large_model_record`)."""
    from .finetune import large_model_record

    return large_model_record("cuda")


_CHILDREN = {"finetune": finetune_record, "finetune-large": large_finetune_record}
"""The steps measured by a child process of this module, by name."""


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    import torch

    return torch.cuda.is_available()


def _print_plan(test_ids: Sequence[str]) -> None:
    for step in STEPS:
        print(f"{step.name:12} {step.budget_s:4d} s  {step.what}")
    print(f"{'total':12} {planned_seconds():4d} s  (with {DRIVER_ALLOWANCE_S} s for the driver)")
    print(f"CUDA-only tests ({len(test_ids)}):", *test_ids, sep="\n  ")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the check, its plan (``--plan``) or a step's child (:data:`_CHILDREN`)."""
    parser = argparse.ArgumentParser(prog="python -m perf.gpu_check", description=__doc__)
    parser.add_argument(
        "child", nargs="?", choices=list(_CHILDREN), help="internal: a step's child"
    )
    parser.add_argument("--plan", action="store_true", help="print the steps and test ids only")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="'-': print only")
    args = parser.parse_args(argv)
    if args.plan:
        _print_plan(cuda_only_tests())
        return 0
    if not cuda_available():
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return 2
    if args.child is not None:
        print(json.dumps(_CHILDREN[args.child]()), flush=True)
        return 0
    import torch

    from .selection_table import _machine_line, machine_info

    started = time.perf_counter()
    results = run_check(cuda_only_tests())
    info = machine_info("cuda", torch.get_num_threads())
    gpu = torch.cuda.get_device_name(0)
    date = time.strftime("%Y-%m-%d")
    total = time.perf_counter() - started
    section = render_section(results, gpu, date, _machine_line(info), total)
    publish_section(args.output, SECTION, section)
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
