"""``make bench``: selection time and peak memory of every strategy on synthetic pools.

Usage (from the repository root)::

    python -m perf.selection [--only NAME ...] [--sizes 20k 200k] [--device cpu|cuda]
                              [--threads N] [--timeout SECONDS] [--naive-timeout SECONDS]
                              [--output PATH] [--no-naive] [--measure-aliases]
    python -m perf.selection measure --strategy NAME | --naive badge|kcenter --size SIZE ...
    python -m perf.selection generate --size SIZE --out DIR

The driver (no sub-command) measures, for each strategy and pool size, one selection of
:data:`BUDGET` indices with :func:`asvp.strategies.select`, and at 20k the naive references of
:mod:`perf.naive` (BADGE with materialised embeddings and a full distance matrix; k-center
with the ``|L| x |U|`` matrix rebuilt per pick). Why it is built this way:

* every measurement is a fresh process (``python -m perf.selection measure ...``), so that its
  peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``) is that measurement's alone;
  the child prints one JSON line, which the driver collects. A child that fails or runs past
  ``--timeout`` becomes an ``error``/``timeout`` row instead of ending the run;
* each pool size is generated once (``generate`` in its own process, :mod:`perf.synthetic`)
  into a temporary directory, and every child reads the inputs its strategy needs from there,
  chunk by chunk into its own tensors: the inputs are the same for every strategy, and the
  run is not dominated by generating a 200k x 2048 mixture ten times;
* the child times only the :func:`~asvp.strategies.select` call (``perf_counter``, with device
  synchronisation on CUDA, after a small warm-up product so that the BLAS thread pool's start
  is not charged to the first strategy), and also reports the resident memory right before
  it, so that the table shows the selection's own increment over its inputs;
* strategies whose cost is quadratic in the pool (:data:`QUADRATIC`) run at 20k only.

The table is printed and, for a full run (or with ``--output``), written as the section
``selection`` of ``docs/benchmarks.md`` (:mod:`perf.document`), with what was measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .document import write_section
from .memory import status_bytes

__all__ = [
    "ALIASES",
    "BUDGET",
    "NAIVE_FOR",
    "QUADRATIC",
    "STRATEGIES",
    "Row",
    "machine_info",
    "main",
    "measure",
    "render_table",
    "run_child",
]

#: Every strategy the benchmark measures, in table order.
STRATEGIES = (
    "random",
    "margin",
    "least_confidence",
    "entropy",
    "badge",
    "coreset",
    "coreset_self",
    "activeft_self",
    "activeft_al",
    "typiclust",
    "probcover",
)

#: Modules registering the strategies that ``import asvp.strategies`` may not register yet.
STRATEGY_MODULES = {
    "badge": "asvp.strategies.badge",
    "coreset": "asvp.strategies.kcenter",
    "coreset_self": "asvp.strategies.kcenter",
    "activeft_self": "asvp.strategies.activeft",
    "activeft_al": "asvp.strategies.activeft",
    "typiclust": "asvp.strategies.typiclust",
    "probcover": "asvp.strategies.probcover",
}

#: Strategies whose cost is quadratic in the pool, measured at :data:`QUADRATIC_SIZE` only.
QUADRATIC = {
    "probcover": "its δ-ball graph and purity pass are quadratic in the pool",
}
QUADRATIC_SIZE = "20k"

#: Strategies that, on these pools, run the same kernel on the same tensor as another one: they
#: differ only in reading ``embeddings`` instead of ``features`` (or the reverse), and the
#: benchmark passes the same tensor as both. Their figures are the other's unless
#: ``--measure-aliases`` (which only spends time: the selections are identical).
ALIASES = {"coreset_self": "coreset", "activeft_al": "activeft_self"}

#: The naive reference each strategy is compared with, at :data:`NAIVE_SIZE` only.
NAIVE_FOR = {"badge": "badge", "coreset": "kcenter", "coreset_self": "kcenter"}
NAIVE_SIZE = "20k"
NAIVE_INPUTS = {"badge": frozenset({"probs", "embeddings"}), "kcenter": frozenset({"embeddings"})}
NAIVE_NAMES = {
    "badge": "materialised N×(C·D) embeddings, full N×N distance matrix, k-means++",
    "kcenter": "|L|×|U| distance matrix rebuilt at every pick",
}

#: Indices selected per measurement, and labelled rows of each pool.
BUDGET = 1000

#: Default per-measurement time limit (seconds), and that of the naive references (the naive
#: k-center is measured in full, never extrapolated: its 1000 rebuilt matrices take minutes).
TIMEOUT = 600
NAIVE_TIMEOUT = 1800

DEFAULT_OUTPUT = Path("docs/benchmarks.md")
SECTION = "selection"
GIB = float(1 << 30)


# ----------------------------------------------------------------------------- the child


def _current_rss_kib() -> int:
    """Resident memory of this process now (KiB), from ``/proc/self/status``."""
    resident = status_bytes("VmRSS") // 1024
    return resident or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def load_strategies() -> dict[str, str]:
    """Import ``asvp.strategies`` and the strategy modules; return ``{module: error}`` for those
    that fail to import (their strategies are then reported unavailable)."""
    importlib.import_module("asvp.strategies")
    errors = {}
    for module in sorted(set(STRATEGY_MODULES.values())):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure makes it unavailable
            errors[module] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return errors


def measure(
    *,
    size: str,
    strategy: str | None = None,
    naive: str | None = None,
    data: str | Path | None = None,
    device: str = "cpu",
    threads: int | None = None,
    labelled: int | None = None,
    budget: int = BUDGET,
    seed: int = 0,
) -> dict[str, object]:
    """One measurement in this process: one selection by ``strategy`` (or the ``naive``
    reference ``badge``/``kcenter``) on the pool ``size``; see the module docstring.

    ``data`` is a directory written by ``generate`` (the pool is generated here otherwise).
    Returns the JSON-ready record: seconds, peak and pre-selection resident memory (bytes),
    input bytes, and on CUDA the peak allocated GPU memory.
    """
    import numpy as np
    import torch

    from asvp.strategies import select, strategy_inputs

    from . import naive as naive_impl
    from .synthetic import load_pool, make_pool, parse_size

    if (strategy is None) == (naive is None):
        raise ValueError("give exactly one of strategy and naive")
    if threads:
        torch.set_num_threads(int(threads))
    load_strategies()
    needs = strategy_inputs(strategy) if strategy else NAIVE_INPUTS[naive]
    spec = parse_size(size, labelled=labelled, seed=seed)
    with_probs = "probs" in needs
    with_features = bool({"embeddings", "features"} & needs)
    if data is not None:
        pool = load_pool(data, with_probs=with_probs, with_features=with_features, device=device)
    else:
        pool = make_pool(spec, with_probs=with_probs, with_features=with_features, device=device)
    request = pool.request(budget, needs, seed=seed)
    cuda = torch.device(device).type == "cuda"
    with torch.no_grad():  # warm-up: start the BLAS thread pool / CUDA context outside the timer
        warm = torch.ones(256, 256, device=device)
        (warm @ warm).sum().item()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _current_rss_kib()
    start = time.perf_counter()
    if strategy is not None:
        picked = select(strategy, request)
    elif naive == "badge":
        picked = naive_impl.naive_badge(request.probs, request.embeddings.pool, budget, request.rng)
    else:
        rep = request.embeddings
        picked = naive_impl.naive_k_center(rep.pool, rep.labeled, budget)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "strategy": strategy,
        "naive": naive,
        "size": size,
        "rows": pool.spec.rows,
        "dim": pool.spec.dim,
        "classes": pool.spec.classes,
        "labelled": pool.spec.labelled,
        "budget": budget,
        "selected": int(np.asarray(picked).size),
        "device": device,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "peak_rss_bytes": peak * 1024,  # ru_maxrss is in KiB on Linux
        "rss_before_bytes": rss_before * 1024,
        "input_bytes": pool.nbytes,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }


def generate(size: str, out: str | Path, *, labelled: int | None = None, seed: int = 0) -> None:
    """Generate the pool ``size`` (features and probs, on the CPU) and save it to ``out``."""
    from .synthetic import make_pool, parse_size, save_pool

    save_pool(make_pool(parse_size(size, labelled=labelled, seed=seed)), out)


# ----------------------------------------------------------------------------- the driver


@dataclass
class Row:
    """One line of the table: a strategy on a pool, with its naive reference if any."""

    strategy: str
    pool: str
    result: dict[str, object] | None = None
    status: str = "ok"  # ok | timeout | error | skipped | unavailable
    naive: dict[str, object] | None = None
    naive_status: str | None = None
    notes: list[str] = field(default_factory=list)


#: 1-minute load averages sampled as each child ends (the machine's contention during the run).
_LOADS: list[float] = []


def run_child(
    args: Sequence[str],
    timeout: float,
    threads: int | None = None,
    module: str = "perf.selection",
) -> tuple[str, dict]:
    """Run ``python -m MODULE ARGS`` in a fresh process.

    Returns ``("ok", record)`` with the child's last JSON line, ``("timeout", {})`` when it ran
    past ``timeout`` seconds (the child is killed), or ``("error", {"error": last stderr line})``.
    """
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    command = [sys.executable, "-m", module, *args]
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=root
        )
    except subprocess.TimeoutExpired:
        _LOADS.append(os.getloadavg()[0])
        return "timeout", {}
    _LOADS.append(os.getloadavg()[0])
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return "error", {"error": tail[-1] if tail else f"exit status {done.returncode}"}
    return "ok", json.loads(lines[-1])


def _gib(value: object) -> str:
    return f"{float(value) / GIB:.2f}" if isinstance(value, int | float) else "–"


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def render_table(rows: Sequence[Row], *, gpu: bool = False) -> str:
    """The Markdown table of ``rows``: strategy, pool, inputs, seconds, peak RSS, RSS before
    selection, naive seconds, speed-up (naive seconds / seconds), note; with ``gpu`` also the
    peak allocated GPU memory."""
    head = [
        "strategy",
        "pool",
        "inputs (GiB)",
        "seconds",
        "peak RSS (GiB)",
        "RSS before selection (GiB)",
    ]
    head += ["peak GPU (GiB)"] if gpu else []
    head += ["naive seconds", "speed-up", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        res = row.result or {}
        seconds = res.get("seconds") if row.status == "ok" else row.status
        cells = [
            f"`{row.strategy}`",
            row.pool,
            _gib(res.get("input_bytes")),
            seconds if isinstance(seconds, str) else _seconds(seconds),
            _gib(res.get("peak_rss_bytes")),
            _gib(res.get("rss_before_bytes")),
        ]
        if gpu:
            cells.append(_gib(res.get("cuda_peak_bytes")))
        naive_seconds, speedup = "", ""
        if row.naive_status == "ok" and row.naive:
            naive_seconds = _seconds(row.naive["seconds"])
            if row.status == "ok" and res.get("seconds"):
                speedup = f"{float(row.naive['seconds']) / float(res['seconds']):.0f}×"
        elif row.naive_status:
            naive_seconds = row.naive_status
        cells += [naive_seconds, speedup, "; ".join(row.notes)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def machine_info(device: str, threads: int) -> dict[str, str]:
    """CPU model, cores, memory, torch version and the device the benchmark ran on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                break
    except OSError:
        pass
    name = "CPU"
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    return {
        "cpu": cpu,
        "cores": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "threads": str(threads),
        "memory": memory,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": f"{device} ({name})",
    }


