"""Quantizers: what a low-precision weight or activation is, and how its gradient flows.

Each quantizer is a parameter-free ``nn.Module`` (so hooks and ``print(model)`` show it) with
``bits`` (the storage width used by the size metrics) and ``forward(x) -> x_q``. Rounding and
sign use the straight-through estimator (STE), written as autograd functions with an explicit
backward so the fake quantization costs one fused elementwise pass each way.

A new quantizer is one class registered in ``WEIGHT_QUANTIZERS`` or ``ACTIVATION_QUANTIZERS``.
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.registry import Registry

WEIGHT_QUANTIZERS: Registry[type[Quantizer]] = Registry("weight quantizer")
ACTIVATION_QUANTIZERS: Registry[type[Quantizer]] = Registry("activation quantizer")


class _SignSTE(torch.autograd.Function):
    """sign(x) in {-1, +1} (sign(0) = +1); backward: clipped STE, grad * 1[|x| <= 1]."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # keep a 1-byte mask, not the input; sign(x) + 0.5 moves 0 to the +1 side
        ctx.save_for_backward(x.abs() <= 1)
        return torch.sign(x).add_(0.5).sign_()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside


class _RoundSTE(torch.autograd.Function):
    """quantize_k(x) = round(x * (2^k - 1)) / (2^k - 1); backward: identity (STE)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class _ClippedRoundSTE(torch.autograd.Function):
    """quantize_k(clip(x, 0, 1)); backward: grad * 1[0 <= x <= 1] (the clip's derivative)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int) -> torch.Tensor:  # type: ignore[override]
        clipped = x.clamp(0, 1)
        ctx.save_for_backward(clipped == x)  # 1-byte mask of the unclipped entries
        return clipped.mul_(levels).round_().div_(levels)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None


def round_ste(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa's ``quantize_k`` on inputs in [0, 1], with a straight-through gradient."""
    return _RoundSTE.apply(x, 2**bits - 1)


class Quantizer(nn.Module):
    """Base: ``bits`` is what one value costs in storage; 32 means not quantized."""

    bits: int = 32

    def __init__(self, bits: int = 32) -> None:
        super().__init__()
        self.bits = bits

    @property
    def quantized(self) -> bool:
        return self.bits < 32

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


@WEIGHT_QUANTIZERS.register("fp")
@ACTIVATION_QUANTIZERS.register("fp")
class Identity(Quantizer):
    """Full precision: returns its input unchanged."""

    def __init__(self, bits: int = 32) -> None:
        super().__init__(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@WEIGHT_QUANTIZERS.register("bnn")
@ACTIVATION_QUANTIZERS.register("bnn")
class Sign(Quantizer):
    """BinaryNet (Courbariaux et al., 2016): ``q = sign(x)`` in {-1, +1}, no scale.

    Gradient: the clipped straight-through estimator ``dq/dx = 1[|x| <= 1]``.
    """

    def __init__(self, bits: int = 1) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SignSTE.apply(x)


@WEIGHT_QUANTIZERS.register("dorefa")
class DoReFaWeight(Quantizer):
    """DoReFa-Net weights (Zhou et al., 2016), k bits:

    ``q = 2 * quantize_k( tanh(w) / (2 * max|tanh(w)|) + 1/2 ) - 1``, values in
    {-1, -1 + 2/(2^k - 1), ..., 1}. Gradient: straight through the rounding, autograd through
    tanh and the normalisation, so for every weight but the arg-max
    ``dq/dw = (1 - tanh(w)^2) / max|tanh(w)|``. The scale ``max|tanh(w)|`` is per tensor: after
    pruning it is recomputed on the kept weights.
    """

    def __init__(self, bits: int) -> None:
        if not 2 <= bits <= 8:
            raise ValueError(f"DoReFa weights need 2..8 bits, got {bits}")
        super().__init__(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(w)
        t = t / (2 * t.abs().max().clamp_min(1e-8)) + 0.5
        return 2 * round_ste(t, self.bits) - 1


@ACTIVATION_QUANTIZERS.register("dorefa")
class DoReFaActivation(Quantizer):
    """DoReFa-Net activations, k bits: ``q = quantize_k(clip(x, 0, 1))``.

    Gradient: ``dq/dx = 1[0 <= x <= 1]`` (straight through the rounding, zero where clipped).
    """

    def __init__(self, bits: int) -> None:
        if not 2 <= bits <= 8:
            raise ValueError(f"DoReFa activations need 2..8 bits, got {bits}")
        super().__init__(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ClippedRoundSTE.apply(x, 2**self.bits - 1)
