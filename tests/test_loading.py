"""Batch loading in workers, mixed precision and channels-last (:mod:`asvp.loading`)."""

import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import write_image_folder
from torch import nn
from transform_data import transform_of

from asvp.data.images import ArrayImageSet, FileImageSet
from asvp.data.transforms import NO_AUGMENTATION, Augmentation
from asvp.loading import (
    WORKERS_ENV,
    ImageBatchLoader,
    MixedPrecision,
    loader_workers,
    prepare_model,
)

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)
SIZE = 16

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_images(count: int = 30, seed: int = 0) -> ArrayImageSet:
    """RGB images of 12 x 10 pixels, so that every batch is resized to SIZE."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, 12, 10, 3), dtype=np.uint8)
    return ArrayImageSet(pixels, rng.integers(0, 3, count), 3)


def image_files(tmp_path: Path) -> FileImageSet:
    """Nine real files, PNG and JPEG, of two sizes."""
    png = write_image_folder(tmp_path / "png", ["a", "b"], 2, size=(20, 24), ext="PNG")
    jpeg = write_image_folder(tmp_path / "jpeg", ["a", "b", "c"], [2, 2, 1], size=(30, 18))
    paths = sorted(str(p) for p in png.rglob("*.PNG")) + sorted(
        str(p) for p in jpeg.rglob("*.JPEG")
    )
    return FileImageSet(paths, np.arange(len(paths), dtype=np.int64) % 3, 3)


def reference_batches(data, indices, batch_size, seed, epochs, generator=None):
    """The synchronous loop the loader replaces: (images, rows) of every batch, epoch by epoch."""
    generator = generator or torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(epochs):
        order = torch.randperm(len(indices), generator=generator).numpy()
        for start in range(0, len(indices), batch_size):
            positions = order[start : start + batch_size]
            if len(positions) > 1 or len(indices) == 1:
                rows = indices[positions]
                batches.append((data.batch(rows, transform_of(SIZE, MEAN, STD)), rows))
    return batches


def loaded_batches(data, indices, batch_size, seed, epochs, workers, device="cpu", generator=None):
    """The same batches through one ImageBatchLoader iterated ``epochs`` times."""
    generator = generator or torch.Generator().manual_seed(seed)
    batches = []
    with ImageBatchLoader(
        data,
        indices,
        batch_size,
        transform_of(SIZE, MEAN, STD),
        generator,
        torch.device(device),
        workers,
    ) as loader:
        for _ in range(epochs):
            epoch = list(loader)
            assert len(epoch) == len(loader)
            batches.extend(epoch)
    return batches


def assert_same_batches(loaded, reference):
    assert len(loaded) == len(reference)
    for (images, rows), (expected_images, expected_rows) in zip(loaded, reference, strict=True):
        assert rows.dtype == torch.int64
        assert torch.equal(rows.cpu(), torch.as_tensor(expected_rows).long())
        assert torch.equal(images.cpu(), expected_images)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_batches_equal_the_synchronous_loop_for_any_number_of_workers(workers):
    data = random_images()
    indices = np.random.default_rng(1).permutation(30)[:19]  # 6 + 6 + 6 + (1 dropped)
    rng_state = torch.get_rng_state()
    generator, reference_generator = torch.Generator(), torch.Generator()
    generator.manual_seed(5), reference_generator.manual_seed(5)
    loaded = loaded_batches(data, indices, 6, 5, epochs=2, workers=workers, generator=generator)
    reference = reference_batches(data, indices, 6, 5, epochs=2, generator=reference_generator)
    assert_same_batches(loaded, reference)
    # one draw per epoch, as in the synchronous loop: later epochs or uses of it stay the same
    assert torch.equal(generator.get_state(), reference_generator.get_state())
    assert len(loaded) == 2 * 3
    # the second epoch has a new order (drawn from the same generator, not redrawn from scratch)
    assert not np.array_equal(loaded[0][1].numpy(), loaded[3][1].numpy())
    # loading draws nothing from the global RNG (dropout etc. stay as in the synchronous loop)
    assert torch.equal(torch.get_rng_state(), rng_state)


@pytest.mark.parametrize(
    ("count", "batch_size", "sizes"),
    [(7, 3, [3, 3]), (4, 3, [3]), (8, 3, [3, 3, 2]), (1, 4, [1]), (1, 1, [1]), (0, 4, [])],
)
def test_a_final_single_row_batch_is_dropped_unless_it_is_the_only_row(count, batch_size, sizes):
    data = random_images()
    indices = np.arange(3, 3 + count)
    generator = torch.Generator().manual_seed(0)
    loader = ImageBatchLoader(
        data, indices, batch_size, transform_of(SIZE, MEAN, STD), generator, torch.device("cpu"), 0
    )
    batches = list(loader)
    assert len(loader) == len(sizes)
    assert [len(rows) for _, rows in batches] == sizes
    assert [images.shape[0] for images, _ in batches] == sizes
    assert_same_batches(batches, reference_batches(data, indices, batch_size, seed=0, epochs=1))


def test_files_decode_the_same_in_worker_processes(tmp_path):
    files = image_files(tmp_path)
    indices = np.array([8, 0, 3, 5, 1, 7, 2])
    through_workers = loaded_batches(files, indices, 3, seed=2, epochs=2, workers=2)
    assert_same_batches(
        through_workers, loaded_batches(files, indices, 3, seed=2, epochs=2, workers=0)
    )
    assert_same_batches(through_workers, reference_batches(files, indices, 3, seed=2, epochs=2))
    # spawned (not forked) workers receive the set pickled
    copy = pickle.loads(pickle.dumps(files))
    assert torch.equal(
        copy.batch(indices, transform_of(SIZE, MEAN, STD)),
        files.batch(indices, transform_of(SIZE, MEAN, STD)),
    )


class BrokenImages(ArrayImageSet):
    def batch(self, indices, transform, generator=None):
        raise ValueError(f"cannot decode image {indices[0]}: truncated file")


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_in_a_worker_surfaces_with_its_message(workers):
    base = random_images(4)
    broken = BrokenImages(base.images, base.labels, base.num_classes)
    generator = torch.Generator().manual_seed(0)
    with (
        ImageBatchLoader(
            broken,
            np.arange(4),
            2,
            transform_of(SIZE, MEAN, STD),
            generator,
            torch.device("cpu"),
            workers,
        ) as loader,
        pytest.raises(ValueError, match=r"cannot decode image \d: truncated file"),
    ):
        next(iter(loader))


def test_close_stops_the_worker_processes():
    before = {child.pid for child in multiprocessing.active_children()}
    generator = torch.Generator().manual_seed(0)
    loader = ImageBatchLoader(
        random_images(),
        np.arange(12),
        4,
        transform_of(SIZE, MEAN, STD),
        generator,
        torch.device("cpu"),
        2,
    )
    with loader:
        list(loader)
        # persistent: the same two workers serve the next epoch; keep it half-read and
        # referenced (as a traceback does when a step fails), so that closing must stop them
        epoch = iter(loader)
        next(epoch)
        workers = {child.pid for child in multiprocessing.active_children()} - before
        assert len(workers) == 2
    assert workers.isdisjoint(child.pid for child in multiprocessing.active_children())
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    loader.close()  # closing twice is harmless


def test_worker_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert loader_workers(torch.device("cpu")) == 3
    monkeypatch.setenv(WORKERS_ENV, "0")
    assert loader_workers(torch.device("cuda")) == 0
    for bad in ("-1", "two", "", "1.5"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=rf"ASVP_DATA_WORKERS='{bad}'.*integer >= 0"):
            loader_workers(torch.device("cpu"))


def test_default_worker_count(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert loader_workers(torch.device("cpu")) == 0
    for cpus, expected in ((1, 1), (2, 1), (5, 4), (9, 8), (64, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cpus=cpus: set(range(cpus)))
        assert loader_workers(torch.device("cuda")) == expected


def train_linear(step, autocast=None, steps=5):
    """A tiny linear model trained with ``step(loss, optimizer)``; returns its parameters."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    inputs, targets = torch.randn(8, 4), torch.randint(0, 3, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with autocast() if autocast else torch.enable_grad():
            loss = nn.functional.cross_entropy(model(inputs), targets)
        step(loss, optimizer)
    return list(model.parameters())