def _machine_line(info: dict[str, str]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores ({info['threads']} torch threads), "
        f"{info['memory']} RAM; Python {info['python']}, torch {info['torch']}; "
        f"device {info['device']}"
    )


def _verdicts(rows: Sequence[Row]) -> list[str]:
    """The acceptance checks of the issue, stated with the measured figures."""
    out = []
    for row in rows:
        if row.strategy not in ("badge", "coreset"):
            continue
        res = row.result or {}
        if row.pool.startswith("200k") and row.status == "ok":
            sec, peak = float(res["seconds"]), float(res["peak_rss_bytes"]) / GIB
            met = sec <= 120 and peak < 4
            out.append(
                f"`{row.strategy}` at {row.pool}: {sec:.1f} s, peak {peak:.2f} GiB "
                f"(target ≤ 120 s, < 4 GiB): {'met' if met else 'NOT met'}"
            )
        elif row.pool.startswith("200k"):
            out.append(f"`{row.strategy}` at {row.pool}: {row.status} (target not met)")
        if row.naive_status == "ok" and row.status == "ok" and row.naive:
            ratio = float(row.naive["seconds"]) / float(res["seconds"])
            out.append(
                f"`{row.strategy}` at {row.pool}: {ratio:.0f}× faster than naive "
                f"(target ≥ 20×): {'met' if ratio >= 20 else 'NOT met'}"
            )
    return out


