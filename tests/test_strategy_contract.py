"""The selection contract, checked for every registered strategy (a template test).

As scikit-activeml's template test does for its query strategies, one test runs every strategy
of :func:`asvp.strategies.available_strategies` (``replay`` and BADGE included) on the same
small seeded synthetic pool, with every input a strategy may read (``probs``, ``embeddings``,
``features``): exactly ``min(budget, pool)`` distinct unlabelled pool ids, int64; the same
picks for the same request and seed; the empty pool, a zero budget and a budget equal to or
beyond the pool; the ``candidates`` option; numpy, CPU-tensor and (where there is one) CUDA
inputs. Each strategy's maths is tested in its own file: :data:`MATHS_TESTS` names that test
and :func:`test_every_strategy_has_a_maths_test_of_its_own` fails for a strategy without one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from asvp.strategies import (
    Representation,
    SelectionRequest,
    available_strategies,
    declared_strategy_options,
    select,
)

STRATEGIES = available_strategies()

#: Each registered strategy's own maths test (``file::function``), against a reference written
#: plainly (brute force, the official formula, the documented random draws).
MATHS_TESTS = {
    "activeft_al": "test_activeft.py::test_each_variant_reads_its_own_representation",
    "activeft_self": "test_activeft.py::test_end_to_end_equals_reference_centroids_then_plain_assignment",  # noqa: E501
    "badge": "test_badge.py::test_strategy_returns_pool_ids",
    "coreset": "test_kcenter.py::test_strategies_return_pool_ids_in_pick_order",
    "coreset_self": "test_kcenter.py::test_strategies_return_pool_ids_in_pick_order",
    "entropy": "test_strategies.py::test_uncertainty_strategies_select_pool_ids_not_positions",
    "least_confidence": "test_strategies.py::test_uncertainty_strategies_select_pool_ids_not_positions",  # noqa: E501
    "margin": "test_strategies.py::test_uncertainty_strategies_select_pool_ids_not_positions",
    "probcover": "test_probcover.py::test_strategy_with_given_delta_matches_brute_force",
    "random": "test_strategies.py::test_random_uses_rng_choice_in_pick_order",
    "replay": "test_strategies.py::test_replay_takes_the_next_entries_after_the_labelled_prefix",
    "typiclust": "test_typiclust.py::test_single_cluster_picks_the_most_typical_rows_in_order",
}

#: Options that keep the slow strategies fast on a small pool (their maths is tested elsewhere).
FAST = {"activeft_al": {"iterations": 3}, "activeft_self": {"iterations": 3}}

#: (pool rows, labelled rows, budget): a choice to make, no labelled row, the budget equal to
#: and beyond the pool, the empty pool, a zero budget.
SIZES = [(40, 6, 5), (40, 0, 7), (9, 2, 9), (12, 3, 40), (0, 4, 3), (25, 5, 0)]

CLASSES, EMB_DIM, FEAT_DIM = 4, 6, 5


def _request(n: int, m: int, budget: int, seed: int, to: str | None = None) -> SelectionRequest:
    """A seeded synthetic pool with every input; rows as numpy arrays, or tensors on ``to``."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(700, 700 + 2 * (n + m) + 2))  # ids, not positions
    logits = rng.normal(scale=2.0, size=(n, CLASSES))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    rows = [
        rng.normal(size=shape).astype(np.float32)
        for shape in ((n, EMB_DIM), (m, EMB_DIM), (n, FEAT_DIM), (m, FEAT_DIM))
    ]
    if to is not None:
        probs, *rows = (torch.from_numpy(a).to(to) for a in (probs, *rows))
    return SelectionRequest(
        ids[:n].astype(np.int64),
        ids[n : n + m].astype(np.int64),
        budget,
        np.random.default_rng(seed + 1),
        probs=probs,
        embeddings=Representation(rows[0], rows[1]),
        features=Representation(rows[2], rows[3]),
        num_classes=CLASSES,
    )


