"""Tiny models registered like real ones, so tests run every code path in milliseconds."""

from __future__ import annotations

import torch
from torch import nn

from autoprune.models.layers import activation, classifier, quant_conv
from autoprune.models.mobilenet import DepthwiseSeparable
from autoprune.models.registry import register_model
from autoprune.models.resnet import ResNet
from autoprune.quant import QuantSpec


class TinyCNN(nn.Module):
    """stem - two quantized conv layers - classifier; no residuals, every layer prunable."""

    def __init__(self, spec: QuantSpec, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            quant_conv(spec, in_channels, 8, 3, stem=True),
            nn.BatchNorm2d(8),
            activation(spec),
            quant_conv(spec, 8, 16, 3),
            nn.BatchNorm2d(16),
            activation(spec),
            quant_conv(spec, 16, 16, 3, stride=2),
            nn.BatchNorm2d(16),
            activation(spec),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier(spec, 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class TinyDSCNN(nn.Module):
    """The depthwise-separable reference model: a 3x3 stem of 24 channels, then three
    depthwise-separable blocks (24 -> 48 stride 2, 48 -> 96 stride 2, 96 -> 96 with a residual
    addition), global pooling, classifier. Its largest layer, the last 96x96 pointwise conv,
    holds about 56 % of the quantized weights and is prunable only through the residual group,
    like the custom network of issue 14."""

    def __init__(self, spec: QuantSpec, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            quant_conv(spec, in_channels, 24, 3, stem=True), nn.BatchNorm2d(24), activation(spec)
        )
        self.blocks = nn.Sequential(
            DepthwiseSeparable(spec, 24, 48, 2, residual=False),
            DepthwiseSeparable(spec, 48, 96, 2, residual=False),
            DepthwiseSeparable(spec, 96, 96, 1, residual=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier(spec, 96, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


@register_model("tiny_cnn")
def tiny_cnn(*, spec: QuantSpec, num_classes: int, in_channels: int) -> TinyCNN:
    return TinyCNN(spec, num_classes=num_classes, in_channels=in_channels)


@register_model("tiny_resnet")
def tiny_resnet(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ResNet:
    """Two stages of one block each (8 and 16 channels): identity and conv shortcuts."""
    return ResNet(
        spec,
        blocks_per_stage=(1, 1),
        widths=(8, 16),
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model("tiny_dscnn")
def tiny_dscnn(*, spec: QuantSpec, num_classes: int, in_channels: int) -> TinyDSCNN:
    return TinyDSCNN(spec, num_classes=num_classes, in_channels=in_channels)
