"""Behaviour of particular quantizers beyond the registry-wide contract (test_contracts.py)."""

from __future__ import annotations

import pytest
import torch

from autoprune.quant import InplaceHardtanh, QuantConv2d, QuantLinear, Sign, XNORWeight
from autoprune.quant.base import clipped_ste_grad, hardtanh_grad


def test_sign_of_zero_is_plus_one_so_values_are_binary() -> None:
    assert Sign()(torch.tensor([-0.0, 0.0, -1e-30])).tolist() == [1.0, 1.0, -1.0]


def test_xnor_scale_is_per_output_channel_and_follows_pruning() -> None:
    w = torch.tensor([[[[0.5, -1.5]], [[4.0, 0.0]]], [[[-0.1, 0.3]], [[0.6, -0.2]]]])
    q = XNORWeight()(w)
    assert torch.equal(q[0], torch.tensor([[[1.5, -1.5]], [[1.5, 1.5]]]))  # mean |w| = 1.5
    assert torch.allclose(q[1], torch.tensor([[[-0.3, 0.3]], [[0.3, -0.3]]]))
    # pruning input channel 1 away: the scale is recomputed on what is left
    assert torch.allclose(XNORWeight()(w[:, :1])[0].abs(), torch.full((1, 1, 2), 1.0))
    assert torch.allclose(XNORWeight()(w[:, :1])[1].abs(), torch.full((1, 1, 2), 0.2))


def test_xnor_layers_conv_and_linear() -> None:
    torch.manual_seed(0)
    conv = QuantConv2d(3, 5, 3, bias=False, weight_quantizer=XNORWeight())
    linear = QuantLinear(7, 4, weight_quantizer=XNORWeight())
    for layer in (conv, linear):
        q = layer.quantized_weight()
        alpha = layer.weight.detach().abs().flatten(1).mean(1)
        assert torch.allclose(q.detach().abs().flatten(1), alpha[:, None].expand(q.shape[0], -1))
    assert conv(torch.randn(2, 3, 6, 6)).shape == (2, 5, 4, 4)
    assert linear(torch.randn(2, 7)).shape == (2, 4)
    assert conv.weight_quantizer.extra_bits_per_output_channel == 32
    assert Sign().extra_bits_per_output_channel == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_clipped_ste_grad_is_the_closed_interval_in_every_dtype(dtype: torch.dtype) -> None:
    """The one-pass backward keeps grad exactly on [low, high], ends included."""
    one = torch.tensor(1.0, dtype=dtype)
    just_above = torch.nextafter(one, torch.tensor(2.0, dtype=dtype))
    just_below_zero = torch.nextafter(torch.tensor(0.0, dtype=dtype), -one)
    x = torch.stack([-just_above, -one, just_below_zero, -one * 0, one * 0, one, just_above])
    grad = torch.arange(1, 8, dtype=dtype)
    unit = clipped_ste_grad(grad, x, 0.0, 1.0)
    assert unit.tolist() == [0, 0, 0, 4, 5, 6, 0]
    symmetric = clipped_ste_grad(grad, x, -1.0, 1.0)
    assert symmetric.tolist() == [0, 2, 3, 4, 5, 6, 0]


def test_hardtanh_grad_is_laid_out_like_the_saved_tensor() -> None:
    """A contiguous gradient (from a global average pool) meets a channels-last activation:
    the result must be channels-last, or the BatchNorm backward after it takes its slow path."""
    torch.manual_seed(0)
    saved = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 3, 4, 5)
    result = hardtanh_grad(grad, saved, -0.5, 0.5)
    assert result.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(result, grad * ((saved > -0.5) & (saved < 0.5)))
    assert hardtanh_grad(grad, saved.contiguous(), -0.5, 0.5).is_contiguous()


def test_inplace_hardtanh_matches_torch_values_and_gradient() -> None:
    """Same outputs and gradients as nn.Hardtanh (zero gradient at the bounds), in place."""
    base = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    grad = torch.arange(1.0, 8.0)
    reference_input = base.clone().requires_grad_()
    reference = torch.nn.Hardtanh()(reference_input * 1.0)
    reference.backward(grad)
    ours_input = base.clone().requires_grad_()
    hidden = ours_input * 1.0
    ours = InplaceHardtanh()(hidden)
    ours.backward(grad)
    assert ours.data_ptr() == hidden.data_ptr()  # in place
    assert torch.equal(ours, reference)
    assert torch.equal(ours_input.grad, reference_input.grad)
    assert ours_input.grad.tolist() == [0, 0, 3, 4, 5, 0, 0]


def test_inplace_hardtanh_without_autograd_is_plain_hardtanh() -> None:
    with torch.no_grad():
        x = torch.tensor([-3.0, 0.25, 3.0])
        assert InplaceHardtanh()(x).tolist() == [-1.0, 0.25, 1.0]
        assert x.tolist() == [-1.0, 0.25, 1.0]
