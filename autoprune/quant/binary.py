"""Binary quantizers: BinaryNet's sign (weights and activations) and XNOR-Net's scaled sign.

Both use ``sign(0) = +1`` so every value is one of two levels, and the clipped
straight-through estimator (STE) for the sign: ``d sign(x)/dx := 1[|x| <= 1]``. The autograd
functions have a hand-written backward: the activation sign recomputes the mask from the saved
input in the same pass as the product (``clipped_ste_grad``); XNOR keeps a 1-byte mask.
"""

from __future__ import annotations

import torch

from autoprune.quant.base import (
    ACTIVATION_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    Quantizer,
    clipped_ste_grad,
)

SCALE_BITS = 32  # XNOR's per-channel scale is stored as one float32


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` in {-1, +1} with ``sign(0) = +1`` (adding 1/2 moves 0 to the + side).

    Also ``+1`` for ``-0.0``, as the exported inference form computes it (one-pass
    ``copysign`` would give -1 there; see benchmarks/README.md).
    """
    return torch.sign(x).add_(0.5).sign_()


class _SignSTE(torch.autograd.Function):
    """sign(x) in {-1, +1}; backward: clipped STE, ``grad * 1[|x| <= 1]``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return clipped_ste_grad(grad, x, -1.0, 1.0)


class _XNORWeightSTE(torch.autograd.Function):
    """``alpha_o * sign(w)``; backward: XNOR-Net's ``grad * (1/n + alpha_o * 1[|w| <= 1])``."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        per_channel = w.reshape(w.shape[0], -1)
        fan_in = per_channel.shape[1]
        alpha = per_channel.abs().mean(dim=1).view(-1, *([1] * (w.dim() - 1)))
        ctx.fan_in = max(fan_in, 1)
        ctx.save_for_backward(w.abs() <= 1, alpha)
        return binary_sign(w).mul_(alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        inside, alpha = ctx.saved_tensors
        return grad * (inside * alpha + 1.0 / ctx.fan_in)


@WEIGHT_QUANTIZERS.register("bnn")
@ACTIVATION_QUANTIZERS.register("bnn")
class Sign(Quantizer):
    """BinaryNet (Courbariaux, Hubara et al., 2016): ``q = sign(x)`` in {-1, +1}, no scale.

    Gradient: the clipped straight-through estimator ``dq/dx = 1[|x| <= 1]``. 1 bit per value.
    """

    def __init__(self, bits: int = 1) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SignSTE.apply(x)


@WEIGHT_QUANTIZERS.register("xnor")
class XNORWeight(Quantizer):
    """XNOR-Net weights (Rastegari, Ordonez, Redmon, Farhadi, ECCV 2016), binary with a scale:

    ``q[o, ...] = alpha_o * sign(w[o, ...])`` with ``alpha_o = mean |w[o, ...]|`` over the
    ``n`` weights of output channel ``o`` (``n = C_in * k_h * k_w`` for a conv), so the values of
    channel ``o`` are {-alpha_o, +alpha_o}. ``alpha`` is recomputed from the latent weights on
    every forward, so after pruning it is the mean over the weights that are left.

    Gradient, as the paper gives it (section 3.2): ``dq_i/dw_i = 1/n + alpha_o * 1[|w_i| <= 1]``
    (1/n through the mean, ``alpha_o`` times the clipped STE through the sign). This is the
    diagonal of the Jacobian: the exact derivative of the mean would add
    ``sign(w_i)/n * sum_{j != i} g_j sign(w_j)`` over the other weights of the channel, which the
    paper leaves out.

    Storage: 1 bit per weight plus one 32-bit ``alpha_o`` per output channel.
    """

    extra_bits_per_output_channel = SCALE_BITS

    def __init__(self, bits: int = 1) -> None:
        if bits != 1:
            raise ValueError(f"XNOR weights are binary (1 bit), got {bits}")
        super().__init__(1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _XNORWeightSTE.apply(w)
