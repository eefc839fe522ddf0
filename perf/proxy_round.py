"""``make bench``: the proxy round of SVPp timed three ways, and an ImageNet-sized round on a
memory-mapped pool.

Usage (from the repository root)::

    python -m perf.proxy_round [--parts a b] [--device cpu|cuda] [--threads N] [--output PATH]
    python -m perf.proxy_round measure --part a|b --way ours|dataloader|matmul --data DIR
    python -m perf.proxy_round measure --part select --strategy margin|badge|coreset --data DIR
    python -m perf.proxy_round generate --part a|b --out DIR

The parts (issue "speed where the method promises it"):

* **a**: one SVPp round on a 50k x 2048 pool: the 2048 -> 2048 -> 10 proxy trained for 50
  epochs on 10k labelled rows, the 40k other rows scored, 1000 selected by margin. Timed three
  ways in the same run: *ours* (:class:`~asvp.pool.PoolFeatures` over the float16 memory map,
  :func:`~asvp.training.train_proxy`, :func:`~asvp.training.proxy_outputs`,
  :func:`~asvp.strategies.select`: what a cell runs), *dataloader* (a per-sample ``Dataset``
  and ``DataLoader``, as the official ``train.py`` feeds its proxy: ``FeasDataset``,
  ``num_workers=0``, batch 2048, then a sort of the margins), and *matmul* (only the matrix
  products the round needs, on float32 tensors already in memory: the floor).
* **b**: an ImageNet-sized round: 1,281,167 x 2048 float16 features in a memory-mapped file,
  1000 classes, 100k labelled; the proxy trained for 2 epochs, the 1,181,167 unlabelled rows
  scored, 10k selected by margin. Wall time and peak anonymous memory (:mod:`perf.memory`:
  the memory map's pages are not anonymous, and are excluded).
* **select** (GPU): margin, BADGE and coreset selecting 50k from part b's pool, on the
  outputs of part b's proxy.

Every measurement runs in a fresh process (:func:`perf.selection.run_child`), so that its
memory figures are its own; pools are generated once per run into a temporary directory
(a Gaussian mixture, as :mod:`perf.synthetic`: random class centres, per-class noise).
Timings synchronise CUDA. The result is the section ``proxy-round`` of
``docs/benchmarks.md`` (:mod:`perf.document`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asvp.timing import PhaseTimer

from .document import write_section
from .selection import DEFAULT_OUTPUT, _machine_line, machine_info, run_child
from .selection_table import GIB

MODULE = "perf.proxy_round"
SECTION = "proxy-round"
WAYS = ("ours", "dataloader", "matmul")
SELECT_STRATEGIES = ("margin", "badge", "coreset")
SELECT_BUDGET = 50_000
GENERATE_ROWS = 65_536
TIMEOUT = 3600


@dataclass(frozen=True)
class RoundSpec:
    """The pool and the round of one part."""

    rows: int
    dim: int
    classes: int
    labelled: int
    epochs: int
    budget: int
    batch_size: int = 2048

    @property
    def label(self) -> str:
        return f"{self.rows:,}×{self.dim} float16, {self.classes} classes"


PARTS = {
    "a": RoundSpec(rows=50_000, dim=2048, classes=10, labelled=10_000, epochs=50, budget=1000),
    "b": RoundSpec(
        rows=1_281_167, dim=2048, classes=1000, labelled=100_000, epochs=2, budget=10_000
    ),
}


# ----------------------------------------------------------------------------- the pools


def generate(part: str, out: str | Path, seed: int = 0) -> None:
    """Write part ``part``'s pool to ``out``: ``features.npy`` (float16, written chunk by chunk
    into a memory map, as the feature store holds features), ``labels.npy`` and
    ``labeled.npy`` (the seeded random labelled rows)."""
    spec = PARTS[part]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((spec.classes, spec.dim), dtype=np.float32)
    noise = rng.uniform(0.5, 1.5, spec.classes).astype(np.float32)
    labels = rng.integers(0, spec.classes, spec.rows)
    features = np.lib.format.open_memmap(
        out / "features.npy", mode="w+", dtype=np.float16, shape=(spec.rows, spec.dim)
    )
    for start in range(0, spec.rows, GENERATE_ROWS):
        y = labels[start : start + GENERATE_ROWS]
        block = rng.standard_normal((len(y), spec.dim), dtype=np.float32)
        block *= noise[y, None]
        block += centres[y]
        features[start : start + len(y)] = block
    features.flush()
    del features
    np.save(out / "labels.npy", labels)
    np.save(out / "labeled.npy", np.sort(rng.choice(spec.rows, spec.labelled, replace=False)))


@dataclass
class _Pool:
    features: np.ndarray  # the float16 memory map
    labels: np.ndarray
    labeled: np.ndarray
    unlabeled: np.ndarray


def _load(data: Path) -> _Pool:
    labels, labeled = np.load(data / "labels.npy"), np.load(data / "labeled.npy")
    features = np.load(data / "features.npy", mmap_mode="r")
    return _Pool(features, labels, labeled, np.setdiff1d(np.arange(len(labels)), labeled))


# ----------------------------------------------------------------------------- the ways


def _ours(pool: _Pool, spec: RoundSpec, device: str, clock: PhaseTimer) -> np.ndarray:
    """The round as a cell runs it (:meth:`asvp.pipelines.selection.Selection._proxy_scoring`)."""
    import torch

    from asvp.config import ProxyConfig
    from asvp.pool import PoolFeatures
    from asvp.strategies import SelectionRequest, select
    from asvp.training import proxy_outputs, train_proxy

    config = ProxyConfig(epochs=spec.epochs, batch_size=spec.batch_size)
    with clock.phase("train"):
        features = PoolFeatures(pool.features, device)
        targets = torch.from_numpy(pool.labels[pool.labeled]).to(device)
        proxy = train_proxy(features.rows(pool.labeled), targets, spec.classes, config, seed=0)
    with clock.phase("score"):
        outputs = proxy_outputs(proxy, features, pool.unlabeled, config.score_batch_size)
    with clock.phase("select"):
        request = SelectionRequest(
            pool.unlabeled, pool.labeled, spec.budget, np.random.default_rng(0), outputs.probs
        )
        return select("margin", request)


def _dataloader(pool: _Pool, spec: RoundSpec, device: str, clock: PhaseTimer) -> np.ndarray:
    """The official code's way: a per-sample dataset of feature rows (``FeasDataset``) read
    by a ``DataLoader`` (``num_workers=0``), the same proxy, optimiser and schedule; then the
    pool's softmax outputs gathered batch by batch and the margins sorted."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    from asvp.models.heads import ProxyMLP
    from asvp.training import _cosine_factor

    class FeatureRows(Dataset):
        def __init__(self, rows: np.ndarray) -> None:
            self.rows = rows

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            row = int(self.rows[i])
            return torch.from_numpy(features[row]), int(pool.labels[row])

    features = np.asarray(pool.features, dtype=np.float32)  # the official np.load: in memory
    torch.manual_seed(0)
    with clock.phase("train"):
        train = DataLoader(FeatureRows(pool.labeled), batch_size=spec.batch_size, shuffle=True)
        proxy = ProxyMLP(spec.dim, spec.dim, spec.classes).to(device)
        optimizer = torch.optim.SGD(proxy.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        total = spec.epochs * len(train)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: _cosine_factor(step, total)
        )
        proxy.train()
        for _ in range(spec.epochs):
            for x, y in train:
                loss = F.cross_entropy(proxy(x.to(device)), y.to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
    with clock.phase("score"), torch.no_grad():
        proxy.eval()
        score = DataLoader(FeatureRows(pool.unlabeled), batch_size=spec.batch_size)
        probs = torch.cat([proxy(x.to(device)).softmax(dim=1) for x, _ in score])
    with clock.phase("select"):
        top2 = probs.topk(2, dim=1).values
        order = torch.sort(top2[:, 0] - top2[:, 1]).indices[: spec.budget].cpu().numpy()
        return pool.unlabeled[order]


def _matmul(pool: _Pool, spec: RoundSpec, device: str, clock: PhaseTimer) -> np.ndarray:
    """Only the matrix products of the round, on float32 tensors already on the device: per
    training step the forward products of both layers and the weight gradients (no
    normalisation, activation, loss or update), then the forward products over the pool."""
    import torch

    gen = torch.Generator().manual_seed(0)
    labeled = torch.from_numpy(np.asarray(pool.features[pool.labeled], dtype=np.float32))
    unlabeled = torch.from_numpy(np.asarray(pool.features[pool.unlabeled], dtype=np.float32))
    labeled, unlabeled = labeled.to(device), unlabeled.to(device)
    w1 = torch.randn(spec.dim, spec.dim, generator=gen).to(device) / math.sqrt(spec.dim)
    w2 = torch.randn(spec.dim, spec.classes, generator=gen).to(device) / math.sqrt(spec.dim)
    with clock.phase("train"):
        for _ in range(spec.epochs):
            for start in range(0, len(labeled), spec.batch_size):
                x = labeled[start : start + spec.batch_size]
                hidden = x @ w1
                logits = hidden @ w2
                grad_w2 = hidden.T @ logits[:, : spec.classes]
                grad_hidden = logits @ w2.T
                grad_w1 = x.T @ grad_hidden
                del grad_w1, grad_w2
    with clock.phase("score"):
        for start in range(0, len(unlabeled), 4096):
            (unlabeled[start : start + 4096] @ w1) @ w2
    clock.seconds["select"] = 0.0
    return pool.unlabeled[: spec.budget]


def _selection(pool: _Pool, strategy: str, device: str, clock: PhaseTimer) -> np.ndarray:
    """``strategy`` selecting :data:`SELECT_BUDGET` rows of part b's pool, on the outputs of
    part b's proxy (training and scoring not timed)."""
    import torch

    from asvp.config import ProxyConfig
    from asvp.pool import PoolFeatures
    from asvp.strategies import Representation, SelectionRequest, select, strategy_inputs
    from asvp.training import proxy_outputs, train_proxy

    spec = PARTS["b"]
    features = PoolFeatures(pool.features, device)
    targets = torch.from_numpy(pool.labels[pool.labeled]).to(device)
    config = ProxyConfig(epochs=spec.epochs)
    proxy = train_proxy(features.rows(pool.labeled), targets, spec.classes, config, seed=0)
    needs = strategy_inputs(strategy)
    keep = "embeddings" in needs
    outputs = proxy_outputs(proxy, features, pool.unlabeled, config.score_batch_size, keep)
    embeddings = None
    if keep:
        labeled = proxy_outputs(proxy, features, pool.labeled, config.score_batch_size, True)
        embeddings = Representation(outputs.embeddings, labeled.embeddings)
    request = SelectionRequest(
        pool.unlabeled,
        pool.labeled,
        SELECT_BUDGET,
        np.random.default_rng(0),
        outputs.probs if "probs" in needs else None,
        embeddings,
        num_classes=spec.classes,
    )
    with clock.phase("select"):
        return select(strategy, request)


# ----------------------------------------------------------------------------- the child


def measure(
    part: str,
    data: str | Path,
    device: str = "cpu",
    way: str = "ours",
    strategy: str | None = None,
    threads: int | None = None,
) -> dict[str, object]:
    """One measurement in this process; returns its JSON-ready record (seconds per phase,
    total, peak anonymous bytes, on CUDA the peak allocated GPU bytes)."""
    import torch

    from .memory import AnonymousPeak

    if threads:
        torch.set_num_threads(int(threads))
    pool = _load(Path(data))
    with torch.no_grad():  # start the BLAS thread pool / CUDA context outside the timer
        warm = torch.ones(256, 256, device=device)
        (warm @ warm).sum().item()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = PhaseTimer(device)
    with AnonymousPeak() as peak:
        if part == "select":
            selected = _selection(pool, strategy or "margin", device, clock)
        else:
            run = {"ours": _ours, "dataloader": _dataloader, "matmul": _matmul}[way]
            selected = run(pool, PARTS[part], device, clock)
    return {
        "part": part,
        "way": way if part != "select" else strategy,
        "device": device,
        "threads": torch.get_num_threads(),
        "seconds": dict(clock.seconds),
        "total": sum(clock.seconds.values()),  # the timed phases only: no imports, no set-up
        "selected": int(np.asarray(selected).size),
        "peak_anonymous_bytes": peak.bytes,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }


# ----------------------------------------------------------------------------- the driver


@dataclass
class Measurement:
    """One row of the result table."""

    part: str
    way: str
    status: str
    record: dict


def _measurements(
    parts: Sequence[str], device: str, threads: int, data_root: Path, timeout: float
) -> list[Measurement]:
    rows = []
    generated: set[str] = set()
    for part in parts:
        source = "b" if part == "select" else part
        data = data_root / source
        if source not in generated:
            _log(f"generating part {source}'s pool ({PARTS[source].label}) in {data}")
            status, res = run_child(
                ["generate", "--part", source, "--out", str(data)],
                timeout,
                threads,
                module=MODULE,
            )
            if status != "ok" and not (data / "labeled.npy").is_file():
                rows.append(Measurement(part, "generate", status, res))
                continue
            generated.add(source)
        if part == "select":
            variants = [("--strategy", s) for s in SELECT_STRATEGIES]
        else:
            variants = [("--way", w) for w in (WAYS if part == "a" else ("ours",))]
        for flag, value in variants:
            args = ["measure", "--part", part, flag, value, "--data", str(data)]
            args += ["--device", device, "--threads", str(threads)]
            status, res = run_child(args, timeout, threads, module=MODULE)
            rows.append(Measurement(part, value, status, res))
            _log(f"[{part}] {value}: {status} {json.dumps(res)[:300]}")
    return rows


def _seconds(record: dict, phase: str) -> str:
    value = record.get("seconds", {}).get(phase) if phase != "total" else record.get("total")
    return "–" if value is None else (f"{value:.2f}" if value < 10 else f"{value:.1f}")


def render_table(rows: Sequence[Measurement]) -> str:
    """Markdown: part, way, train / score / select / total seconds, peak anonymous GiB, peak
    GPU GiB, and the total relative to *ours* of the same part."""
    ours = {r.part: r.record["total"] for r in rows if r.way == "ours" and r.status == "ok"}
    lines = [
        "| part | way | train s | score s | select s | total s | peak anonymous GiB "
        "| peak GPU GiB | total / ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rec = row.record
        if row.status != "ok":
            lines.append(f"| {row.part} | {row.way} | {row.status}: {rec.get('error', '')} |||||||")
            continue
        gpu = rec.get("cuda_peak_bytes")
        ratio = rec["total"] / ours[row.part] if row.part in ours and row.part != "select" else None
        cells = [
            row.part,
            f"`{row.way}`",
            *(_seconds(rec, phase) for phase in ("train", "score", "select", "total")),
            f"{rec['peak_anonymous_bytes'] / GIB:.2f}",
            "–" if gpu is None else f"{gpu / GIB:.2f}",
            "–" if ratio is None else f"{ratio:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(rows: Sequence[Measurement], gpu: bool) -> list[str]:
    """The issue's acceptance checks, stated with the measured figures."""
    found = {(r.part, r.way): r.record for r in rows if r.status == "ok"}
    out = []
    ours, loop, floor = (found.get(("a", way)) for way in ("ours", "dataloader", "matmul"))
    if ours and floor and not gpu:
        ratio = ours["total"] / floor["total"]
        out.append(
            f"(a) on CPU: ours {ours['total']:.1f} s = {ratio:.2f}× the bare matrix products "
            f"({floor['total']:.1f} s); target ≤ 1.5×: {'met' if ratio <= 1.5 else 'NOT met'}"
        )
    if ours and loop:
        speedup = loop["total"] / ours["total"]
        target = " target ≥ 5× on a GPU:" if gpu else ""
        met = (" met" if speedup >= 5 else " NOT met") if gpu else ""
        out.append(
            f"(a) ours {speedup:.1f}× faster than the per-sample DataLoader loop "
            f"({loop['total']:.1f} s);{target}{met}".rstrip(";")
        )
    big = found.get(("b", "ours"))
    if big:
        peak = big["peak_anonymous_bytes"] / GIB
        out.append(
            f"(b) completed in {big['total']:.0f} s with peak anonymous memory {peak:.2f} GiB; "
            f"target < 8 GiB: {'met' if peak < 8 else 'NOT met'}"
        )
    elif any(r.part == "b" for r in rows):
        out.append("(b) did not complete: NOT met")
    return out


def render_section(
    rows: Sequence[Measurement], info: dict[str, str], total_seconds: float, command: str
) -> str:
    gpu = info["device"].startswith("cuda")
    specs = "\n".join(
        f"* **({part})** {spec.label}; {spec.labelled:,} labelled; the proxy "
        f"{spec.dim}→{spec.dim}→{spec.classes} trained {spec.epochs} epochs (batch "
        f"{spec.batch_size}); {spec.rows - spec.labelled:,} rows scored; {spec.budget:,} "
        "selected by margin."
        for part, spec in PARTS.items()
    )
    checks = "\n".join(f"* {v}" for v in verdicts(rows, gpu)) or "* (not measured in this run)"
    if not gpu:
        checks += (
            "\n* GPU figures (the GPU checks, the 50k selections, fine-tuning images/s): not "
            "measured in this run; `make bench BENCH_DEVICE=cuda` on a GPU machine adds them."
        )
    return f"""## Proxy round (SVPp) and an ImageNet-sized pool

Written by `{command}` on {time.strftime("%Y-%m-%d")}; total wall time {total_seconds / 60:.1f} min.

**Machine.** {_machine_line(info)}.

**What is measured** (`perf/proxy_round.py`; each row a fresh process; synthetic Gaussian
mixture pools stored as float16 `.npy` files and read memory-mapped, as the feature store
serves them):

{specs}

*ours* is what a cell runs: `PoolFeatures` over the memory map (on CUDA the pool is copied to
the GPU once), `train_proxy`, `proxy_outputs` (batches of 4096 rows into preallocated outputs)
and `select("margin")`. *dataloader* is the official code's way: a per-sample `Dataset` of
feature rows read by a `DataLoader` (batch 2048, `num_workers=0`), the same proxy, optimiser
and schedule, then the softmax outputs concatenated and the margins sorted. *matmul* is only
the matrix products the round needs, on float32 tensors already in memory (per step: both
layers' forward products and their weight gradients; then the pool's forward products): the
floor. *train* includes reading the labelled rows; *select* includes the contract checks of
`asvp.strategies.select`. *Peak anonymous* is the largest `RssAnon` of the process sampled
every 5 ms (`perf/memory.py`): the memory map's pages are file pages, not anonymous, and are
excluded. *select* rows (GPU runs): one selection of {SELECT_BUDGET:,} from part (b)'s pool
on its proxy's outputs (probabilities, hidden-layer embeddings); only the selection is timed.

{render_table(rows)}

**Acceptance checks** (issue: (a) on CPU within 1.5× of the bare matrix products, on a CUDA
GPU at least 5× faster than the DataLoader loop; (b) completes on a 2-core CPU machine with
peak anonymous memory under 8 GiB):

{checks}
"""


def run(args: argparse.Namespace) -> list[Measurement]:
    """The driver: generate the pools, measure every part and way, write the section."""
    import os

    started = time.perf_counter()
    threads = args.threads or len(os.sched_getaffinity(0))
    info = machine_info(args.device, threads)
    default = ("a", "b", "select") if args.device.startswith("cuda") else ("a", "b")
    parts = list(args.parts or default)
    print(f"Machine: {_machine_line(info)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="asvp-proxy-round-", dir=args.scratch) as scratch:
        rows = _measurements(parts, args.device, threads, Path(scratch), args.timeout)
    total = time.perf_counter() - started
    print()
    print(render_table(rows))
    for verdict in verdicts(rows, args.device.startswith("cuda")):
        print(f"* {verdict}")
    if str(args.output) != "-":
        command = "python -m perf.proxy_round " + " ".join(sys.argv[1:])
        write_section(args.output, SECTION, render_section(rows, info, total, command.strip()))
        print(f"Wrote section {SECTION!r} of {args.output}", flush=True)
    return rows


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m perf.proxy_round", description=__doc__)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=[*PARTS, "select"],
        help="parts to run (default: a b; also select on CUDA)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per process")
    parser.add_argument(
        "--scratch", default=None, help="directory for the generated pools (default: $TMPDIR)"
    )
    parser.add_argument(
        "--output", default=str(DEFAULT_OUTPUT), help="document to write the section to ('-': none)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the driver, or the ``measure`` / ``generate`` child."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("measure", "generate"):
        child = argparse.ArgumentParser(prog=f"python -m perf.proxy_round {argv[0]}")
        child.add_argument("--part", required=True, choices=[*PARTS, "select"])
        if argv[0] == "generate":
            child.add_argument("--out", required=True)
            opts = child.parse_args(argv[1:])
            generate(opts.part, opts.out)
            print(json.dumps({"generated": opts.out}), flush=True)
            return 0
        child.add_argument("--data", required=True)
        child.add_argument("--device", default="cpu")
        child.add_argument("--way", choices=WAYS, default="ours")
        child.add_argument("--strategy", choices=SELECT_STRATEGIES, default=None)
        child.add_argument("--threads", type=int, default=None)
        opts = child.parse_args(argv[1:])
        record = measure(opts.part, opts.data, opts.device, opts.way, opts.strategy, opts.threads)
        print(json.dumps(record), flush=True)
        return 0
    run(_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
