"""ActiveFT: the official loss and update, the assignment, the contract and the fixed bugs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import asvp.strategies.activeft as activeft
from asvp.strategies import (
    Representation,
    SelectionRequest,
    check_strategy_options,
    select,
    strategy_inputs,
)
from asvp.strategies.activeft import (
    activeft_centroids,
    activeft_select,
    assign_nearest_unique,
)

NAMES = ["activeft_self", "activeft_al"]


def _reference_centroids(pool, labeled, budget, seed, iterations, batch_size, temp, balance, lr):
    """The official ActiveFT loop (hybrid init), written plainly with full autograd."""
    rng = np.random.default_rng(seed)
    n, m = len(pool), len(labeled)
    init = rng.choice(n, size=budget, replace=False)
    feats = F.normalize(torch.from_numpy(np.vstack([pool, labeled])), dim=1)
    fixed = F.normalize(torch.from_numpy(labeled), dim=1)
    learnt = torch.nn.Parameter(F.normalize(torch.from_numpy(pool[init]), dim=1).clone())
    opt = torch.optim.Adam([learnt], lr=lr)
    for _ in range(iterations):
        if batch_size >= n + m:
            batch = feats
        else:
            batch = feats[np.sort(rng.choice(n + m, size=batch_size, replace=False))]
        cents = torch.cat([fixed, F.normalize(learnt, dim=1)])
        prod_exp = torch.exp(batch @ cents.T / temp)
        pos, nearest = prod_exp.max(dim=1)
        repulsion = torch.exp(cents.detach() @ cents.T / temp).sum(dim=0)
        loss = -(torch.log(pos) - torch.log(pos + repulsion[nearest] * balance)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return F.normalize(learnt.detach(), dim=1)


@pytest.mark.parametrize(
    ("m", "batch_size", "temp", "balance", "chunk"),
    [(4, 10**6, 0.07, 1.0, 7), (0, 10**6, 0.07, 1.0, None), (5, 23, 0.2, 0.5, 4)],
)
def test_centroids_match_the_official_loss_and_adam_updates(m, batch_size, temp, balance, chunk):
    rng = np.random.default_rng(3)
    pool, labeled = rng.normal(size=(60, 5)), rng.normal(size=(m, 5))
    kwargs = dict(iterations=6, batch_size=batch_size, temperature=temp, balance=balance, lr=0.01)
    ours = activeft_centroids(
        pool, labeled, 6, np.random.default_rng(7), chunk_rows=chunk, **kwargs
    )
    ref = _reference_centroids(pool, labeled, 6, 7, 6, batch_size, temp, balance, kwargs["lr"])
    init = F.normalize(torch.from_numpy(pool[np.random.default_rng(7).choice(60, 6, False)]), dim=1)
    assert (ref - init).abs().max() > 1e-3  # the reference really moved
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)


def _plain_assignment(centroids: np.ndarray, pool: np.ndarray) -> list[int]:
    taken: set[int] = set()
    out = []
    for c in centroids:
        cn = c / np.linalg.norm(c)
        best, best_row = -np.inf, -1
        for i, row in enumerate(pool):
            if i in taken:
                continue
            sim = float(row @ cn) / max(float(np.linalg.norm(row)), 1e-12)
            if sim > best:
                best, best_row = sim, i
        taken.add(best_row)
        out.append(best_row)
    return out


@pytest.mark.parametrize(("chunk", "top"), [(None, None), (5, 2), (3, 1), (64, 200)])
def test_assignment_equals_a_plain_loop(chunk, top):
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(40, 6))
    # centroids crowd around a few rows, so later ones find their nearest rows taken
    centroids = np.vstack([pool[[3, 3, 3, 7, 7, 11]] + 1e-3 * rng.normal(size=(6, 6)), pool[:9]])
    got = assign_nearest_unique(centroids, pool, chunk_rows=chunk, top=top)
    assert got.tolist() == _plain_assignment(centroids, pool)


@pytest.mark.parametrize(("chunk", "top"), [(None, None), (2, 1), (4, 2)])
def test_assignment_exact_ties_go_to_the_lowest_row(chunk, top):
    eye = np.eye(3)
    pool = eye[[1, 0, 2, 0, 0, 1]]  # e0 at rows 1, 3, 4; e1 at rows 0, 5
    centroids = eye[[0, 0, 0, 1, 1]]
    got = assign_nearest_unique(centroids, pool, chunk_rows=chunk, top=top)
    assert got.tolist() == [1, 3, 4, 0, 5]


def test_assignment_rejects_more_centroids_than_rows():
    with pytest.raises(ValueError, match="distinct rows"):
        assign_nearest_unique(np.ones((3, 2)), np.ones((2, 2)))


# --------------------------------------------------------------------------- strategies


def _request(n=30, m=10, budget=5, seed=0, dim=6, emb_dim=4, torch_rows=False):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(500, 500 + 2 * (n + m) + 2))
    pool_ids, labeled = ids[:n].astype(np.int64), ids[n : n + m].astype(np.int64)

    def rows(k, d):
        x = rng.normal(size=(k, d)).astype(np.float32)
        return torch.from_numpy(x) if torch_rows else x

    return SelectionRequest(
        pool_ids,
        labeled,
        budget,
        np.random.default_rng(seed + 100),
        features=Representation(rows(n, dim), rows(m, dim)),
        embeddings=Representation(rows(n, emb_dim), rows(m, emb_dim)),
    )


FAST = {"iterations": 3}


def test_declared_inputs():
    assert strategy_inputs("activeft_self") == {"features"}
    assert strategy_inputs("activeft_al") == {"embeddings"}


def test_each_variant_reads_its_own_representation():
    req = _request(n=40, m=5, budget=6, dim=6, emb_dim=6)
    no_emb = SelectionRequest(
        req.pool_ids, req.labeled, req.budget, np.random.default_rng(1), features=req.features
    )
    no_feat = SelectionRequest(
        req.pool_ids, req.labeled, req.budget, np.random.default_rng(1), embeddings=req.features
    )
    # activeft_al on embeddings equal to the features picks what activeft_self picks
    assert (
        select("activeft_self", no_emb, FAST).tolist()
        == select("activeft_al", no_feat, FAST).tolist()
    )
    with pytest.raises(ValueError, match="needs embeddings"):
        select("activeft_al", no_emb, FAST)


@pytest.mark.parametrize("name", NAMES)
def test_reproducible_for_a_seed_and_different_for_another(name):
    a = select(name, _request(n=200, m=10, budget=20, seed=1), FAST)
    b = select(name, _request(n=200, m=10, budget=20, seed=1), FAST)
    other = _request(n=200, m=10, budget=20, seed=1)
    c = select(name, replace(other, rng=np.random.default_rng(5)), FAST)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_end_to_end_equals_reference_centroids_then_plain_assignment():
    rng = np.random.default_rng(4)
    pool, labeled = rng.normal(size=(50, 5)), rng.normal(size=(6, 5))
    got = activeft_select(pool, labeled, 8, np.random.default_rng(2), iterations=4, lr=0.01)
    ref = _reference_centroids(pool, labeled, 8, 2, 4, 20000, 0.07, 1.0, 0.01)
    assert got.tolist() == _plain_assignment(ref.numpy(), pool)


def test_torch_and_numpy_rows_give_the_same_selection():
    a = select("activeft_self", _request(n=60, budget=7, seed=3), FAST)
    b = select("activeft_self", _request(n=60, budget=7, seed=3, torch_rows=True), FAST)
    assert a.tolist() == b.tolist()


# --------------------------------------------------------------------------- fixed bugs


def test_extends_the_labelled_set_instead_of_replacing_it():
    """The official code returned a rebuilt labelled list (possibly dropping old points); here
    only new pool indices come back, even when labelled rows duplicate pool rows."""
    rng = np.random.default_rng(6)
    pool = rng.normal(size=(30, 4)).astype(np.float32)
    labeled_rows = pool[:5].copy()  # every labelled row has a twin in the pool
    pool_ids = np.arange(100, 130, dtype=np.int64)
    labeled = np.arange(5, dtype=np.int64)
    req = SelectionRequest(
        pool_ids, labeled, 6, np.random.default_rng(0), features=Representation(pool, labeled_rows)
    )
    out = select("activeft_self", req, FAST)
    assert out.size == 6 and not np.isin(out, labeled).any() and np.isin(out, pool_ids).all()


def test_pool_smaller_than_the_batch_size_works_and_uses_every_row():
    """The official random.sample(range(N), 20000) raised ValueError for N < 20000 (Pets)."""
    req = _request(n=37, m=3, budget=4)
    out = select("activeft_self", req, {"iterations": 2, "batch_size": 20000})
    assert out.size == 4
    # with the whole pool as the batch, the rng is only used for the initial rows
    a = activeft_centroids(
        req.features.pool, req.features.labeled, 4, np.random.default_rng(0), iterations=2
    )
    b = activeft_centroids(
        req.features.pool,
        req.features.labeled,
        4,
        np.random.default_rng(0),
        iterations=2,
        batch_size=40,
    )
    torch.testing.assert_close(a, b)


def test_import_leaves_autograd_anomaly_detection_off():
    assert activeft is not None
    assert not torch.is_anomaly_enabled()


# --------------------------------------------------------------------------- options


def test_options_are_checked_by_signature():
    for name in NAMES:
        ok = check_strategy_options(
            name, {"iterations": 300, "temperature": 0.1, "lr": 1, "batch_size": 5, "balance": 0}
        )
        assert ok["iterations"] == 300
        with pytest.raises(
            ValueError, match="'activeft_.*iterations: got 1.5; expected an integer >= 0"
        ):
            check_strategy_options(name, {"iterations": 1.5})
        with pytest.raises(ValueError, match="temp: got 0.1; expected a known option"):
            check_strategy_options(name, {"temp": 0.1})


@pytest.mark.parametrize(
    "options",
    [{"temperature": 0.0}, {"lr": -1.0}, {"batch_size": 0}, {"iterations": -1}, {"balance": -1}],
)
def test_bad_option_values_are_refused_naming_the_option(options):
    (key,) = options
    with pytest.raises(ValueError, match=f"'activeft_self': {key}: got {options[key]}; expected"):
        select("activeft_self", _request(), options)
    # direct calls of the building blocks check them against the same declarations
    req = _request()
    with pytest.raises(ValueError, match=f"activeft: {key}: got {options[key]}; expected"):
        activeft_select(req.features.pool, req.features.labeled, 5, req.rng, **options)
