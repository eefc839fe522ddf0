"""Make ``import torchvision`` (and so ``import timm``) work on a CPU-only torch build.

The torchvision 0.28.0 wheel on the package index is a CUDA build. Its compiled extension
``_C.so`` links against ``libc10_cuda``/``libtorch_cuda``, which a CPU torch lacks, so the
extension fails to load; torchvision swallows that error but then registers fake kernels for
``torchvision::nms`` and ``torchvision::qnms`` unconditionally, and the import dies with
``RuntimeError: operator torchvision::nms does not exist``.

:func:`ensure_torchvision_importable` runs before anything imports torchvision (it is the first
thing ``asvp/__init__.py`` does, so it also runs inside submitit/SLURM jobs). It first tries to
load torchvision's own extension; where that works (a CUDA torch on a GPU machine) or
torchvision is absent, it does nothing. Otherwise it defines the two operator schemas and a
pure-PyTorch greedy NMS as the CPU kernel of ``nms``. Everything this project uses from
torchvision (transforms, datasets, model definitions) is pure Python; ``torchvision.ops.nms``
and ``torchvision.io`` stay unavailable on such a machine.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch

_LIBRARY: torch.library.Library | None = None


def _greedy_nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy NMS, by descending score (torchvision semantics)."""
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=dets.device)
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True)
    suppressed = torch.zeros(len(dets), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        width = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        height = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = width * height
        iou = inter / (areas[i] + areas - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=dets.device)


def _extension_loads(package_dir: str) -> bool:
    try:
        torch.ops.load_library(os.path.join(package_dir, "_C.so"))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Register the missing ``torchvision::nms``/``qnms`` operators if torchvision needs them.

    Idempotent; a no-op when torchvision is absent, already imported, or its extension loads.
    """
    global _LIBRARY
    if _LIBRARY is not None or "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    if _extension_loads(next(iter(spec.submodule_search_locations))):
        return
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", _greedy_nms, "CPU")
    _LIBRARY = library
