"""ResNets for small images (3x3 stem, no max-pool): ResNet-20 and ResNet-18.

ResNet-20 follows He et al. (2016, CIFAR: 3 stages of 16/32/64 channels); ResNet-18 is the
ImageNet layout (4 stages of 64..512 channels) with the 3x3 stem used for 32x32 inputs.
Global average pooling makes both work for any input size (8x8 digits included).
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


@register_model("resnet18")
def resnet18(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ResNet:
    return ResNet(
        spec,
        blocks_per_stage=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        num_classes=num_classes,
        in_channels=in_channels,
    )
