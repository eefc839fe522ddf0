"""Selection kernels beside a competing CPU-bound process, before and after a cell's threads
follow its allocation (issue 18, item 6).

Usage (from the repository root)::

    python -m perf.oversubscription [--strategies margin badge coreset typiclust]
                                    [--size 10000x256x10] [--repeats 3] [--timeout 600]
    python -m perf.oversubscription measure --setup SETUP [--strategies ...] [--size SIZE]

A measurement is one selection of :data:`perf.selection_child.BUDGET` indices on a synthetic
pool (:func:`perf.selection_child.measure`), repeated ``--repeats`` times for each strategy in
one fresh process per setup (:func:`perf.selection.run_child`; a process's thread pools are
set once), alone and then beside one process that spins on a CPU, under three setups
(:data:`SETUPS`):

* ``before``: what a cell did before: torch at ``compute.threads`` (1), the BLAS/OpenMP pools
  outside torch (numpy's OpenBLAS, scipy, scikit-learn) at their default, one thread per CPU;
* ``after``: :func:`asvp.compute.compute_settings` as a cell applies it now: torch and every
  native pool at ``compute.threads`` (1), checked against the allocation;
* ``all CPUs``: ``compute.threads`` equal to the CPUs (a grid that asks for them; allowed when
  the cell is alone on its allocation, refused when cells share it).

The table gives the median seconds of ``--repeats`` runs alone and beside the competitor, and
their ratio: how much one foreign busy process slows each kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence

from .selection import run_child

SETUPS = {
    "before": "torch 1 thread, BLAS/OpenMP at their default (one per CPU)",
    "after": "compute_settings(threads=1): torch and BLAS/OpenMP at 1",
    "all CPUs": "torch and BLAS at one thread per CPU",
}
STRATEGIES = ("margin", "badge", "coreset", "typiclust", "probcover")
SPIN = "while True: pass"


def measure_setup(
    strategies: Sequence[str], size: str, setup: str, repeats: int
) -> dict[str, float]:
    """The median seconds of each strategy's selection in this process under ``setup``."""
    from threadpoolctl import threadpool_limits

    from asvp.compute import compute_settings, usable_cpus
    from asvp.config import ComputeConfig

    from .selection_child import measure

    def median(strategy: str, threads: int | None) -> float:
        runs = [measure(size=size, strategy=strategy, threads=threads) for _ in range(repeats)]
        return statistics.median(float(record["seconds"]) for record in runs)

    if setup == "before":
        return {strategy: median(strategy, 1) for strategy in strategies}
    if setup == "after":
        with compute_settings(ComputeConfig(threads=1)):
            return {strategy: median(strategy, None) for strategy in strategies}
    with threadpool_limits(limits=usable_cpus()):
        return {strategy: median(strategy, usable_cpus()) for strategy in strategies}


def _medians(args: argparse.Namespace, setup: str) -> dict[str, float]:
    child = ["measure", "--setup", setup, "--size", args.size, "--repeats", str(args.repeats)]
    status, record = run_child(
        [*child, "--strategies", *args.strategies], args.timeout, module="perf.oversubscription"
    )
    if status != "ok":
        raise RuntimeError(f"{setup}: {status} {record}")
    return record


def run(args: argparse.Namespace) -> list[dict]:
    """Every setup, alone and beside one spinning process; a row per strategy and setup."""
    rows = []
    for setup in SETUPS:
        alone = _medians(args, setup)
        competitor = subprocess.Popen([sys.executable, "-c", SPIN])
        try:
            beside = _medians(args, setup)
        finally:
            competitor.kill()
            competitor.wait()
        for strategy in args.strategies:
            row = {"strategy": strategy, "setup": setup}
            rows.append({**row, "alone": alone[strategy], "beside": beside[strategy]})
            print(_line(rows[-1]), flush=True)
    return rows


def _line(row: dict) -> str:
    ratio = row["beside"] / row["alone"]
    return (
        f"| {row['strategy']} | {row['setup']} | {row['alone']:.2f} | {row['beside']:.2f} "
        f"| {ratio:.1f}x |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.oversubscription", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["measure"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--size", default="10000x256x10")
    parser.add_argument("--setup", choices=list(SETUPS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.command == "measure":
        print(json.dumps(measure_setup(args.strategies, args.size, args.setup, args.repeats)))
        return 0
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f} at the start; size {args.size}")
    for setup, what in SETUPS.items():
        print(f"  {setup}: {what}")
    print("| strategy | setup | alone s | beside one busy process s | slowdown |")
    print("| --- | --- | --- | --- | --- |")
    run(args)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
