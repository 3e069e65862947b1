"""ImageNet ResNets (He et al., 2016, table 1): ResNet-18 and ResNet-34.

A 7x7 stride-2 stem of 64 channels and a 3x3 stride-2 max-pool (together /4), then 4 stages of
basic blocks with 64/128/256/512 channels (2-2-2-2 blocks for ResNet-18, 3-4-6-3 for ResNet-34),
global average pooling and the classifier. A shortcut that changes shape is a 1x1 conv + BN
(option B, as in the paper's ImageNet models). Parameters at 1000 classes: 11,689,512 and
21,797,672 (the paper: 11.7 M and 21.8 M).

Module names follow torchvision's layout (``conv1``, ``bn1``, ``layer1``..``layer4``, each
block's ``conv1``/``bn1``/``conv2``/``bn2``/``downsample``, ``fc``), so a torchvision ResNet
state dict loads directly with ``autoprune.models.load_pretrained_`` (quantizers hold no
parameters, so a float checkpoint is a starting point for any bit-width).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autoprune.models.layers import activation, classifier, quant_conv
from autoprune.models.registry import register_model
from autoprune.quant import QuantSpec


class ImageNetBasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN plus shortcut, then act; ``downsample`` where shapes change."""

    def __init__(self, spec: QuantSpec, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = quant_conv(spec, in_channels, channels, 3, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = activation(spec, only_feeds_quantized_conv=True)
        self.conv2 = quant_conv(spec, channels, channels, 3)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                quant_conv(spec, in_channels, channels, 1, stride), nn.BatchNorm2d(channels)
            )
        self.act2 = activation(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.downsample(x))


class ImageNetResNet(nn.Module):
    """7x7/2 stem, 3x3/2 max-pool, 4 stages of basic blocks, global pooling, classifier."""

    def __init__(
        self,
        spec: QuantSpec,
        *,
        blocks_per_stage: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.conv1 = quant_conv(spec, in_channels, widths[0], 7, stride=2, stem=True)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = activation(spec)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = widths[0]
        # torchvision's attribute names (layer1..layer4), so its state dicts load as they are
        for index, (blocks, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            stride = 1 if index == 0 else 2
            stage = []
            for block in range(blocks):
                stage.append(ImageNetBasicBlock(spec, channels, width, stride if block == 0 else 1))
                channels = width
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier(spec, channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet18_imagenet")
def resnet18_imagenet(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ImageNetResNet:
    return ImageNetResNet(
        spec, blocks_per_stage=(2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels
    )


@register_model("resnet34_imagenet")
def resnet34_imagenet(*, spec: QuantSpec, num_classes: int, in_channels: int) -> ImageNetResNet:
    return ImageNetResNet(
        spec, blocks_per_stage=(3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels
    )
