"""Behaviour of particular quantizers beyond the registry-wide contract (test_contracts.py)."""

from __future__ import annotations

import torch

from autoprune.quant import QuantConv2d, QuantLinear, Sign, XNORWeight


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
