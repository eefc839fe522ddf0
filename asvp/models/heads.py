"""Heads trained on top of features: the proxy MLP and the classifier used in fine-tuning."""

from __future__ import annotations

import torch
from torch import nn


class ProxyMLP(nn.Module):
    """The proxy of SVPp/ASVP: Linear -> BatchNorm1d -> ReLU -> Linear on frozen features.

    Same shape as the official code's one-hidden-layer proxy (ImageNet: 2048 -> 2048 -> 1000).
    ``embed`` returns the hidden activation explicitly (the official code stores it as a side
    attribute on every forward, which breaks under DataParallel).
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)
        )
        self.out = nn.Linear(hidden, num_classes)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.hidden(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(features))


class Classifier(nn.Module):
    """A backbone with a linear head: the model fine-tuned to measure accuracy (and, in
    standard AL, to score the pool)."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
