"""MobileNetV2 (Sandler et al., 2018): inverted residual blocks with depthwise convs.

Each block expands its input with a 1x1 conv (factor ``t``), filters every channel on its own
with a 3x3 depthwise conv (``groups == channels``), and projects back with a linear 1x1 conv
(BatchNorm, no activation); a block that keeps shape and stride adds its input. The network:
a 3x3 stem of 32 channels, the paper's table 2 of blocks
``(t, c, n, s) = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
(6, 160, 3, 2), (6, 320, 1, 1)``, a 1x1 conv to 1280 channels, global pooling, classifier.

- ``mobilenet_v2_imagenet``: the paper's network for 224x224 inputs (stride-2 stem; 3,504,872
  parameters at 1000 classes, the paper's 3.4 M with its 3.47 M of torchvision).
- ``mobilenet_v2``: for 32x32 inputs (CIFAR), the usual adaptation: stride-1 stem and the
  second stage (c = 24) at stride 1, so the feature map is 4x4 before pooling.
- ``mobilenet_tiny``: 3 small stages, for tests.

Activations are ``autoprune.models.layers.activation`` (ReLU or Hardtanh for sign nets)
instead of ReLU6, and are left out before a quantized conv that subsumes them. Global average
pooling makes every variant work for any input size.

Pruning: the expansion channels of a block (its 1x1 expand conv, the depthwise conv and the
projection's inputs) are one block-internal group; each stage's residual stream (the
projections of its blocks, added) is a residual group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autoprune.models.layers import activation, classifier, quant_conv
from autoprune.models.registry import register_model
from autoprune.quant import QuantConv2d, QuantSpec

# (expansion t, output channels c, blocks n, first stride s), Sandler et al. table 2
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def depthwise_conv(
    spec: QuantSpec, channels: int, kernel_size: int = 3, stride: int = 1
) -> QuantConv2d:
    """A bias-free quantized depthwise conv (one kernel per channel) with 'same' padding."""
    return QuantConv2d(
        channels,
        channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        groups=channels,
        bias=False,
        weight_quantizer=spec.weight_quantizer(),
        input_quantizer=spec.input_quantizer(),
    )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise-BN-act, 1x1 pointwise-BN (MobileNetV1's block), plus the input if
    ``residual`` (same shape and stride 1), then act."""

    def __init__(
        self, spec: QuantSpec, in_channels: int, channels: int, stride: int = 1, *, residual: bool
    ) -> None:
        super().__init__()
        if residual and (stride != 1 or in_channels != channels):
            raise ValueError("a residual depthwise-separable block keeps its shape")
        self.depthwise = nn.Sequential(
            depthwise_conv(spec, in_channels, 3, stride),
            nn.BatchNorm2d(in_channels),
            activation(spec, only_feeds_quantized_conv=True),
        )
        self.pointwise = nn.Sequential(
            quant_conv(spec, in_channels, channels, 1), nn.BatchNorm2d(channels)
        )
        self.residual = residual
        self.act = activation(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pointwise(self.depthwise(x))
        return self.act(x + out if self.residual else out)


class InvertedResidual(nn.Module):
    """1x1 expand-BN-act, 3x3 depthwise-BN-act, 1x1 project-BN, plus the input if shapes match.

    ``expansion == 1`` has no expand conv (the depthwise conv reads the input directly).
    """

    def __init__(
        self, spec: QuantSpec, in_channels: int, channels: int, stride: int, expansion: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand: nn.Module = nn.Identity()
        if expansion != 1:
            self.expand = nn.Sequential(
                quant_conv(spec, in_channels, hidden, 1),
                nn.BatchNorm2d(hidden),
                activation(spec, only_feeds_quantized_conv=True),
            )
        self.depthwise = nn.Sequential(
            depthwise_conv(spec, hidden, 3, stride),
            nn.BatchNorm2d(hidden),
            activation(spec, only_feeds_quantized_conv=True),
        )
        self.project = nn.Sequential(
            quant_conv(spec, hidden, channels, 1), nn.BatchNorm2d(channels)
        )
        self.residual = stride == 1 and in_channels == channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """Stem conv, inverted residual stages, 1x1 head conv, global pooling, classifier."""

    def __init__(
        self,
        spec: QuantSpec,
        *,
        stages: Sequence[tuple[int, int, int, int]],
        stem_channels: int,
        stem_stride: int,
        head_channels: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            quant_conv(spec, in_channels, stem_channels, 3, stem_stride, stem=True),
            nn.BatchNorm2d(stem_channels),
            activation(spec),
        )
        blocks: list[nn.Module] = []
        channels = stem_channels
        for expansion, width, count, stride in stages:
            for index in range(count):
                blocks.append(
                    InvertedResidual(spec, channels, width, stride if index == 0 else 1, expansion)
                )
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            quant_conv(spec, channels, head_channels, 1),
            nn.BatchNorm2d(head_channels),
            activation(spec),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier(spec, head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("mobilenet_v2")
def mobilenet_v2(*, spec: QuantSpec, num_classes: int, in_channels: int) -> MobileNetV2:
    """For 32x32 inputs: stride-1 stem and stride-1 second stage (total stride 8)."""
    stages = list(MOBILENET_V2_STAGES)
    stages[1] = (6, 24, 2, 1)
    return MobileNetV2(
        spec,
        stages=stages,
        stem_channels=32,
        stem_stride=1,
        head_channels=1280,
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model("mobilenet_v2_imagenet")
def mobilenet_v2_imagenet(*, spec: QuantSpec, num_classes: int, in_channels: int) -> MobileNetV2:
    """The paper's network for 224x224 inputs (total stride 32)."""
    return MobileNetV2(
        spec,
        stages=MOBILENET_V2_STAGES,
        stem_channels=32,
        stem_stride=2,
        head_channels=1280,
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model("mobilenet_tiny")
def mobilenet_tiny(*, spec: QuantSpec, num_classes: int, in_channels: int) -> MobileNetV2:
    """Stem of 8, blocks (1, 8, 1, 1), (4, 16, 2, 2), (4, 24, 1, 2), head of 48 channels: an
    expansion-1 block, a residual stream of two blocks, every group kind, in milliseconds."""
    return MobileNetV2(
        spec,
        stages=((1, 8, 1, 1), (4, 16, 2, 2), (4, 24, 1, 2)),
        stem_channels=8,
        stem_stride=1,
        head_channels=48,
        num_classes=num_classes,
        in_channels=in_channels,
    )
