"""The table and the section of ``docs/benchmarks.md`` that :mod:`perf.selection` writes.

Kept apart from the driver so that each module stays readable: :class:`Row` (one line of the
table), :func:`render_table`, :func:`render_document` (the explanatory text, the table and the
acceptance checks, with the figures measured) and the machine description. The benchmark's
constants (strategies, references, options, limits) are read from :mod:`perf.selection` when a
document is rendered.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .selection_child import BENCH_OPTIONS, BUDGET
from .selection_plan import NAIVE_NAMES, QUADRATIC, STRATEGIES

__all__ = [
    "GIB",
    "gib",
    "Row",
    "machine_info",
    "render_document",
    "render_table",
    "verdicts",
]

GIB = float(1 << 30)


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
    official: dict[str, object] | None = None  # the reference in the official code's manner
    official_status: str | None = None


def gib(value: object) -> str:
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
    head += ["naive seconds", "speed-up", "official-manner seconds", "speed-up vs it", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        res = row.result or {}
        seconds = res.get("seconds") if row.status == "ok" else row.status
        cells = [
            f"`{row.strategy}`",
            row.pool,
            gib(res.get("input_bytes")),
            seconds if isinstance(seconds, str) else _seconds(seconds),
            gib(res.get("peak_rss_bytes")),
            gib(res.get("rss_before_bytes")),
        ]
        if gpu:
            cells.append(gib(res.get("cuda_peak_bytes")))
        for status, record in ((row.naive_status, row.naive), (row.official_status, row.official)):
            cells += _reference_cells(row, status, record)
        cells.append("; ".join(row.notes))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _reference_cells(row: Row, status: str | None, record: dict | None) -> list[str]:
    """The seconds of a reference measurement and the speed-up (its seconds / the row's)."""
    if status != "ok" or not record:
        return [status or "", ""]
    seconds = (row.result or {}).get("seconds")
    ratio = float(record["seconds"]) / float(seconds) if row.status == "ok" and seconds else None
    return [_seconds(record["seconds"]), f"{ratio:.0f}×" if ratio else ""]


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


def verdicts(rows: Sequence[Row]) -> list[str]:
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
        if row.official_status == "ok" and row.status == "ok" and row.official:
            ratio = float(row.official["seconds"]) / float(res["seconds"])
            out.append(
                f"`{row.strategy}` at {row.pool}: {ratio:.0f}× faster than the reference in "
                "the official code's manner (running minimum; no target)"
            )
    return out


def _bytes(count: float) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB / 10 else f"{count / (1 << 20):.1f} MiB"


def _bench_options() -> str:
    probcover = BENCH_OPTIONS["probcover"]["delta"]
    return (
        f"`probcover`, with `delta: {probcover}` (the pool is unchanged): with the default, the "
        "purity rule picks delta 1.25 on the 20k pool, at which the 1000 labelled rows already "
        "cover every candidate, so the greedy picks nothing and the whole selection is random "
        f"(a degenerate case). At {probcover} the labelled rows cover 70% of the candidates and "
        "the greedy picks an uncovered row at all 1000 steps (`python -m perf.selection "
        f"probcover-steps --delta {probcover}`). The k-means and purity pass of the default "
        "(about one more quadratic pass) are therefore not in its time"
    )


def _strategy_list() -> str:
    return ", ".join(f"`{s}`" for s in STRATEGIES)


def render_document(
    rows: Sequence[Row],
    info: dict[str, str],
    specs: dict[str, object],
    total_seconds: float,
    command: str,
    timeout: float,
    naive_timeout: float,
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
            baseline = f"{gib(row.result['rss_before_bytes'])} GiB: `random`'s RSS before selection"
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
    checks = "\n".join(f"* {v}" for v in verdicts(rows)) or "* (not measured in this run)"
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

**20k only.** {quadratic}: measured at 20k only. The references are also run at 20k
only, in their own processes, on the same pool (`perf/naive.py`): *naive seconds* for `badge` is
{NAIVE_NAMES["badge"]}; for `coreset` and `coreset_self` the greedy k-center with the
{NAIVE_NAMES["kcenter"]}. That naive k-center is *not* the official code: the official
`acquire_new_sample` keeps a running minimum, so `coreset` is also compared with a k-center
written in its manner, *official-manner seconds*: {NAIVE_NAMES["kcenter_running_min"]}, with
the same picks. Each reference is measured once and shown on both k-center rows since both read
the same tensor here. *Speed-up* = reference seconds / seconds. A measurement still running
after {timeout:.0f} s ({naive_timeout:.0f} s for a reference) is stopped and shown as `timeout`.

**Options.** Every strategy runs with its defaults except {_bench_options()}.

**Same kernel, measured once.** `coreset_self` and `coreset` run the same greedy k-center,
`activeft_al` and `activeft_self` the same ActiveFT optimisation; each pair differs only in
reading `features` or `embeddings`, which are one tensor here, so their selections and costs are
identical. {aliases}

{render_table(rows, gpu=gpu)}

**Acceptance checks** (issue: on a 2-core CPU, `badge` and `coreset` select 1000 from the
200k×2048 pool within 2 minutes each with peak memory under 4 GiB, and are at least 20× faster
than the naive versions at 20k):

{checks}
"""
