"""Keeping the GPU busy while fine-tuning: batch loading in workers, mixed precision, NHWC.

Fine-tuning reads every labelled image once per epoch, and decoding (JPEG files for ImageNet
and Pets, a resize to 224 px for CIFAR) costs about as much CPU time per image as the GPU
spends on the forward and backward pass. Done synchronously in the training loop, the GPU
waits for the CPU at every step. This module provides the three pieces that remove the wait
and speed up the step itself:

- :class:`ImageBatchLoader`: an epoch's batches decoded ahead of time by
  ``torch.utils.data.DataLoader`` worker processes (:func:`loader_workers` says how many),
  into pinned memory, copied to the device asynchronously. The batch order is drawn in the
  main process from the caller's generator, so the batches are bit-identical whatever the
  number of workers, and identical to decoding them one by one in the training loop.
- :class:`MixedPrecision`: autocast in bfloat16 on GPUs that support it, float16 with loss
  scaling on older ones, plain float32 elsewhere.
- :func:`prepare_model`: the model on its device, channels-last on CUDA.

On CPU nothing changes: no workers, no autocast, the default memory format; results are
bit-identical to the plain float32 loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from asvp.compute import usable_cpus
from asvp.data.base import ImageSet
from asvp.data.transforms import ImageTransform, batch_generator

WORKERS_ENV = "ASVP_DATA_WORKERS"
"""Environment variable that overrides the number of loader worker processes."""

MAX_WORKERS = 8
"""Most worker processes chosen automatically on CUDA (see :func:`loader_workers`)."""

PREFETCH_BATCHES = 4
"""Batches each worker decodes ahead of the training loop."""


def loader_workers(device: torch.device) -> int:
    """The number of worker processes that decode training batches for ``device``.

    ``ASVP_DATA_WORKERS`` (an integer >= 0) overrides the choice. Otherwise:

    - not CUDA: 0, i.e. batches are decoded in the main process. On a CPU the model and the
      decoding compete for the same cores, so workers add process start-up and copies without
      adding throughput (and tests stay fast).
    - CUDA: one worker per usable CPU but one, at least 1 and at most :data:`MAX_WORKERS`.
      The spare CPU runs the training loop, which launches the GPU kernels and pins memory;
      usable CPUs are this process's affinity mask (a SLURM job's allocation, not the whole
      node). Beyond about eight workers decoding outpaces one GPU and only memory grows (each
      worker holds :data:`PREFETCH_BATCHES` batches).
    """
    value = os.environ.get(WORKERS_ENV)
    if value is not None:
        try:
            workers = int(value)
        except ValueError:
            workers = -1
        if workers < 0:
            raise ValueError(
                f"{WORKERS_ENV}={value!r}; expected an integer >= 0 (the number of data loader "
                "worker processes, 0 to decode batches in the main process)"
            )
        return workers
    if device.type != "cuda":
        return 0
    return max(1, min(MAX_WORKERS, usable_cpus() - 1))


class BatchOrder(Sampler[np.ndarray]):
    """Positions ``0..n-1`` in batches, in a new random order from ``generator`` per iteration
    (in order, every row, when ``generator`` is None: evaluation and feature extraction).
    Also the batch order of the proxy and the linear probe (:mod:`asvp.training`).

    Runs in the main process, so the order does not depend on the number of workers. In
    random order a final batch of a single row is dropped unless ``n == 1``: BatchNorm cannot
    normalise one sample in training mode. The order is drawn when the first batch is
    requested, not when the iterator is made: a multi-worker DataLoader makes one and
    discards it when it starts its workers, and that must not cost an epoch's draw.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator | None) -> None:
        super().__init__()
        self._n = n
        self._generator = generator
        self._slices = [
            (start, min(start + batch_size, n))
            for start in range(0, n, batch_size)
            if generator is None or min(batch_size, n - start) > 1 or n == 1
        ]

    def __len__(self) -> int:
        return len(self._slices)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._generator is None:
            order = np.arange(self._n)
        else:
            order = torch.randperm(self._n, generator=self._generator).numpy()
        for start, stop in self._slices:
            yield order[start:stop]


