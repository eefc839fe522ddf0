"""``make bench BENCH_DEVICE=cuda``: fine-tuning images per second, float32 vs mixed precision.

Usage (from the repository root)::

    python -m perf.finetune [--device cuda] [--images 2048] [--augment none|official]
                            [--output PATH]

Times :func:`asvp.training.fine_tune` itself (the loop a cell runs: data loader workers,
channels-last, autocast) on a ResNet-50 (torchvision's architecture, random weights: the
weights do not change the speed) at 224 px, batch 128 as the official ImageNet scripts, over
``--images`` synthetic uint8 images held in memory (so decoding is a cast and a
normalisation, and the figure is the GPU's training throughput). Each precision is timed for
one and for three epochs; images/s = 2 x images / (t3 - t1), so model loading, the first
epoch's cuDNN autotuning and worker start-up cancel out. Writes the section ``finetune`` of
``docs/benchmarks.md``. On a CPU it measures too (use small ``--images`` and
``--image-size``), but the figure of interest is the GPU's.

``--augment official`` trains on the official ImageNet training transform
(:data:`OFFICIAL_AUGMENTATION`: RandomResizedCrop + horizontal flip, each batch's draws from
its own generator), applied where a cell applies it: in the loader workers on CUDA
(:func:`asvp.loading.loader_workers`), so the figure says whether the workers keep up with the
GPU. The images are held at the input size, so a crop is resized up to it as from a larger
ImageNet photo, but no JPEG is decoded.

:func:`large_model_record` (the ``finetune-large`` step of ``make gpu-check``,
:mod:`perf.gpu_check`) fine-tunes a large network the way a grid does, with gradient
checkpointing off and on: DINOv2 ViT-B/14 (:data:`LARGE_MODEL`, random weights saved as
safetensors and loaded through the generic ``timm`` backbone) on synthetic 224 px images,
giving each setting's images/s and peak GPU memory (:class:`asvp.finetune_scale.FineTuneMeter`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asvp.data.transforms import NO_AUGMENTATION, Augmentation

from .document import write_section
from .selection import DEFAULT_OUTPUT, _machine_line, machine_info

if TYPE_CHECKING:
    from asvp.config import FineTuneConfig
    from asvp.data.images import ArrayImageSet
    from asvp.data.transforms import ImageTransform
    from asvp.finetune_scale import FineTuneMeter
    from asvp.models.registry import Backbone

SECTION = "finetune"
BATCH_SIZE = 128
OFFICIAL_AUGMENTATION = Augmentation("random_resized_crop", flip=True)
"""The official ImageNet training augmentation: RandomResizedCrop (scale 0.08-1) + flip."""
AUGMENTATIONS = {"none": NO_AUGMENTATION, "official": OFFICIAL_AUGMENTATION}
LARGE_MODEL = "vit_base_patch14_dinov2"
"""timm's DINOv2 ViT-B/14 (86M parameters): the large network of :func:`large_model_record`."""
LARGE_IMAGES = 1024
LARGE_SIZE = 224


def synthetic_images(images: int, image_size: int, classes: int = 1000) -> ArrayImageSet:
    """``images`` random uint8 RGB images of ``image_size`` px in memory, random labels."""
    from asvp.data.images import ArrayImageSet

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (images, image_size, image_size, 3), dtype=np.uint8)
    return ArrayImageSet(pixels, rng.integers(0, classes, images), classes)


def fine_tune_all(
    backbone: Backbone,
    data: ArrayImageSet,
    config: FineTuneConfig,
    transform: ImageTransform,
    device: str,
    mixed_precision: bool = True,
    meter: FineTuneMeter | None = None,
) -> None:
    """:func:`asvp.training.fine_tune` (``ft``, seed 0) of ``backbone`` on all of ``data``."""
    import torch

    from asvp.config import LinearProbeConfig
    from asvp.training import fine_tune

    fine_tune(
        backbone,
        data,
        np.arange(len(data.labels)),
        "ft",
        config,
        LinearProbeConfig(),
        transform,
        seed=0,
        device=torch.device(device),
        mixed_precision=mixed_precision,
        meter=meter,
    )


def images_per_second(
    device: str,
    mixed_precision: bool,
    images: int,
    image_size: int = 224,
    architecture: str = "resnet50",
    augmentation: Augmentation = NO_AUGMENTATION,
) -> float:
    """Fine-tuning throughput (images/s) of ``architecture`` on ``images`` synthetic images,
    trained through ``augmentation`` (none: the test transform, as before)."""
    import torch
    import torchvision

    from asvp.config import FineTuneConfig
    from asvp.data.transforms import ImageTransform
    from asvp.models.registry import Backbone
    from asvp.models.resnet import RESNET50_INPUT

    data = synthetic_images(images, image_size)

    def timed(epochs: int) -> float:
        network = getattr(torchvision.models, architecture)()
        width = network.fc.in_features
        network.fc = torch.nn.Identity()
        backbone = Backbone(architecture, network, width, "random")
        config = FineTuneConfig(epochs=epochs, batch_size=BATCH_SIZE, milestones=())
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()  # from here on: only what fine_tune does
        transform = ImageTransform(
            dataclasses.replace(RESNET50_INPUT, size=image_size), augmentation
        )
        fine_tune_all(backbone, data, config, transform, device, mixed_precision)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return 2 * images / (timed(3) - timed(1))