def plain_step(loss, optimizer):
    loss.backward()
    optimizer.step()


def test_mixed_precision_is_plain_float32_on_cpu():
    precision = MixedPrecision.for_device(torch.device("cpu"))
    assert precision.name == "fp32"
    assert MixedPrecision.for_device(torch.device("cuda"), enabled=False).name == "fp32"
    with precision.autocast():
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.float32
    trained = train_linear(precision.step, precision.autocast)
    reference = train_linear(plain_step)
    assert all(torch.equal(p, q) for p, q in zip(trained, reference, strict=True))
    assert not torch.equal(reference[0], train_linear(plain_step, steps=0)[0])


def test_prepare_model_keeps_the_cpu_layout():
    model = prepare_model(nn.Conv2d(3, 4, 3), torch.device("cpu"))
    assert model.weight.is_contiguous()


@cuda
def test_bf16_autocast_on_cuda():
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("no native bfloat16 on this GPU")
    precision = MixedPrecision.for_device(torch.device("cuda"))
    assert precision.name == "bf16"
    a, b = torch.randn(4, 8, device="cuda"), torch.randn(8, 2, device="cuda")
    with precision.autocast():
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32


@cuda
def test_fp16_steps_through_the_grad_scaler_on_cuda():
    precision = MixedPrecision("cuda", torch.float16)
    assert precision.name == "fp16"
    torch.manual_seed(0)
    model = nn.Linear(4, 3).cuda()
    start = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            output = model(torch.randn(8, 4, device="cuda"))
            assert output.dtype == torch.float16
            loss = nn.functional.cross_entropy(output, torch.randint(0, 3, (8,), device="cuda"))
        precision.step(loss, optimizer)
    assert torch.isfinite(model.weight).all()
    assert not torch.equal(model.weight, start)