def _bytes(count: float) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB / 10 else f"{count / (1 << 20):.1f} MiB"


def _strategy_list() -> str:
    return ", ".join(f"`{s}`" for s in STRATEGIES)


def render_document(
    rows: Sequence[Row],
    info: dict[str, str],
    specs: dict[str, object],
    total_seconds: float,
    command: str,
    timeout: float = TIMEOUT,
    naive_timeout: float = NAIVE_TIMEOUT,
    load: str = "",
) -> str:
    """``docs/benchmarks.md``: the explanatory header, the table, the acceptance checks.

    ``load`` describes the machine's load during the run (other processes inflate the times).
    """
    from .synthetic import TARGET_CONFIDENCE

    sizes = []
    for spec in specs.values():
        features = _bytes(spec.rows * spec.dim * 4)
        probs = _bytes(spec.unlabelled * spec.classes * 4)
        sizes.append(
            f"* **{spec.label}** ({spec.classes} classes): {spec.labelled} labelled rows, "
            f"{spec.unlabelled} candidates; fp32 features {features} "
            f"({spec.rows}×{spec.dim}), probs {probs} ({spec.unlabelled}×{spec.classes})."
        )
    quadratic = "; ".join(f"`{k}` ({v})" for k, v in QUADRATIC.items())
    gpu = info["device"].startswith("cuda")
    baseline = "a few hundred MiB"
    for row in rows:
        if row.strategy == "random" and row.status == "ok" and row.result:
            baseline = (
                f"{_gib(row.result['rss_before_bytes'])} GiB: `random`'s RSS before selection"
            )
            break
    gpu_note = (
        " *Peak GPU* is `torch.cuda.max_memory_allocated` during the selection." if gpu else ""
    )
    if any("not re-measured" in note for row in rows for note in row.notes):
        aliases = (
            "The second of each pair shows the first's figures (note *not re-measured*), "
            "which keeps `make bench` within its time; `--measure-aliases` measures both."
        )
    else:
        aliases = "Both were measured in this run."
    verdicts = "\n".join(f"* {v}" for v in _verdicts(rows)) or "* (not measured in this run)"
    return f"""## Selection kernels

Written by `{command}` on {time.strftime("%Y-%m-%d")}; total wall time of the run:
{total_seconds / 60:.1f} min.

**Machine.** {_machine_line(info)}.{load}

**What is measured.** For each strategy ({_strategy_list()}), one selection of {BUDGET}
indices through `asvp.strategies.select` (the registry's contract checks included) on a
synthetic pool, with the strategy's default options. Each measurement runs in a fresh process
that loads the pool, then times only the `select` call (`time.perf_counter`; CUDA synchronised).
Pools (`perf/synthetic.py`, seed 0): a Gaussian mixture (random class centres, per-class noise)
as fp32 features, the first rows labelled; `probs` are the softmax of a fixed random linear map
of the candidates' features at a temperature calibrated to a mean top-1 probability of
{TARGET_CONFIDENCE}. The same tensor serves as `embeddings` and `features`; the labelled rows
and the candidates are views of it (no copy). Sizes:

{chr(10).join(sizes)}

**Memory.** *Peak RSS* is the peak resident memory of the measuring process
(`getrusage(RUSAGE_SELF).ru_maxrss`): the Python interpreter with torch and numpy imported
({baseline}), **the inputs the strategy reads** (column *inputs*: only what it needs:
`random` reads nothing, the uncertainty strategies only `probs`, `badge` `probs` and the
embeddings, the others the features), and whatever the selection allocates. *RSS before
selection* is the resident memory just before the `select` call, so the difference is the
selection's own peak increment.{gpu_note}

**20k only.** {quadratic}: measured at 20k only. The naive references are also run at 20k
only, in their own processes, on the same pool: *naive seconds* for `badge` is
{NAIVE_NAMES["badge"]}; for `coreset` and `coreset_self` the greedy k-center with the
{NAIVE_NAMES["kcenter"]} (the official `acquire_new_sample`), measured once and shown on both
rows since both read the same tensor here (`perf/naive.py`). *Speed-up* = naive seconds /
seconds. A measurement still running after {timeout:.0f} s ({naive_timeout:.0f} s for a naive
reference) is stopped and shown as `timeout`.

**Same kernel, measured once.** `coreset_self` and `coreset` run the same greedy k-center,
`activeft_al` and `activeft_self` the same ActiveFT optimisation; each pair differs only in
reading `features` or `embeddings`, which are one tensor here, so their selections and costs are
identical. {aliases}

{render_table(rows, gpu=gpu)}

**Acceptance checks** (issue: on a 2-core CPU, `badge` and `coreset` select 1000 from the
200k×2048 pool within 2 minutes each with peak memory under 4 GiB, and are at least 20× faster
than the naive versions at 20k):

{verdicts}
"""