def random_timm_checkpoint(model: str, folder: Path) -> dict[str, str]:
    """The ``timm`` backbone's options for timm's ``model`` with random weights
    (``pretrained=False``), saved as safetensors in ``folder``: loaded through them, the network
    comes as a grid loads a real checkpoint (:mod:`asvp.models.timm_backbone`)."""
    import safetensors.torch
    import timm

    path = folder / f"{model}.safetensors"
    safetensors.torch.save_file(timm.create_model(model, pretrained=False).state_dict(), path)
    return {"model": model, "checkpoint": str(path)}


def large_model_record(
    device: str = "cuda",
    model: str = LARGE_MODEL,
    images: int = LARGE_IMAGES,
    image_size: int = LARGE_SIZE,
    batch_size: int = BATCH_SIZE,
) -> dict:
    """Fine-tuning ``model`` (random weights, through the ``timm`` backbone) on ``images``
    synthetic ``image_size`` px images, batch ``batch_size``, mixed precision on CUDA, with
    gradient checkpointing off and on: per setting, images/s from the difference between a
    3-epoch and a 1-epoch fine-tune's training seconds (start-up excluded) and the 3-epoch
    fine-tune's peak GPU memory in GiB (None off CUDA)."""
    import torch

    from asvp.config import FineTuneConfig
    from asvp.data.transforms import ImageTransform
    from asvp.finetune_scale import FineTuneMeter
    from asvp.models.backbones import backbone_input, load_backbone

    data = synthetic_images(images, image_size)
    record: dict = {"model": model, "images": images, "size": image_size, "batch": batch_size}
    with tempfile.TemporaryDirectory(prefix="asvp-large-model-") as folder:
        options = random_timm_checkpoint(model, Path(folder))
        inputs = backbone_input("timm", options).config
        transform = ImageTransform(dataclasses.replace(inputs, size=image_size))
        for name, checkpointing in (("plain", False), ("checkpointing", True)):
            measured = {}
            for epochs in (1, 3):
                config = FineTuneConfig(
                    epochs=epochs,
                    batch_size=batch_size,
                    milestones=(),
                    gradient_checkpointing=checkpointing,
                )
                backbone = load_backbone("timm", **options)
                meter = FineTuneMeter(torch.device(device))
                fine_tune_all(backbone, data, config, transform, device, meter=meter)
                measured[epochs] = meter.stats()
            extra = measured[3].images - measured[1].images
            record[name] = {
                "images_per_second": extra / (measured[3].seconds - measured[1].seconds),
                "peak_gpu_memory_gib": measured[3].peak_gpu_memory_gib,
            }
    return record


def render_section(
    figures: dict[str, float], info: dict[str, str], images: int, size: int, augment: str = "none"
) -> str:
    """The ``finetune`` section of ``docs/benchmarks.md`` from the measured images/s."""
    fp32, mixed = figures["fp32"], figures["mixed"]
    training = (
        "the test transform (no augmentation)"
        if augment == "none"
        else "the official augmentation (RandomResizedCrop + horizontal flip, in the loader "
        "workers on CUDA)"
    )
    return f"""## Fine-tuning throughput

Written by `python -m perf.finetune` on {time.strftime("%Y-%m-%d")}.

**Machine.** {_machine_line(info)}.

`asvp.training.fine_tune` of a ResNet-50 (random weights) at {size} px, batch {BATCH_SIZE},
on {images:,} synthetic images in memory, trained through {training};
images/s from the difference between a 3-epoch and a 1-epoch fine-tune (start-up excluded).
*mixed* is the default on CUDA: autocast (bfloat16 where native, else float16 with loss
scaling), channels-last; *fp32* turns autocast off (channels-last stays).

| precision | images/s |
|---|---|
| fp32 | {fp32:.1f} |
| mixed | {mixed:.1f} |

Mixed precision: {mixed / fp32:.2f}× the float32 throughput.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.finetune", description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default="none")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="'-': print only")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("perf.finetune: no CUDA device here; nothing measured", file=sys.stderr)
        return 2
    figures = {
        name: images_per_second(
            args.device,
            mixed,
            args.images,
            args.image_size,
            augmentation=AUGMENTATIONS[args.augment],
        )
        for name, mixed in (("fp32", False), ("mixed", True))
    }
    info = machine_info(args.device, torch.get_num_threads())
    section = render_section(figures, info, args.images, args.image_size, args.augment)
    print(section)
    if args.output != "-":
        write_section(args.output, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
