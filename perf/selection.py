"""``make bench``: selection time and peak memory of every strategy on synthetic pools.

Usage (from the repository root)::

    python -m perf.selection [--only NAME ...] [--sizes 20k 200k] [--device cpu|cuda]
                              [--threads N] [--timeout SECONDS] [--naive-timeout SECONDS]
                              [--output PATH] [--no-naive] [--measure-aliases]
    python -m perf.selection measure --strategy NAME | --naive KIND --size SIZE ...
    python -m perf.selection generate --size SIZE --out DIR
    python -m perf.selection probcover-steps [--size SIZE] [--delta DELTA]

The driver (no sub-command) measures, for each strategy and pool size, one selection of
:data:`BUDGET` indices with :func:`asvp.strategies.select` (with :data:`BENCH_OPTIONS`), and at
20k the references of :mod:`perf.naive` (BADGE with materialised embeddings and a full distance
matrix; k-center with the distance matrix rebuilt per pick, and k-center with a running minimum
as the official code). Why it is built this way:

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
* strategies whose cost is quadratic in the pool (:data:`QUADRATIC`) run at 20k only;
* an option is set only where the default would time a degenerate case (:data:`BENCH_OPTIONS`).

The table is printed and, for a full run (or with ``--output``), written as the section
``selection`` of ``docs/benchmarks.md`` (:mod:`perf.document`), with what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .document import write_section
from .selection_child import (
    BENCH_OPTIONS,
    BUDGET,
    NAIVE_INPUTS,
    STRATEGY_MODULES,
    generate,
    load_strategies,
    measure,
    probcover_greedy_steps,
)
from .selection_plan import (
    ALIASES,
    NAIVE_FOR,
    NAIVE_SIZE,
    OFFICIAL_FOR,
    QUADRATIC,
    QUADRATIC_SIZE,
    STRATEGIES,
)
from .selection_table import (
    Row,
    _machine_line,
    gib,
    machine_info,
    render_document,
    render_table,
    verdicts,
)

__all__ = [
    "ALIASES",
    "BENCH_OPTIONS",
    "BUDGET",
    "NAIVE_FOR",
    "OFFICIAL_FOR",
    "QUADRATIC",
    "STRATEGIES",
    "Row",
    "machine_info",
    "main",
    "measure",
    "probcover_greedy_steps",
    "render_table",
    "run_child",
]

#: Default per-measurement time limit (seconds), and that of the naive references (the naive
#: k-center is measured in full, never extrapolated: its 1000 rebuilt matrices take minutes).
TIMEOUT = 600
NAIVE_TIMEOUT = 1800

DEFAULT_OUTPUT = Path("docs/benchmarks.md")
SECTION = "selection"


# ----------------------------------------------------------------------------- the driver


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
            references = {**NAIVE_FOR, **{f"{s}:official": k for s, k in OFFICIAL_FOR.items()}}
            naive_kinds = (
                sorted({references[s] for s in references if s.split(":")[0] in runnable})
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
                if name in BENCH_OPTIONS:
                    row.notes.append(
                        ", ".join(f"{k}: {v}" for k, v in BENCH_OPTIONS[name].items())
                        + " (not the default: see below)"
                    )
                kind = NAIVE_FOR.get(name)
                if kind in naive_results:
                    row.naive_status, row.naive = naive_results[kind]
                    _note_reference(row, "naive", row.naive_status, row.naive)
                kind = OFFICIAL_FOR.get(name)
                if kind in naive_results:
                    row.official_status, row.official = naive_results[kind]
                    _note_reference(row, "official-manner", row.official_status, row.official)
    total = time.perf_counter() - started
    gpu = args.device.startswith("cuda")
    print()
    print(render_table(rows, gpu=gpu))
    print()
    for verdict in verdicts(rows):
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


def _note_reference(row: Row, label: str, status: str, record: dict) -> None:
    """The note of a reference measurement on ``row``: its peak RSS, or its error."""
    if status == "ok":
        row.notes.append(f"{label} peak RSS {gib(record['peak_rss_bytes'])} GiB")
    elif status == "error":
        row.notes.append(f"{label}: {record.get('error', '')}"[:200])


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
        f"{res['seconds']:.2f} s, peak RSS {gib(res['peak_rss_bytes'])} GiB "
        f"(before {gib(res['rss_before_bytes'])} GiB)"
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
    if argv and argv[0] == "probcover-steps":
        parser = argparse.ArgumentParser(prog="python -m perf.selection probcover-steps")
        parser.add_argument("--size", default=QUADRATIC_SIZE)
        parser.add_argument("--delta", type=float, default=None, help="default: purity rule")
        opts = parser.parse_args(argv[1:])
        print(json.dumps(probcover_greedy_steps(opts.size, opts.delta)), flush=True)
        return 0
    if argv and argv[0] == "generate":
        opts = _child_parser("generate").parse_args(argv[1:])
        generate(opts.size, opts.out, labelled=opts.labelled, seed=opts.seed)
        return 0
    run(_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
