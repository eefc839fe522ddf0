"""Image passes through a backbone: pooled pool features, and the embeddings a head reads.

Extraction (:func:`extract_features`) fills the feature store (:mod:`asvp.features.store`) and
the linear probe of LP-FT; :func:`embedding_batches` is also the pass of a fine-tuned classifier
(:func:`asvp.training.classifier_outputs`) and :func:`image_batches` that of BatchNorm
recalibration. Every pass goes through the loader (:mod:`asvp.loading`): workers, channels-last
and autocast on CUDA, float32 on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from asvp.loading import ImageBatchLoader, MixedPrecision, loader_workers, prepare_model
from asvp.progress import Progress

if TYPE_CHECKING:
    from asvp.data import ImageSet
    from asvp.data.transforms import ImageTransform
    from asvp.models.backbones import Backbone


def image_batches(
    data: ImageSet,
    indices: np.ndarray,
    transform: ImageTransform,
    batch_size: int,
    device: torch.device,
) -> Iterator[torch.Tensor]:
    """``data[indices]`` in order through the test transform of ``transform``, in batches on
    ``device``, decoded ahead by loader workers on CUDA (channels-last there); the workers stop
    when the pass ends."""
    with ImageBatchLoader(
        data, indices, batch_size, transform, None, device, loader_workers(device)
    ) as loader:
        for images, _ in loader:
            yield images


def embedding_batches(
    network: nn.Module,
    data: ImageSet,
    indices: np.ndarray,
    transform: ImageTransform,
    batch_size: int,
    device: torch.device,
) -> Iterator[torch.Tensor]:
    """The backbone's embeddings of ``data[indices]``, eval mode, in float32. On CUDA the
    backbone runs channels-last under autocast, as in fine-tuning; its outputs are widened
    to float32 before the head, so the softmax outputs that rank the pool keep float32's
    resolution."""
    prepare_model(network, device).eval()
    precision = MixedPrecision.for_device(device)
    for batch in image_batches(data, indices, transform, batch_size, device):
        with precision.autocast():
            embeddings = network(batch)
        yield embeddings.float()


@torch.no_grad()
def extract_features(
    backbone: Backbone,
    data: ImageSet,
    indices: np.ndarray,
    transform: ImageTransform,
    batch_size: int,
    device: torch.device,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Pooled backbone features (float32, on ``device``) of ``data[indices]``, eval mode.

    On CUDA the images are decoded ahead by loader workers and the forward pass runs under
    autocast (bfloat16 where the GPU supports it, else float16) on channels-last inputs: the
    features are stored as float16 anyway, and both speed up convolutions on tensor cores.
    On CPU it is plain float32. ``progress`` is told how many images each batch held.
    """
    parts = []
    for batch in embedding_batches(backbone.network, data, indices, transform, batch_size, device):
        parts.append(batch)
        if progress is not None:
            progress.advance(len(batch))
    if device.type == "cuda":  # give the network back in its own layout
        backbone.network.to(memory_format=torch.contiguous_format)
    return torch.cat(parts)
