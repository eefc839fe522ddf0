"""Fine-tuning large backbones on one GPU (issue 17): micro-batches, gradient checkpointing,
layer-wise learning-rate decay, and what each fine-tune costs (asvp.finetune_scale)."""

import copy
import dataclasses

import numpy as np
import pytest
import timm
import torch
from torch import nn

from asvp.config import FineTuneConfig, LinearProbeConfig
from asvp.data import load_dataset
from asvp.data.images import ArrayImageSet
from asvp.data.transforms import ImageTransform, InputConfig
from asvp.finetune_scale import (
    AccumulatingPrecision,
    FineTuneMeter,
    FineTuneStats,
    backbone_param_groups,
    check_large_model_options,
    train_step,
)
from asvp.models.heads import Classifier
from asvp.models.registry import Backbone
from asvp.pipelines.models import CellModels
from asvp.pipelines.records import RoundRecord, round_record
from asvp.recipe import resolve_transform
from asvp.timing import PhaseTimer
from asvp.training import fine_tune
from benchmark import metric_names as names
from benchmark.grid.identity import FINETUNE_SET_ONLY, run_key, scientific_config

CPU = torch.device("cpu")
DEPTH = 3
INPUT = InputConfig(28, "bilinear", 1.0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def tiny_vit() -> nn.Module:
    """DINOv2's ViT architecture (LayerNorm, layer scale), three narrow blocks at 28 px."""
    torch.manual_seed(0)
    return timm.create_model(
        "vit_small_patch14_dinov2",
        pretrained=False,
        img_size=28,
        depth=DEPTH,
        embed_dim=48,
        num_heads=2,
        num_classes=0,
    )


def tiny_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def one_step(network: nn.Module, width: int, micro_batch_size: int | None) -> Classifier:
    """A classifier on a copy of ``network`` after one SGD step on a fixed batch of 8."""
    torch.manual_seed(1)
    model = Classifier(copy.deepcopy(network), width, 4).train()
    images = torch.randn(8, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    precision = AccumulatingPrecision.for_device(CPU)
    train_step(model, images, targets, optimizer, precision, micro_batch_size)
    return model


def grads_and_params(model: nn.Module) -> list[torch.Tensor]:
    return [t for p in model.parameters() for t in (p.grad, p.detach())]


def test_micro_batches_give_the_full_batch_step_on_a_layernorm_vit():
    network = tiny_vit()
    full = one_step(network, network.num_features, None)
    for size in (3, 5):  # chunks of 3, 3, 2 and 4, 4
        micro = one_step(network, network.num_features, size)
        for ours, theirs in zip(grads_and_params(micro), grads_and_params(full), strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    # at least the batch: the recipe's step itself, bit for bit
    same = one_step(network, network.num_features, 8)
    assert all(
        torch.equal(a, b)
        for a, b in zip(grads_and_params(same), grads_and_params(full), strict=True)
    )


def test_micro_batches_change_a_batchnorm_networks_step():
    """BatchNorm normalises each micro-batch with its own statistics: another gradient."""
    network = tiny_bn_net()
    full = one_step(network, 8, None)
    micro = one_step(network, 8, 3)
    conv_grad = [p.grad for p in full.backbone.parameters()][0]
    micro_grad = [p.grad for p in micro.backbone.parameters()][0]
    assert not torch.allclose(conv_grad, micro_grad, rtol=1e-3, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients_on_a_vit():
    images = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    grads = []
    for enabled in (False, True):
        network = tiny_vit().train()
        network.set_grad_checkpointing(enabled)
        network(images).square().mean().backward()
        grads.append([p.grad for p in network.parameters()])
    assert network.grad_checkpointing  # the second pass did checkpoint
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-7)


def test_layer_decay_gives_each_block_its_learning_rate():
    network = tiny_vit()
    lr, decay = 0.01, 0.5
    groups = backbone_param_groups(network, lr, decay)
    learning_rate = {id(p): group["lr"] for group in groups for p in group["params"]}
    named = dict(network.named_parameters())
    assert set(learning_rate) == {id(p) for p in named.values()}  # every parameter, once
    for name, parameter in named.items():
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            expected = lr * decay**DEPTH  # the embeddings: the smallest
        elif name.startswith("blocks."):
            expected = lr * decay ** (DEPTH - 1 - int(name.split(".")[1]))
        else:
            assert name.startswith("norm."), name  # the final norm, with the last block
            expected = lr
        assert learning_rate[id(parameter)] == pytest.approx(expected), name
    # no decay: the paper's recipe, one group at lr_backbone
    (plain,) = backbone_param_groups(network, lr, None)
    assert plain["lr"] == lr and len(list(plain["params"])) == len(named)


def vit_backbone() -> Backbone:
    network = tiny_vit()
    return Backbone("tiny_vit", network, network.num_features, "random")


def images(count: int = 12) -> ArrayImageSet:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count, 28, 28, 3), dtype=np.uint8)
    return ArrayImageSet(pixels, rng.integers(0, 4, count), 4)


def tune(backbone: Backbone, **settings) -> tuple[Classifier, FineTuneStats]:
    config = FineTuneConfig(epochs=2, batch_size=6, milestones=(), **settings)
    data, meter = images(), FineTuneMeter(CPU)
    model = fine_tune(
        backbone,
        data,
        np.arange(len(data)),
        "ft",
        config,
        LinearProbeConfig(),
        ImageTransform(INPUT),
        seed=0,
        device=CPU,
        meter=meter,
    )
    return model, meter.stats()


def test_fine_tune_with_every_setting_keeps_the_recipe_on_a_vit(monkeypatch):
    optimizers = []

    class RecordedSGD(torch.optim.SGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)

    monkeypatch.setattr(torch.optim, "SGD", RecordedSGD)
    plain, _ = tune(vit_backbone())
    backbone = vit_backbone()
    tuned, stats = tune(backbone, micro_batch_size=4, gradient_checkpointing=True)
    for ours, theirs in zip(tuned.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert not backbone.network.grad_checkpointing  # off again for evaluation and extraction
    assert stats.images == 2 * 12
    tune(vit_backbone(), layer_decay=0.5)
    rates = [group["lr"] for group in optimizers[-1].param_groups]
    config = FineTuneConfig()
    assert rates[-1] == config.lr_head  # the head keeps its own
    assert rates[:-1] == pytest.approx([config.lr_backbone * 0.5**k for k in range(DEPTH, -1, -1)])


def test_a_backbone_without_the_timm_methods_is_refused_by_name():
    backbone = Backbone("resnet_like", tiny_bn_net(), 8, "random")
    for setting, value, method in (
        ("gradient_checkpointing", True, "set_grad_checkpointing"),
        ("layer_decay", 0.7, "group_matcher"),
    ):
        config = FineTuneConfig(**{setting: value})
        with pytest.raises(ValueError, match=rf"finetune\.{setting}.*'resnet_like'.*{method}"):
            check_large_model_options(backbone, config)
        with pytest.raises(ValueError, match="resnet_like"):
            tune(backbone, **{setting: value})
    check_large_model_options(backbone, FineTuneConfig())  # the recipe needs nothing


def test_fine_tune_measures_images_per_second_and_no_memory_on_cpu():
    model, stats = tune(vit_backbone())
    assert stats.images == 2 * 12  # two epochs of two batches of six
    assert stats.seconds > 0 and stats.images_per_second == stats.images / stats.seconds
    assert stats.peak_gpu_memory_gib is None
    metrics = names.finetune_metrics(stats)
    assert metrics == {names.FINETUNE_IMAGES_PER_SECOND: stats.images_per_second}
    assert names.finetune_metrics(FineTuneStats(0, 0.0)) == {}  # nothing trained: nothing
    assert names.finetune_metrics(None) == {}
    assert not model.training


def test_a_meter_does_not_change_the_fine_tune():
    data, config = images(), FineTuneConfig(epochs=1, batch_size=6, milestones=())
    arguments = (np.arange(len(data)), "ft", config, LinearProbeConfig(), ImageTransform(INPUT))
    plain = fine_tune(vit_backbone(), data, *arguments, seed=0, device=CPU)
    measured = fine_tune(
        vit_backbone(), data, *arguments, seed=0, device=CPU, meter=FineTuneMeter(CPU)
    )
    assert all(
        torch.equal(a, b) for a, b in zip(plain.parameters(), measured.parameters(), strict=True)
    )


def test_gpu_memory_is_logged_when_measured():
    stats = FineTuneStats(images=256, seconds=2.0, peak_gpu_memory_gib=11.5)
    assert names.finetune_metrics(stats) == {
        "compute/finetune_images_per_second": 128.0,
        "compute/finetune_peak_gpu_memory_gib": 11.5,
    }


def test_every_round_fine_tune_of_a_cell_carries_its_costs(tiny_cell):
    config = tiny_cell("standard")
    split = load_dataset(config.dataset, root=config.data_root, **config.dataset_options)
    models = CellModels(config, split, CPU, PhaseTimer(CPU))
    assert resolve_transform(config) == models.transform
    for round_index, labels in enumerate((10, 20)):
        tuned = models.fine_tune(round_index, np.arange(labels), "ft")
        assert tuned.stats.images == labels  # one epoch over the labelled rows
        assert tuned.stats.images_per_second > 0 and tuned.stats.peak_gpu_memory_gib is None
        record = round_record(
            round_index=round_index,
            labels_used=labels,
            test_acc=0.5,
            method="ft",
            seconds={"finetune": tuned.stats.seconds},
            finetune_is_sampling=True,
            selected=np.arange(3),
            feature_version=0,
            decision=None,
            finetune=tuned.stats,
        )
        assert RoundRecord.from_dict(dataclasses.asdict(record)) == record  # checkpoints
        assert set(names.finetune_metrics(record.finetune)) == {names.FINETUNE_IMAGES_PER_SECOND}


def test_a_cell_refuses_checkpointing_its_backbone_cannot_do_when_it_loads_it(
    tiny_cell, monkeypatch
):
    config = dataclasses.replace(
        tiny_cell("standard"), finetune=FineTuneConfig(gradient_checkpointing=True)
    )
    split = load_dataset(config.dataset, root=config.data_root, **config.dataset_options)
    models = CellModels(config, split, CPU, PhaseTimer(CPU))
    assert models.fresh_backbone().name == "efficientnet_lite0"  # timm's: it has the method
    without = Backbone("resnet_like", tiny_bn_net(), 8, "random")
    monkeypatch.setattr("asvp.pipelines.models.load_backbone", lambda name, **options: without)
    with pytest.raises(ValueError, match="gradient_checkpointing.*'resnet_like'"):
        models.fresh_backbone()


def test_new_settings_enter_the_run_key_only_when_set(tiny_cell):
    config = tiny_cell("standard")
    section = scientific_config(config)["finetune"]
    assert not set(FINETUNE_SET_ONLY) & set(section)  # defaults: the keys made before them
    assert section == {
        k: v for k, v in dataclasses.asdict(config.finetune).items() if k not in FINETUNE_SET_ONLY
    } | {"milestones": []}
    keys = {run_key(config)}
    for setting, value in (
        ("micro_batch_size", 4),
        ("gradient_checkpointing", True),
        ("layer_decay", 0.65),
    ):
        changed = dataclasses.replace(
            config, finetune=dataclasses.replace(config.finetune, **{setting: value})
        )
        assert scientific_config(changed)["finetune"][setting] == value
        keys.add(run_key(changed))
    assert len(keys) == 4
