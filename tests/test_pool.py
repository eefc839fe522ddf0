"""PoolFeatures: the proxy's gathers and streams over a memory-mapped or device-resident pool,
and the proxy's batched scoring over it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asvp.config import ProxyConfig
from asvp.pool import PoolFeatures
from asvp.training import proxy_outputs, train_proxy

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def memmap_pool(tmp_path) -> np.memmap:
    """A float16 pool written and re-opened read-only, as the feature store serves it."""
    rng = np.random.default_rng(0)
    path = tmp_path / "features.npy"
    np.save(path, rng.standard_normal((1000, 24)).astype(np.float16))
    return np.load(path, mmap_mode="r")


def test_rows_gathers_float32_in_the_order_asked(memmap_pool):
    pool = PoolFeatures(memmap_pool, "cpu")
    ids = np.array([907, 3, 3, 512, 0])
    rows = pool.rows(ids)
    assert rows.dtype == torch.float32 and rows.shape == (5, 24)
    assert torch.equal(rows, torch.from_numpy(memmap_pool[ids].astype(np.float32)))


def test_consecutive_rows_read_as_a_slice_equal_gathered_rows(memmap_pool):
    pool = PoolFeatures(memmap_pool, "cpu")
    consecutive = np.arange(100, 300)
    expected = torch.from_numpy(memmap_pool[100:300].astype(np.float32))
    assert torch.equal(pool.rows(consecutive), expected)


def test_cpu_pool_stays_memory_mapped_and_is_not_written(memmap_pool):
    before = np.array(memmap_pool)
    pool = PoolFeatures(memmap_pool, "cpu")
    assert not pool.resident and len(pool) == 1000
    pool.rows(np.arange(10)).mul_(0)  # a caller modifying its rows must not reach the file
    pool.rows(np.array([5, 1])).mul_(0)
    assert np.array_equal(np.asarray(memmap_pool), before)


@pytest.mark.parametrize("batch_rows", [1, 7, 256, 5000])
def test_batches_stream_the_same_rows_as_one_gather(memmap_pool, batch_rows):
    pool = PoolFeatures(memmap_pool, "cpu")
    ids = np.random.default_rng(1).permutation(1000)[:613]
    parts = list(pool.batches(ids, batch_rows))
    assert all(len(part) <= batch_rows for part in parts)
    assert len(parts) == -(-613 // batch_rows)
    assert torch.equal(torch.cat(parts), pool.rows(ids))


def test_resident_and_mapped_pools_give_equal_rows(memmap_pool):
    ids = np.random.default_rng(2).permutation(1000)[:50]
    mapped = PoolFeatures(memmap_pool, "cpu", resident=False)
    resident = PoolFeatures(torch.from_numpy(np.array(memmap_pool)), "cpu", resident=True)
    assert resident.resident
    assert torch.equal(resident.rows(ids), mapped.rows(ids))


def test_a_pool_that_is_not_a_matrix_is_refused():
    with pytest.raises(ValueError, match=r"2-D \(N x D\).*\(10,\)"):
        PoolFeatures(np.zeros(10, dtype=np.float16), "cpu")


def test_proxy_outputs_stream_equal_one_forward_pass(memmap_pool):
    labels = torch.from_numpy(np.random.default_rng(3).integers(0, 4, 1000))
    pool = PoolFeatures(memmap_pool, "cpu")
    labeled = np.arange(0, 1000, 5)
    proxy = train_proxy(pool.rows(labeled), labels[labeled], 4, ProxyConfig(epochs=2), seed=0)
    unlabeled = np.setdiff1d(np.arange(1000), labeled)
    streamed = proxy_outputs(proxy, pool, unlabeled, batch_size=97, keep_embeddings=True)
    with torch.no_grad():
        hidden = proxy.embed(pool.rows(unlabeled))
        probs = proxy.out(hidden).softmax(dim=1)
    assert streamed.probs.shape == (800, 4) and streamed.embeddings.shape == (800, 24)
    torch.testing.assert_close(streamed.probs, probs)
    torch.testing.assert_close(streamed.embeddings, hidden)


def test_proxy_outputs_of_no_rows_have_the_head_shape(memmap_pool):
    proxy = train_proxy(
        PoolFeatures(memmap_pool, "cpu").rows(np.arange(20)),
        torch.arange(20) % 3,
        3,
        ProxyConfig(epochs=1),
        seed=0,
    )
    outputs = proxy_outputs(proxy, PoolFeatures(memmap_pool, "cpu"), np.arange(0), 64)
    assert outputs.probs.shape == (0, 3) and outputs.embeddings is None


@needs_cuda
def test_cuda_pool_is_resident_in_float16_and_matches_the_host(memmap_pool):
    ids = np.random.default_rng(4).permutation(1000)[:300]
    on_gpu = PoolFeatures(memmap_pool, "cuda")
    streamed = PoolFeatures(memmap_pool, "cuda", resident=False)
    assert on_gpu.resident and not streamed.resident
    expected = PoolFeatures(memmap_pool, "cpu").rows(ids)
    assert torch.equal(on_gpu.rows(ids).cpu(), expected)
    assert torch.equal(torch.cat(list(streamed.batches(ids, 64))).cpu(), expected)


def test_rows_of_an_in_memory_float32_pool_are_copies():
    array = np.ones((8, 3), dtype=np.float32)
    PoolFeatures(array, "cpu").rows(np.arange(8)).mul_(0)
    assert (array == 1).all()