@cuda
def test_prepare_model_makes_convolutions_channels_last_on_cuda():
    model = prepare_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), torch.device("cuda"))
    assert model[0].weight.is_cuda
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


@cuda
def test_workers_deliver_channels_last_batches_to_cuda(tmp_path):
    files = image_files(tmp_path)
    indices = np.arange(len(files.labels))
    loaded = loaded_batches(files, indices, 4, seed=3, epochs=2, workers=2, device="cuda")
    for images, rows in loaded:
        assert images.is_cuda and rows.is_cuda
        assert images.is_contiguous(memory_format=torch.channels_last)
    assert_same_batches(loaded, reference_batches(files, indices, 4, seed=3, epochs=2))


@pytest.mark.parametrize(
    "augmentation",
    [NO_AUGMENTATION, Augmentation("random_resized_crop", flip=True)],
    ids=["plain", "augmented"],
)
def test_fine_tune_with_loader_workers_equals_fine_tune_in_the_main_process(
    monkeypatch, augmentation
):
    """The whole fine-tune (asvp.training.fine_tune) gives bit-identical weights whether its
    batches are decoded by worker processes or in the training loop, augmented or not (each
    batch's crops and flips come from its own generator, wherever it is decoded)."""
    from asvp.config import FineTuneConfig, LinearProbeConfig
    from asvp.models.backbones import load_backbone
    from asvp.training import fine_tune

    rng = np.random.default_rng(7)
    data = ArrayImageSet(
        rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8), rng.integers(0, 3, 30), 3
    )
    config = FineTuneConfig(epochs=2, batch_size=8, milestones=(1,))
    weights = []
    for workers in ("0", "2"):
        monkeypatch.setenv(WORKERS_ENV, workers)
        model = fine_tune(
            load_backbone("efficientnet_lite0"),
            data,
            np.arange(3, 28),
            "lpft",
            config,
            LinearProbeConfig(epochs=1),
            transform=transform_of(32, (0.5,) * 3, (0.5,) * 3, augmentation),
            seed=5,
            device=torch.device("cpu"),
        )
        weights.append(model.state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not multiprocessing.active_children()


def test_ordered_loader_gives_every_row_in_order_with_any_workers():
    """generator=None: the passes that extract features or score the pool see every row once,
    in order, a final single row included."""
    data = random_images(count=21)
    indices = np.arange(20, -1, -1)
    expected = data.batch(indices, transform_of(8, MEAN, STD))
    for workers in (0, 2):
        with ImageBatchLoader(
            data, indices, 5, transform_of(8, MEAN, STD), None, torch.device("cpu"), workers
        ) as loader:
            batches = list(loader)
        assert [len(rows) for _, rows in batches] == [5, 5, 5, 5, 1]
        assert torch.equal(torch.cat([rows for _, rows in batches]), torch.from_numpy(indices))
        assert torch.equal(torch.cat([images for images, _ in batches]), expected)


def test_augmented_batches_are_the_same_in_workers_and_change_every_epoch():
    """The training crops and flips of a batch depend on (seed, epoch, batch) alone: the same
    with 0 or 2 workers and on a second run; another epoch or seed crops differently."""
    data = random_images(count=12)
    transform = transform_of(SIZE, MEAN, STD, Augmentation("random_crop", flip=True, padding=4))

    def epochs(workers, seed=3):
        with ImageBatchLoader(
            data,
            np.arange(12),
            4,
            transform,
            torch.Generator().manual_seed(seed),
            torch.device("cpu"),
            workers,
            augment_seed=seed,
        ) as loader:
            return [list(loader) for _ in range(2)]

    def by_row(epoch):
        pairs = (zip(images, rows, strict=True) for images, rows in epoch)
        return {int(r): image for batch in pairs for image, r in batch}

    first, second = epochs(0)
    assert_same_batches(first + second, [b for e in epochs(2) for b in e])
    assert_same_batches(first + second, [b for e in epochs(0) for b in e])
    one, two = by_row(first), by_row(second)
    assert sum(not torch.equal(one[r], two[r]) for r in one) >= 10  # new crops each epoch
    other = by_row(epochs(0, seed=4)[0])
    assert sum(not torch.equal(one[r], other[r]) for r in one) >= 10
    plain = data.batch(np.arange(12), transform_of(SIZE, MEAN, STD))
    assert not any(torch.equal(one[r], plain[r]) for r in range(12))
