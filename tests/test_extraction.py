"""Feature extraction: progress reporting, and the CUDA path (autocast, channels-last)."""

import io

import numpy as np
import pytest
import torch
from transform_data import transform_of

from asvp.data import load_dataset
from asvp.features import extract_features
from asvp.models.backbones import load_backbone
from asvp.progress import Progress

HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # EfficientNet-Lite0's normalisation


@pytest.fixture(scope="module")
def pool():
    return load_dataset("mnist5k", test_size=100, pool_size=40).pool


def test_extraction_reports_progress_to_the_end(pool):
    stream = io.StringIO()
    progress = Progress("pool features", len(pool), interval=0.0, stream=stream)
    features = extract_features(
        load_backbone("efficientnet_lite0"),
        pool,
        np.arange(40),
        transform_of(32, *HALF),
        16,
        torch.device("cpu"),
        progress,
    )
    assert features.shape == (40, 1280)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # batches of 16, 16 and 8
    assert lines[-1].startswith("pool features: 40/40 (100%),")
    assert "s left" in lines[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_extraction_with_autocast_and_channels_last_matches_float32(pool):
    backbone = load_backbone("efficientnet_lite0")
    rows = np.arange(40)
    on_cpu = extract_features(
        backbone, pool, rows, transform_of(64, *HALF), 16, torch.device("cpu")
    )
    on_gpu = extract_features(
        backbone, pool, rows, transform_of(64, *HALF), 16, torch.device("cuda")
    )
    assert on_gpu.dtype == torch.float32 and on_gpu.device.type == "cuda"
    relative = (on_gpu.cpu() - on_cpu).norm() / on_cpu.norm()
    assert relative < 0.02  # bfloat16 / float16 autocast, not a different network
    conv = next(m for m in backbone.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # the network is given back in its own layout


def test_extraction_keeps_its_old_import_path():
    import asvp.training

    assert asvp.training.extract_features is extract_features
