"""Shared fixtures: a tiny but real cell (MNIST-5k pixels, EfficientNet-Lite0 weights)."""

import pytest

from asvp.config import (
    CellConfig,
    FineTuneConfig,
    LinearProbeConfig,
    ProxyConfig,
    TransformConfig,
    TriggerConfig,
)


@pytest.fixture
def tiny_cell():
    """A factory of small cell configs that run in seconds on one CPU core."""

    def make(pipeline: str, strategy: str = "margin", train_method: str = "ft", **trigger):
        return CellConfig(
            dataset="mnist5k",
            backbone="efficientnet_lite0",
            pipeline=pipeline,
            strategy=strategy,
            train_method=train_method,
            seed=3,
            budgets=(10, 20, 30),
            transform=TransformConfig(size=32),
            dataset_options={"test_size": 100, "pool_size": 200},
            finetune=FineTuneConfig(
                epochs=1,
                batch_size=8,
                lr_backbone=0.003,
                lr_head=0.03,
                milestones=(),
                eval_batch_size=128,
            ),
            linear_probe=LinearProbeConfig(epochs=5),
            proxy=ProxyConfig(epochs=5, batch_size=64),
            trigger=TriggerConfig(**trigger) if trigger else TriggerConfig(),
        )

    return make


@pytest.fixture(scope="module")
def curves():
    """A synthetic grid's finished cells (tests/report_data.py) in which badge never reaches
    the random baseline's accuracy."""
    from report_data import synthetic_curves

    return synthetic_curves(never_reaching="badge")


@pytest.fixture(scope="module")
def summaries(curves):
    """Per-seed summaries of :func:`curves` at the test prices."""
    from report_data import COSTS

    from benchmark.report import seed_summaries

    return seed_summaries(curves, COSTS)