def _options(name: str, request: SelectionRequest, folder: Path) -> dict[str, object]:
    """The options to run ``name`` with: ``replay`` gets an order file matching ``request``
    (the labelled set first, then the pool in a seeded order)."""
    options = dict(FAST.get(name, {}))
    if name == "replay":
        pool = np.random.default_rng(3).permutation(request.pool_ids)
        order = folder / "order.npy"
        np.save(order, np.concatenate([request.labeled, pool]).astype(np.int64))
        options["order"] = str(order)
    return options


def _assert_contract(out: np.ndarray, request: SelectionRequest) -> None:
    assert isinstance(out, np.ndarray) and out.ndim == 1 and out.dtype == np.int64
    assert out.size == min(request.budget, len(request.pool_ids))
    assert np.unique(out).size == out.size
    assert np.isin(out, request.pool_ids).all()
    assert not np.isin(out, request.labeled).any()


@pytest.mark.parametrize(("n", "m", "budget"), SIZES)
@pytest.mark.parametrize("name", STRATEGIES)
def test_contract_numpy_and_cpu_tensors(name, n, m, budget, tmp_path):
    request = _request(n, m, budget, seed=n + budget)
    options = _options(name, request, tmp_path)
    out = select(name, request, options)
    _assert_contract(out, request)
    if budget >= n:
        assert sorted(out.tolist()) == sorted(request.pool_ids.tolist())
    # the same request and seed give the same picks, from numpy rows or CPU tensors alike
    again = select(name, _request(n, m, budget, seed=n + budget), options)
    tensors = select(name, _request(n, m, budget, seed=n + budget, to="cpu"), options)
    assert out.tolist() == again.tolist() == tensors.tolist()


@pytest.mark.parametrize("name", STRATEGIES)
def test_candidates_option(name, tmp_path):
    request = _request(40, 6, 5, seed=9)
    options = _options(name, request, tmp_path)
    out = select(name, request, {**options, "candidates": 12})
    _assert_contract(out, request)
    again = select(name, _request(40, 6, 5, seed=9), {**options, "candidates": 12})
    assert out.tolist() == again.tolist()
    drawn = request.pool_ids[np.sort(np.random.default_rng(10).choice(40, 12, replace=False))]
    if name != "replay":  # replay takes its file's next entries, whatever the candidates
        assert np.isin(out, drawn).all()
    # all of the pool when it is not larger; fewer candidates than the budget is an error
    assert select(name, request, {**options, "candidates": 40}).size == 5
    with pytest.raises(ValueError, match="candidates: got 4; expected at least the budget"):
        select(name, _request(40, 6, 5, seed=9), {**options, "candidates": 4})
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=f"'{name}': candidates: got {bad}; expected"):
            select(name, request, {**options, "candidates": bad})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("n", "m", "budget"), SIZES)
@pytest.mark.parametrize("name", STRATEGIES)
def test_contract_cuda_tensors(name, n, m, budget, tmp_path):
    request = _request(n, m, budget, seed=n + budget, to="cuda")
    options = _options(name, request, tmp_path)
    out = select(name, request, options)
    _assert_contract(out, request)
    again = select(name, _request(n, m, budget, seed=n + budget, to="cuda"), options)
    assert out.tolist() == again.tolist()


def test_every_strategy_has_a_maths_test_of_its_own():
    assert sorted(MATHS_TESTS) == STRATEGIES, "name each registered strategy's maths test"
    here = Path(__file__).parent
    for name, test_id in MATHS_TESTS.items():
        filename, function = test_id.split("::")
        source = (here / filename).read_text()
        defined = {
            node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)
        }
        assert function in defined, f"{name}: {test_id} does not exist"
        assert f'"{name}"' in source, f"{name}: {filename} never names the strategy"


def test_every_declared_default_is_within_its_own_range():
    for name in STRATEGIES:
        declared = declared_strategy_options(name)
        assert next(iter(declared)) == "candidates"
        for option in declared.values():
            if not option.required:
                assert option.check(option.default) == option.default, (name, option.name)