def _probe_availability(strategies: Sequence[str]) -> dict[str, str]:
    """``{strategy: reason}`` for the strategies that cannot run here."""
    from asvp.strategies import available_strategies

    errors = load_strategies()
    registered = set(available_strategies())
    missing = {}
    for name in strategies:
        if name in registered:
            continue
        module = STRATEGY_MODULES.get(name)
        reason = errors.get(module) if module else None
        missing[name] = f"unavailable ({reason or 'not registered'})"
    return missing


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> list[Row]:
    """The driver: measure every (strategy, size), print the table, write the document."""
    from .synthetic import parse_size

    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    threads = args.threads or len(os.sched_getaffinity(0))
    info = machine_info(args.device, threads)
    print(f"Machine: {_machine_line(info)}", flush=True)
    strategies = list(args.only or STRATEGIES)
    unknown = sorted(set(strategies) - set(STRATEGIES))
    missing = _probe_availability(strategies)
    for name in unknown:
        missing.setdefault(name, "unavailable (not a benchmarked strategy)")
    specs = {size: parse_size(size) for size in args.sizes}
    common = ["--device", args.device, "--threads", str(threads)]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="asvp-bench-") as tmp:
        for size, spec in specs.items():
            label = spec.label
            runnable = [
                s
                for s in strategies
                if s not in missing and (s not in QUADRATIC or size == QUADRATIC_SIZE)
            ]
            naive_kinds = (
                sorted({NAIVE_FOR[s] for s in runnable if s in NAIVE_FOR})
                if (size == NAIVE_SIZE and not args.no_naive)
                else []
            )
            data = Path(tmp) / size
            if runnable or naive_kinds:
                _log(f"[{size}] generating {label} ({spec.classes} classes) ...")
                t0 = time.perf_counter()
                status, res = run_child(
                    ["generate", "--size", size, "--out", str(data)], args.timeout, threads
                )
                if status != "ok" and not (data / "spec.json").exists():
                    raise SystemExit(f"generating {size} failed: {status} {res}")
                _log(f"[{size}] generated in {time.perf_counter() - t0:.1f} s")
            naive_results: dict[str, tuple[str, dict]] = {}
            for kind in naive_kinds:
                _log(f"[{size}] naive {kind} ...")
                naive_results[kind] = run_child(
                    ["measure", "--naive", kind, "--size", size, "--data", str(data), *common],
                    args.naive_timeout,
                    threads,
                )
                _log(f"[{size}] naive {kind}: {_summary(*naive_results[kind])}")
            measured: dict[str, Row] = {}
            for name in strategies:
                row = Row(strategy=name, pool=label)
                rows.append(row)
                if name in missing:
                    row.status, row.notes = "unavailable", [missing[name]]
                    continue
                if name in QUADRATIC and size != QUADRATIC_SIZE:
                    row.status, row.notes = "skipped", [f"quadratic: {QUADRATIC_SIZE} only"]
                    continue
                if name in QUADRATIC:
                    row.notes.append(f"quadratic: {QUADRATIC_SIZE} only")
                twin = measured.get(ALIASES.get(name, ""))
                if twin is not None and not args.measure_aliases:
                    row.status, row.result = twin.status, twin.result
                    row.notes.append(
                        f"figures of `{twin.strategy}`: same kernel on the same tensor here, "
                        "not re-measured"
                    )
                else:
                    _log(f"[{size}] {name} ...")
                    row.status, res = run_child(
                        ["measure", "--strategy", name, "--size", size, "--data", str(data)]
                        + common,
                        args.timeout,
                        threads,
                    )
                    row.result = res
                    measured[name] = row
                    _log(f"[{size}] {name}: {_summary(row.status, res)}")
                    if row.status == "error":
                        row.notes.append(str(res.get("error", ""))[:200])
                kind = NAIVE_FOR.get(name)
                if kind in naive_results:
                    row.naive_status, row.naive = naive_results[kind]
                    if row.naive_status == "ok":
                        row.notes.append(f"naive peak RSS {_gib(row.naive['peak_rss_bytes'])} GiB")
                    elif row.naive_status == "error":
                        row.notes.append(f"naive: {row.naive.get('error', '')}"[:200])
    total = time.perf_counter() - started
    gpu = args.device.startswith("cuda")
    print()
    print(render_table(rows, gpu=gpu))
    print()
    for verdict in _verdicts(rows):
        print(f"* {verdict}")
    print(f"\nTotal: {total / 60:.1f} min", flush=True)
    full = args.only is None and list(args.sizes) == list(_DEFAULT_SIZES)
    output = args.output if args.output is not None else (DEFAULT_OUTPUT if full else None)
    if output is not None and str(output) != "-":
        command = "python -m perf.selection " + " ".join(sys.argv[1:])
        text = render_document(
            rows,
            info,
            specs,
            total,
            command.strip(),
            args.timeout,
            args.naive_timeout,
            _load_line(load_start),
        )
        write_section(output, SECTION, text)
        print(f"Wrote section {SECTION!r} of {output}", flush=True)
    return rows


