"""One measurement of the selection benchmark, in its own process (``python -m perf.selection
measure``), and what it needs: the strategies' modules, the inputs of each reference, the
options given instead of the defaults, the budget.

Kept apart from the driver (:mod:`perf.selection`, which re-exports these names) so that each
module stays readable; see the driver's docstring for why each measurement is a fresh process.
"""

from __future__ import annotations

import importlib
import resource
import time
from pathlib import Path

from .memory import status_bytes

__all__ = [
    "BENCH_OPTIONS",
    "BUDGET",
    "NAIVE_INPUTS",
    "STRATEGY_MODULES",
    "generate",
    "load_strategies",
    "measure",
    "probcover_greedy_steps",
]

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

#: The inputs each reference of :mod:`perf.naive` reads.
NAIVE_INPUTS = {
    "badge": frozenset({"probs", "embeddings"}),
    "kcenter": frozenset({"embeddings"}),
    "kcenter_running_min": frozenset({"embeddings"}),
}

#: Options given to a strategy instead of its defaults, with the reason. ProbCover's purity rule
#: picks delta 1.25 on the 20k pool, at which the labelled rows already cover every candidate
#: (the greedy then does nothing: a degenerate case); at 1.0 they cover 70% of the candidates
#: and the greedy picks an uncovered row at every one of the 1000 steps (``perf.selection
#: probcover-steps``; 762 steps at 1.08, 207 at 1.10).
BENCH_OPTIONS: dict[str, dict[str, object]] = {"probcover": {"delta": 1.0}}

#: Indices selected per measurement, and labelled rows of each pool.
BUDGET = 1000


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
    """One measurement in this process: one selection by ``strategy`` with its
    :data:`BENCH_OPTIONS` (or by the ``naive`` reference, a key of :data:`NAIVE_INPUTS`) on the
    pool ``size``; see the module docstring.

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
        picked = select(strategy, request, BENCH_OPTIONS.get(strategy, {}))
    elif naive == "badge":
        picked = naive_impl.naive_badge(request.probs, request.embeddings.pool, budget, request.rng)
    else:
        rep = request.embeddings
        greedy = (
            naive_impl.naive_k_center if naive == "kcenter" else naive_impl.running_min_k_center
        )
        picked = greedy(rep.pool, rep.labeled, budget)
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
        "options": BENCH_OPTIONS.get(strategy, {}) if strategy else {},
        "selected": int(np.asarray(picked).size),
        "device": device,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "peak_rss_bytes": peak * 1024,  # ru_maxrss is in KiB on Linux
        "rss_before_bytes": rss_before * 1024,
        "input_bytes": pool.nbytes,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }


def probcover_greedy_steps(
    size: str, delta: float | None, *, budget: int = BUDGET, seed: int = 0
) -> dict[str, object]:
    """Whether ProbCover's greedy has work on the pool ``size`` at radius ``delta`` (``None``:
    the purity rule's radius, as the strategy's default computes it).

    Returns the radius, the fraction of candidates the labelled rows already cover, and the
    greedy steps that pick an uncovered row (at most ``budget``; 0 is the degenerate case in
    which the whole selection is random).
    """
    from asvp.strategies.kmeans import kmeans
    from asvp.strategies.probcover import (
        coverage_graph,
        covered_by,
        delta_by_purity,
        greedy_max_coverage,
        purity_radius,
    )
    from asvp.strategies.rows import l2_normalized_rows

    from .synthetic import make_pool, parse_size

    request = make_pool(parse_size(size, seed=seed)).request(budget, {"features"}, seed=seed)
    n = len(request.pool_ids)
    x = l2_normalized_rows([request.features.pool, request.features.labeled])
    if delta is None:
        labels = kmeans(x, int(request.num_classes), rng=request.rng).labels.cpu().numpy()
        delta = delta_by_purity(purity_radius(x, labels), 0.95)
    covered = covered_by(x[:n], x[n:], float(delta))
    indptr, indices = coverage_graph(x[:n], float(delta), covered=covered)
    steps = greedy_max_coverage(indptr, indices, budget).size
    return {"delta": float(delta), "covered": float(covered.mean()), "greedy_steps": int(steps)}


def generate(size: str, out: str | Path, *, labelled: int | None = None, seed: int = 0) -> None:
    """Generate the pool ``size`` (features and probs, on the CPU) and save it to ``out``."""
    from .synthetic import make_pool, parse_size, save_pool

    save_pool(make_pool(parse_size(size, labelled=labelled, seed=seed)), out)
