"""``make bench BENCH_DEVICE=cuda``: fine-tuning images per second, float32 vs mixed precision.

Usage (from the repository root)::

    python -m perf.finetune [--device cuda] [--images 2048] [--output PATH]

Times :func:`asvp.training.fine_tune` itself (the loop a cell runs: data loader workers,
channels-last, autocast) on a ResNet-50 (torchvision's architecture, random weights: the
weights do not change the speed) at 224 px, batch 128 as the official ImageNet scripts, over
``--images`` synthetic uint8 images held in memory (so decoding is a cast and a
normalisation, and the figure is the GPU's training throughput). Each precision is timed for
one and for three epochs; images/s = 2 x images / (t3 - t1), so model loading, the first
epoch's cuDNN autotuning and worker start-up cancel out. Writes the section ``finetune`` of
``docs/benchmarks.md``. On a CPU it measures too (use small ``--images`` and
``--image-size``), but the figure of interest is the GPU's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence

import numpy as np

from .document import write_section
from .selection import DEFAULT_OUTPUT, _machine_line, machine_info

SECTION = "finetune"
BATCH_SIZE = 128


def images_per_second(
    device: str,
    mixed_precision: bool,
    images: int,
    image_size: int = 224,
    architecture: str = "resnet50",
) -> float:
    """Fine-tuning throughput (images/s) of ``architecture`` on ``images`` synthetic images."""
    import torch
    import torchvision

    from asvp.config import FineTuneConfig, LinearProbeConfig
    from asvp.data.images import ArrayImageSet
    from asvp.data.transforms import ImageTransform
    from asvp.models.registry import Backbone
    from asvp.models.resnet import RESNET50_INPUT
    from asvp.training import fine_tune

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (images, image_size, image_size, 3), dtype=np.uint8)
    data = ArrayImageSet(pixels, rng.integers(0, 1000, images), 1000)

    def timed(epochs: int) -> float:
        network = getattr(torchvision.models, architecture)()
        width = network.fc.in_features
        network.fc = torch.nn.Identity()
        backbone = Backbone(architecture, network, width, "random")
        config = FineTuneConfig(epochs=epochs, batch_size=BATCH_SIZE, milestones=())
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()  # from here on: only what fine_tune does
        fine_tune(
            backbone,
            data,
            np.arange(images),
            "ft",
            config,
            LinearProbeConfig(),
            ImageTransform(dataclasses.replace(RESNET50_INPUT, size=image_size)),
            seed=0,
            device=torch.device(device),
            mixed_precision=mixed_precision,
        )
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return 2 * images / (timed(3) - timed(1))


def render_section(figures: dict[str, float], info: dict[str, str], images: int, size: int) -> str:
    fp32, mixed = figures["fp32"], figures["mixed"]
    return f"""## Fine-tuning throughput

Written by `python -m perf.finetune` on {time.strftime("%Y-%m-%d")}.

**Machine.** {_machine_line(info)}.

`asvp.training.fine_tune` of a ResNet-50 (random weights) at {size} px, batch {BATCH_SIZE},
on {images:,} synthetic images in memory; images/s from the difference between a 3-epoch and
a 1-epoch fine-tune (start-up excluded). *mixed* is the default on CUDA: autocast (bfloat16
where native, else float16 with loss scaling), channels-last; *fp32* turns autocast off
(channels-last stays).

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
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="'-': print only")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("perf.finetune: no CUDA device here; nothing measured", file=sys.stderr)
        return 2
    figures = {
        name: images_per_second(args.device, mixed, args.images, args.image_size)
        for name, mixed in (("fp32", False), ("mixed", True))
    }
    info = machine_info(args.device, torch.get_num_threads())
    section = render_section(figures, info, args.images, args.image_size)
    print(section)
    if args.output != "-":
        write_section(args.output, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