def _load_line(load_start: float) -> str:
    loads = sorted([load_start, *_LOADS])
    return (
        f" 1-minute load average at the start {load_start:.1f}, sampled after each measurement: "
        f"median {loads[len(loads) // 2]:.1f}, max {loads[-1]:.1f} (a measurement itself adds "
        "about its thread count; more means other processes shared the cores and inflated the "
        "times)."
    )


def _summary(status: str, res: dict) -> str:
    if status != "ok":
        return f"{status} {res.get('error', '')}".strip()
    return (
        f"{res['seconds']:.2f} s, peak RSS {_gib(res['peak_rss_bytes'])} GiB "
        f"(before {_gib(res['rss_before_bytes'])} GiB)"
    )


_DEFAULT_SIZES = ("20k", "200k")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m perf.selection",
        description="Selection time and peak memory of every strategy on synthetic pools.",
    )
    parser.add_argument("--only", nargs="+", metavar="STRATEGY", help="strategies to measure")
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=list(_DEFAULT_SIZES),
        help="pool sizes: 20k, 200k or ROWSxDIMxCLASSES (default: 20k 200k)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (data then on the GPU)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the cores available)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT,
        help=f"seconds per measurement (default {TIMEOUT})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"Markdown file to write ('-': none; default {DEFAULT_OUTPUT} for "
        "a full run, none for a partial one)",
    )
    parser.add_argument(
        "--naive-timeout",
        type=float,
        default=NAIVE_TIMEOUT,
        help=f"seconds per naive reference (default {NAIVE_TIMEOUT})",
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive references")
    parser.add_argument(
        "--measure-aliases",
        action="store_true",
        help="also measure strategies that run the same kernel on the same tensor as another "
        f"({', '.join(f'{a} = {b}' for a, b in ALIASES.items())}); default: reuse its figures",
    )
    return parser


def _child_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m perf.selection {command}")
    parser.add_argument("--size", required=True, help="20k, 200k or ROWSxDIMxCLASSES")
    parser.add_argument("--labelled", type=int, default=None, help="labelled rows")
    parser.add_argument("--seed", type=int, default=0)
    if command == "generate":
        parser.add_argument("--out", required=True, type=Path)
        return parser
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--strategy")
    which.add_argument("--naive", choices=sorted(NAIVE_INPUTS))
    parser.add_argument("--data", type=Path, default=None, help="directory written by generate")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget", type=int, default=BUDGET)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the driver, or the ``measure`` / ``generate`` child."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "measure":
        opts = _child_parser("measure").parse_args(argv[1:])
        record = measure(
            size=opts.size,
            strategy=opts.strategy,
            naive=opts.naive,
            data=opts.data,
            device=opts.device,
            threads=opts.threads,
            labelled=opts.labelled,
            budget=opts.budget,
            seed=opts.seed,
        )
        print(json.dumps(record), flush=True)
        return 0
    if argv and argv[0] == "generate":
        opts = _child_parser("generate").parse_args(argv[1:])
        generate(opts.size, opts.out, labelled=opts.labelled, seed=opts.seed)
        return 0
    run(_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