class _NumberedBatches(Sampler[tuple[int, int, np.ndarray]]):
    """A :class:`BatchOrder`'s batches as ``(epoch, batch, positions)``: the epoch (counted
    from 0, when its first batch is requested) and the batch's place in it, from which the
    batch's augmentation generator is derived wherever the batch is decoded."""

    def __init__(self, order: BatchOrder) -> None:
        super().__init__()
        self._order = order
        self._epoch = -1

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        for number, positions in enumerate(self._order):
            if number == 0:
                self._epoch += 1
            yield self._epoch, number, positions


class _Batches(Dataset):
    """Decodes one batch ``(epoch, batch, positions)`` of ``indices``: (images, pool rows as
    int64). With ``augment_seed``, the images go through the training augmentation drawn from
    :func:`~asvp.data.transforms.batch_generator` of (seed, epoch, batch); without, the test
    transform.

    Runs in the worker processes (or the main process without workers); everything it holds
    is sent to them, so it must stay picklable (an :class:`ImageSet` and plain values).
    """

    def __init__(
        self,
        data: ImageSet,
        indices: np.ndarray,
        transform: ImageTransform,
        augment_seed: int | None,
    ) -> None:
        self.data = data
        self.indices = indices
        self.transform = transform
        self.augment_seed = augment_seed

    def __getitem__(self, batch: tuple[int, int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, number, positions = batch
        rows = self.indices[positions]
        generator = (
            None if self.augment_seed is None else batch_generator(self.augment_seed, epoch, number)
        )
        images = self.data.batch(rows, self.transform, generator)
        return images, torch.from_numpy(rows.astype(np.int64, copy=False))


class ImageBatchLoader:
    """An epoch's training batches of ``data[indices]``, decoded ahead by worker processes.

    With ``generator=None`` the batches are ``indices`` in order, every row once (a final
    single row included): the passes that extract features or score the pool.

    Build one per fine-tune and iterate it once per epoch: the workers persist between
    epochs (no start-up cost per epoch) until :meth:`close`, which the ``with`` statement
    calls. Each iteration draws the next epoch's order from ``generator`` (``torch.randperm``
    of the positions in ``indices``, consecutive slices of ``batch_size``, a final batch of a
    single row dropped unless there is only one row) and yields ``(images, rows)``:
    ``images`` is ``data.batch(indices[batch], transform, g)`` on ``device`` (channels-last
    on CUDA), where ``g`` is None (the test transform) without ``augment_seed`` and else the
    batch's own generator of (``augment_seed``, epoch, batch), so the augmentation does not
    depend on the process that decodes it; ``rows`` the batch's pool indices as int64 on
    ``device`` (for looking up labels there).

    The batches are bit-identical for any number of ``workers`` (0: decode in the main
    process): only the decoding runs in workers, the order comes from the main process, and
    batches are delivered in order. On CUDA they pass through pinned memory, so the copies to
    the device are asynchronous and overlap with the previous step's computation. An error
    raised by ``data.batch`` in a worker is re-raised here with the original message.

    Workers are forked processes that receive a copy of ``data``; on platforms that spawn
    them instead, ``data`` is pickled, so an :class:`ImageSet` must hold no unpicklable
    state (thread pools, open files).
    """

    def __init__(
        self,
        data: ImageSet,
        indices: np.ndarray,
        batch_size: int,
        transform: ImageTransform,
        generator: torch.Generator | None,
        device: torch.device,
        workers: int,
        augment_seed: int | None = None,
    ) -> None:
        indices = np.asarray(indices)
        cuda = device.type == "cuda"
        self.device = device
        self._memory_format = torch.channels_last if cuda else torch.preserve_format
        self._loader = DataLoader(
            _Batches(data, indices, transform, augment_seed),
            batch_size=None,  # the sampler yields whole batches
            sampler=_NumberedBatches(BatchOrder(len(indices), batch_size, generator)),
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=workers > 0,
            prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
            # The DataLoader draws its workers' seeds from this generator at every epoch;
            # without one it would draw them from the global RNG and so change every later
            # random draw of the fine-tune (dropout) compared with the synchronous loop.
            generator=torch.Generator(),
        )

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._to_device(iter(self._loader))

    def _to_device(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, rows in batches:
            yield (
                images.to(self.device, non_blocking=True, memory_format=self._memory_format),
                rows.to(self.device, non_blocking=True),
            )

    def close(self) -> None:
        """Stop the worker processes (no-op without workers or when already closed).

        An epoch still being read ends there; iterating again afterwards starts new workers.
        """
        # DataLoader keeps the iterator that owns persistent workers in ``_iterator`` and
        # has no public way to stop them other than dropping every reference to it.
        iterator = self._loader._iterator
        if iterator is not None:
            iterator._shutdown_workers()
            self._loader._iterator = None

    def __enter__(self) -> ImageBatchLoader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class MixedPrecision:
    """Autocast and the optimiser step for one precision: ``bf16``, ``fp16`` or ``fp32``.

    - ``bf16`` (CUDA GPUs with native bfloat16, Ampere and newer): matrix products and
      convolutions run in bfloat16 on tensor cores. bfloat16 has float32's 8-bit exponent,
      hence its range, so gradients neither underflow nor overflow and no loss scaling is
      needed; only precision (8-bit mantissa) is lost, which SGD tolerates.
    - ``fp16`` (older CUDA GPUs, e.g. V100, where bfloat16 is only emulated and slow):
      float16's 5-bit exponent flushes small gradients to zero, so the loss is multiplied by
      a large factor before the backward pass and the gradients divided by it before the
      step (``torch.amp.GradScaler``); a step whose gradients overflowed is skipped and the
      factor lowered.
    - ``fp32``: no autocast, plain ``loss.backward(); optimizer.step()``. Used on CPU, where
      results must stay bit-identical to the float32 loop, and when disabled.

    Use as ``with precision.autocast(): loss = ...`` then ``precision.step(loss, optimizer)``;
    zeroing the gradients stays the caller's.
    """

    def __init__(self, device_type: str, dtype: torch.dtype | None) -> None:
        """Autocast ``dtype`` on ``device_type``; ``None`` is float32 without autocast."""
        self._device_type = device_type
        self._dtype = dtype
        self._scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None

    @classmethod
    def for_device(cls, device: torch.device, enabled: bool = True) -> MixedPrecision:
        """The fastest safe precision on ``device``: bf16 or fp16 on CUDA, else fp32."""
        if not enabled or device.type != "cuda":
            return cls(device.type, None)
        with torch.cuda.device(device):
            # without emulation: a V100 "supports" bfloat16 only by emulating it, slowly
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return cls(device.type, torch.bfloat16 if bf16 else torch.float16)

    @property
    def name(self) -> str:
        """``bf16``, ``fp16`` or ``fp32`` (logged as a run tag)."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self._dtype]

    def autocast(self) -> AbstractContextManager:
        """The context in which to run the forward pass and the loss."""
        if self._dtype is None:
            return nullcontext()
        return torch.autocast(self._device_type, dtype=self._dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass and optimiser step; with loss scaling for fp16."""
        if self._scaler is None:
            loss.backward()
            optimizer.step()
            return
        self._scaler.scale(loss).backward()
        self._scaler.step(optimizer)
        self._scaler.update()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``; channels-last on CUDA, where cuDNN runs convolutions on tensor
    cores in NHWC layout without transposing every activation. Modifies ``model`` in place."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model
