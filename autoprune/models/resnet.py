"""ResNets for small images (3x3 stem, no max-pool): ResNet-20/32/56 and ResNet-18.

ResNet-20, -32 and -56 follow He et al. (2016, section 4.2, CIFAR): a 3x3 stem of 16 channels,
then 3 stages of ``n`` basic blocks with 16/32/64 channels (``6n + 2`` weighted layers, n = 3,
5, 9). The paper's shortcuts are option A (identity with zero-padded channels, no parameters);
here a shortcut that changes shape is a 1x1 conv + BN (option B), so each residual stream's
channels stay prunable through the dependency graph. That adds
``16*32 + 2*32 + 32*64 + 2*64 = 2,752`` parameters (two projections) to every depth: 272,474
for ResNet-20 (paper: 0.27 M), 466,906 for ResNet-32 (0.46 M), 855,770 for ResNet-56 (0.85 M).

``resnet18`` is the ImageNet layout (4 stages of 64..512 channels) with the 3x3 stem and no
max-pool used for 32x32 inputs (11,173,962 parameters at 10 classes); the ImageNet network
itself, with its 7x7 stem, is ``resnet18_imagenet`` (``autoprune.models.resnet_imagenet``).
Global average pooling makes all of them work for any input size (8x8 digits included).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autoprune.models.layers import BasicBlock, activation, classifier, quant_conv
from autoprune.models.registry import register_model
from autoprune.quant import QuantSpec


class ResNet(nn.Module):
    def __init__(
        self,
        spec: QuantSpec,
        *,
        blocks_per_stage: Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.conv1 = quant_conv(spec, in_channels, widths[0], 3, stem=True)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = activation(spec)
        stages = []
        channels = widths[0]
        for index, (blocks, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            stride = 1 if index == 0 else 2
            layers = []
            for block in range(blocks):
                layers.append(BasicBlock(spec, channels, width, stride if block == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.layers = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier(spec, channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        for stage in self.layers:
            x = stage(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet20")
def resnet20(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ResNet:
    return ResNet(
        spec,
        blocks_per_stage=(3, 3, 3),
        widths=(16, 32, 64),
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model("resnet32")
def resnet32(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ResNet:
    return ResNet(
        spec,
        blocks_per_stage=(5, 5, 5),
        widths=(16, 32, 64),
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model("resnet56")
def resnet56(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ResNet:
    return ResNet(
        spec,
        blocks_per_stage=(9, 9, 9),
        widths=(16, 32, 64),
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model("resnet18")
def resnet18(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ResNet:
    return ResNet(
        spec,
        blocks_per_stage=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        num_classes=num_classes,
        in_channels=in_channels,
    )
