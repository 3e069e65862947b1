"""Building blocks shared by the architectures: quantized convs and the residual block."""

from __future__ import annotations

import torch
from torch import nn

from autoprune.quant import InplaceHardtanh, QuantConv2d, QuantLinear, QuantSpec


def activation(spec: QuantSpec, *, only_feeds_quantized_conv: bool = False) -> nn.Module:
    """ReLU for float and DoReFa activations; Hardtanh for sign activations (BNN, XNOR), where
    ReLU would make every sign +1.

    ``only_feeds_quantized_conv``: the output goes nowhere but into an inner conv, whose input
    quantizer then makes the activation redundant, so it is left out (``nn.Identity``) and two
    elementwise passes per step are saved (forward and backward). Exactly:
    ``quantize_k(clip(relu(y), 0, 1)) = quantize_k(clip(y, 0, 1))`` and
    ``sign(hardtanh(y)) = sign(y)``, and the gradients differ only where ``y`` is exactly 0
    (DoReFa) or exactly +-1 (sign), where the quantizer's clipped STE still passes them.
    """
    if only_feeds_quantized_conv and spec.input_quantizer().quantized:
        return nn.Identity()
    return InplaceHardtanh() if spec.binary else nn.ReLU(inplace=True)


def quant_conv(
    spec: QuantSpec,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    *,
    stem: bool = False,
) -> QuantConv2d:
    """A bias-free quantized conv (a BatchNorm follows) with 'same' padding.

    ``stem=True`` is the first conv: it reads the raw image, which is never quantized, and its
    weights are at ``spec.edge_bits``.
    """
    return QuantConv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=False,
        weight_quantizer=spec.weight_quantizer(edge=stem),
        input_quantizer=None if stem else spec.input_quantizer(),
    )


def classifier(spec: QuantSpec, in_features: int, num_classes: int) -> QuantLinear:
    """The last layer: weights and input at ``spec.edge_bits`` (full precision by default)."""
    return QuantLinear(
        in_features,
        num_classes,
        weight_quantizer=spec.weight_quantizer(edge=True),
        input_quantizer=spec.input_quantizer(edge=True),
    )


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN plus shortcut, then act (He et al., 2016).

    The shortcut is a quantized 1x1 conv + BN where the shape changes (option B), so every
    residual stream's channels stay prunable through the dependency graph.
    """

    def __init__(self, spec: QuantSpec, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = quant_conv(spec, in_channels, channels, 3, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = activation(spec, only_feeds_quantized_conv=True)
        self.conv2 = quant_conv(spec, channels, channels, 3)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                quant_conv(spec, in_channels, channels, 1, stride), nn.BatchNorm2d(channels)
            )
        self.act2 = activation(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))
