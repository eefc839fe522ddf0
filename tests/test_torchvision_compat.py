"""torchvision imports on CPU-only torch once the package is imported."""

import torch


def test_torchvision_and_timm_import_and_nms_works():
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    import asvp  # noqa: F401  (registers the operators if torchvision's extension fails)

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept = torch.ops.torchvision.nms(boxes, scores, 0.5)
    assert kept.tolist() == [0, 2]
    assert torch.ops.torchvision.nms(boxes[:0], scores[:0], 0.5).numel() == 0
