"""Every registered model: forward shapes for 1- and 3-channel input, published sizes."""

from __future__ import annotations

import pytest
import torch

from autoprune.models import MODELS, create_model
from autoprune.quant import QuantConv2d, QuantLinear


@pytest.mark.parametrize("bits", [1, 2, 32])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", MODELS.names())
def test_forward_shape(name: str, in_channels: int, bits: int) -> None:
    model = create_model(name, bits=bits, num_classes=7, in_channels=in_channels)
    assert model(torch.randn(2, in_channels, 8, 8)).shape == (2, 7)


@pytest.mark.parametrize(("name", "params"), [("resnet20", 272_474), ("resnet18", 11_173_962)])
def test_parameter_counts(name: str, params: int) -> None:
    """He et al.'s ResNet-20 has ~0.27 M parameters (with 1x1 projection shortcuts, option B,
    272,474); CIFAR ResNet-18 ~11.2 M."""
    assert sum(p.numel() for p in create_model(name).parameters()) == params


def test_first_and_last_layers_stay_full_precision() -> None:
    model = create_model("resnet20", bits=1)
    layers = [m for m in model.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert layers[0].weight_quantizer.bits == 32 and layers[0].input_quantizer.bits == 32
    assert layers[-1].weight_quantizer.bits == 32 and layers[-1].input_quantizer.bits == 32
    assert all(layer.weight_quantizer.bits == 1 for layer in layers[1:-1])
