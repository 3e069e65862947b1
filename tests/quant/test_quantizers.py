"""Quantizer values and STE gradients against their analytic forms, for every registered one."""

from __future__ import annotations

import pytest
import torch

from autoprune.errors import ConfigError
from autoprune.quant import (
    ACTIVATION_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    DoReFaActivation,
    DoReFaWeight,
    QuantSpec,
    Sign,
)


def _grad(quantizer: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = quantizer(x)
    upstream = torch.linspace(0.5, 1.5, x.numel()).reshape(x.shape)
    (y * upstream).sum().backward()
    return y.detach(), x.grad / upstream


def test_sign_values_and_clipped_ste() -> None:
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5])
    y, grad = _grad(Sign(), x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert torch.allclose(grad, (x.abs() <= 1).float())


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dorefa_activation_levels_and_gradient(bits: int) -> None:
    levels = 2**bits - 1
    x = torch.linspace(-0.5, 1.5, 101)
    y, grad = _grad(DoReFaActivation(bits), x)
    expected = torch.round(x.clamp(0, 1) * levels) / levels
    assert torch.equal(y, expected)
    assert torch.allclose(grad, ((x >= 0) & (x <= 1)).float())


@pytest.mark.parametrize("bits", [2, 4])
def test_dorefa_weight_levels_and_gradient(bits: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 5)
    y, grad = _grad(DoReFaWeight(bits), w)
    levels = 2**bits - 1
    allowed = torch.tensor([2 * i / levels - 1 for i in range(levels + 1)])
    assert torch.isclose(y[..., None], allowed).any(-1).all()
    t = torch.tanh(w)
    peak = t.abs().max()
    expected = 2 * torch.round((t / (2 * peak) + 0.5) * levels) / levels - 1
    assert torch.allclose(y, expected)
    # away from the arg-max, the gradient is straight through the rounding
    analytic = (1 - t**2) / peak
    others = torch.ones_like(w, dtype=torch.bool)
    others.view(-1)[t.abs().argmax()] = False
    # (the arg-max itself also feeds every element through the normaliser)
    assert torch.allclose(grad[others], analytic[others], atol=1e-5)


@pytest.mark.parametrize("name", WEIGHT_QUANTIZERS.names())
def test_every_weight_quantizer_keeps_shape_and_has_bits(name: str) -> None:
    quantizer = WEIGHT_QUANTIZERS.get(name)(2)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    out = quantizer(w)
    out.sum().backward()
    assert out.shape == w.shape and w.grad is not None and torch.isfinite(w.grad).all()
    assert quantizer.bits in (1, 2, 32)


@pytest.mark.parametrize("name", ACTIVATION_QUANTIZERS.names())
def test_every_activation_quantizer_keeps_shape(name: str) -> None:
    quantizer = ACTIVATION_QUANTIZERS.get(name)(2)
    x = torch.randn(2, 3, 4, 4)
    assert quantizer(x).shape == x.shape


def test_spec_from_bits() -> None:
    assert QuantSpec.from_bits(1).label == "bnn"
    assert QuantSpec.from_bits(2).label == "w2a2"
    assert QuantSpec.from_bits(32).label == "fp32"
    assert QuantSpec.from_dict(QuantSpec.from_bits(4).to_dict()) == QuantSpec.from_bits(4)
    for impossible in (0, 9, 16, 33):
        with pytest.raises(ConfigError, match="bit-width"):
            QuantSpec.from_bits(impossible)
