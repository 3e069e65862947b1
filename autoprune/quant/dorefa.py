"""DoReFa-Net quantizers (Zhou, Wu, Ni, Zhou, Wen, Zou, 2016), k = 2..8 bits.

Both build on ``quantize_k(x) = round(x * (2^k - 1)) / (2^k - 1)`` for ``x`` in [0, 1], whose
gradient is the straight-through estimator (STE) ``d quantize_k(x)/dx := 1``. The activation
quantizer's backward recomputes its clip mask from the saved input in the same pass as the
product (``clipped_ste_grad``).
"""

from __future__ import annotations

import torch

from autoprune.quant.base import (
    ACTIVATION_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    Quantizer,
    clipped_ste_grad,
)

DOREFA_BITS = range(2, 9)


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
        ctx.save_for_backward(x)  # the mask is recomputed in the backward's single pass
        return x.clamp(0, 1).mul_(levels).round_().div_(levels)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return clipped_ste_grad(grad, x, 0.0, 1.0), None


def round_ste(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa's ``quantize_k`` on inputs in [0, 1], with a straight-through gradient."""
    return _RoundSTE.apply(x, 2**bits - 1)


def clipped_round_ste(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``quantize_k(clip(x, 0, 1))`` with gradient ``1[0 <= x <= 1]``."""
    return _ClippedRoundSTE.apply(x, 2**bits - 1)


@WEIGHT_QUANTIZERS.register("dorefa")
class DoReFaWeight(Quantizer):
    """DoReFa-Net weights, k bits:

    ``q = 2 * quantize_k( tanh(w) / (2 * m) + 1/2 ) - 1`` with ``m = max |tanh(w)|`` over the
    tensor, values in {-1 + 2j/(2^k - 1), j = 0..2^k - 1}.

    Gradient: straight through the rounding, autograd through tanh and the normalisation.
    With ``u = tanh(w)``, upstream gradient ``g`` and ``a`` the arg-max of ``|u|``:
    ``dL/dw_j = g_j (1 - u_j^2) / m  -  [j = a] sign(u_a) (1 - u_a^2) / m^2 * sum_i g_i u_i``.
    The scale ``m`` is per tensor: after pruning it is recomputed on the kept weights.
    """

    def __init__(self, bits: int) -> None:
        if bits not in DOREFA_BITS:
            raise ValueError(f"DoReFa weights need 2..8 bits, got {bits}")
        super().__init__(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(w)
        t = t / (2 * t.abs().max().clamp_min(1e-8)) + 0.5
        return 2 * round_ste(t, self.bits) - 1


@ACTIVATION_QUANTIZERS.register("dorefa")
class DoReFaActivation(Quantizer):
    """DoReFa-Net activations, k bits: ``q = quantize_k(clip(x, 0, 1))``, values j/(2^k - 1).

    Gradient: ``dq/dx = 1[0 <= x <= 1]`` (straight through the rounding, zero where clipped).
    Suited to non-negative (ReLU) activations.
    """

    def __init__(self, bits: int) -> None:
        if bits not in DOREFA_BITS:
            raise ValueError(f"DoReFa activations need 2..8 bits, got {bits}")
        super().__init__(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return clipped_round_ste(x, self.bits)
