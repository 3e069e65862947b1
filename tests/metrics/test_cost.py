"""Size, MACs and BOPs on a small model whose numbers are computed by hand."""

from __future__ import annotations

import torch
from torch import nn

from autoprune.metrics import BITS_PER_MB, measure
from autoprune.models import create_model
from autoprune.quant import QuantConv2d, QuantLinear, QuantSpec, XNORWeight


class HandModel(nn.Module):
    """fp conv 1->4 (3x3, stride 1) on 6x6, BN(4), 2-bit conv 4->8 (3x3, stride 2), fp linear."""

    def __init__(self) -> None:
        super().__init__()
        spec = QuantSpec.from_bits(2)
        self.conv1 = QuantConv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = QuantConv2d(
            4,
            8,
            3,
            stride=2,
            padding=1,
            bias=False,
            weight_quantizer=spec.weight_quantizer(),
            input_quantizer=spec.input_quantizer(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = QuantLinear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_hand_computed_model() -> None:
    cost = measure(HandModel(), (1, 6, 6))
    conv1_bits = 4 * 1 * 9 * 32  # 36 float weights
    bn_bits = 2 * 4 * 32  # scale and shift per channel
    conv2_bits = 8 * 4 * 9 * 2  # 288 two-bit weights
    fc_bits = (8 * 10 + 10) * 32  # weights and bias, float
    assert cost.size_bits == conv1_bits + bn_bits + conv2_bits + fc_bits
    assert cost.params == 36 + 8 + 288 + 90
    conv1_macs = 9 * 1 * 4 * 6 * 6  # output 6x6
    conv2_macs = 9 * 4 * 8 * 3 * 3  # output 3x3
    fc_macs = 8 * 10
    assert cost.macs == conv1_macs + conv2_macs + fc_macs
    assert cost.bops == conv1_macs * 32 * 32 + conv2_macs * 2 * 2 + fc_macs * 32 * 32
    assert cost.size_mb == cost.size_bits / BITS_PER_MB


def test_resnet18_bnn_size_matches_paper_accounting() -> None:
    """Binary ResNet-18 with float stem and classifier: ~1.4 MB at 32x32 with 10 classes."""
    cost = measure(create_model("resnet18", bits=1), (3, 32, 32))
    float_cost = measure(create_model("resnet18", bits=32), (3, 32, 32))
    assert cost.params == float_cost.params
    assert cost.macs == float_cost.macs == 555_422_720  # the published 0.56 GMACs
    assert 25 < float_cost.size_bits / cost.size_bits < 35


def test_xnor_adds_one_32_bit_scale_per_output_channel() -> None:
    """Hand-computed: a 1-bit XNOR conv 3->5 (3x3) and an XNOR linear 5->4 with bias."""
    model = nn.Sequential(
        QuantConv2d(3, 5, 3, bias=False, weight_quantizer=XNORWeight()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        QuantLinear(5, 4, weight_quantizer=XNORWeight()),
    )
    cost = measure(model, (3, 6, 6))
    conv_bits = 5 * 3 * 9 * 1 + 5 * 32  # binary weights + one scale per output channel
    linear_bits = 4 * 5 * 1 + 4 * 32 + 4 * 32  # binary weights + scales + float bias
    assert cost.size_bits == conv_bits + linear_bits
    assert [layer.scale_bits for layer in cost.layers] == [5 * 32, 4 * 32]
    assert cost.params == 5 * 3 * 9 + 4 * 5 + 4  # scales derive from the weights
    assert cost.bops == 5 * 3 * 9 * 4 * 4 * 1 * 32 + 5 * 4 * 1 * 32


def test_xnor_resnet_costs_bnn_plus_inner_output_channels() -> None:
    bnn = create_model("resnet20", spec=QuantSpec.from_options(bits=1))
    xnor = create_model("resnet20", spec=QuantSpec.from_options(bits=1, binary_weights="xnor"))
    inner_convs = [
        m for m in xnor.modules() if isinstance(m, QuantConv2d) and m.weight_quantizer.bits == 1
    ]
    extra = 32 * sum(conv.out_channels for conv in inner_convs)
    assert measure(xnor, (3, 32, 32)).size_bits == measure(bnn, (3, 32, 32)).size_bits + extra
    # 18 3x3 convs (16, 32, 64 wide) and two 1x1 shortcut convs; the stem stays float
    assert extra == 32 * (6 * 16 + 7 * 32 + 7 * 64)
