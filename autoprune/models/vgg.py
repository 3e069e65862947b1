"""VGG-Small, the CIFAR VGG of the quantization literature (Zhang et al., LQ-Nets, 2018).

Six 3x3 convs, 128-128-pool-256-256-pool-512-512-pool, each followed by BatchNorm and the
activation, then the classifier. Two choices differ from the papers' description:

- each 2x2 max-pool sits between its conv and the BatchNorm (conv-pool-BN-act, BinaryNet's
  order). For float and DoReFa nets this is the same function as conv-BN-act-pool whenever the
  BN scale is positive (BN and ReLU are then increasing, so they commute with max); for sign
  activations it matters: the max of already-binarised values is +1 almost everywhere.
- global average pooling before a single linear classifier, instead of a linear layer on the
  flattened 4x4x512 map of a 32x32 input: the network then takes any input size (8x8 digits,
  64x64 images) and the classifier has ``512 * classes`` weights instead of ``8192 * classes``
  (4,583,306 parameters at 10 classes).

Every conv is followed by its own BatchNorm and no residual couples them, so each conv's output
channels (the stem's included) form one prunable group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autoprune.models.layers import activation, classifier, quant_conv
from autoprune.models.registry import register_model
from autoprune.quant import QuantSpec

VGG_SMALL_WIDTHS = (128, 128, "pool", 256, 256, "pool", 512, 512, "pool")


class VGG(nn.Module):
    """Plain conv stack from ``layout`` (channel counts; ``"pool"`` halves the previous conv's
    output by 2x2 max-pooling before its BatchNorm), global pooling, classifier."""

    def __init__(
        self,
        spec: QuantSpec,
        *,
        layout: Sequence[int | str],
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, entry in enumerate(layout):
            if entry == "pool":
                continue
            width = int(entry)
            layers.append(quant_conv(spec, channels, width, 3, stem=not layers))
            if index + 1 < len(layout) and layout[index + 1] == "pool":
                layers.append(nn.MaxPool2d(2))
            feeds_next_conv = any(later != "pool" for later in layout[index + 1 :])
            layers += [
                nn.BatchNorm2d(width),
                activation(spec, only_feeds_quantized_conv=feeds_next_conv),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier(spec, channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@register_model("vgg_small")
def vgg_small(*, spec: QuantSpec, num_classes: int, in_channels: int) -> VGG:
    return VGG(spec, layout=VGG_SMALL_WIDTHS, num_classes=num_classes, in_channels=in_channels)
