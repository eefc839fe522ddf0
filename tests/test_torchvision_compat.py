"""torchvision imports on CPU-only torch once the package is imported; the registries do not
import it (nor timm, nor mlflow) until a dataset or backbone is loaded."""

import subprocess
import sys

import torch

HEAVY = ("torchvision", "timm", "mlflow")


def test_torchvision_and_timm_import_and_nms_works():
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    import asvp  # noqa: F401  (registers the operators if torchvision's extension fails)

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept = torch.ops.torchvision.nms(boxes, scores, 0.5)
    assert kept.tolist() == [0, 2]
    assert torch.ops.torchvision.nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_the_registries_and_option_checks_import_no_heavy_package():
    code = (
        "import sys\n"
        "import asvp.data, asvp.models.backbones, asvp.trigger\n"
        "asvp.data.check_dataset_options('cifar10_lt', {'imbalance_factor': 0.5})\n"
        "asvp.models.backbones.check_backbone_options('clip_vit_b16', {'checkpoint': 'x.pt'})\n"
        "asvp.trigger.check_ped_settings({'nsigma': 0.3})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
