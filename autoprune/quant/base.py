"""The quantizer base class, the two registries, and full precision (the identity).

A quantizer is a parameter-free ``nn.Module`` (so hooks and ``print(model)`` show it) with
``forward(x) -> x_q`` and two storage figures used by the size metrics: ``bits`` per value, and
``extra_bits_per_output_channel`` for anything stored once per output channel of a weight
(XNOR's 32-bit scale). A new quantizer is one class registered in ``WEIGHT_QUANTIZERS`` or
``ACTIVATION_QUANTIZERS`` (``tests/quant/test_contracts.py`` then asks for its reference
values and gradient).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from autoprune.registry import Registry

WEIGHT_QUANTIZERS: Registry[type[Quantizer]] = Registry("weight quantizer")
ACTIVATION_QUANTIZERS: Registry[type[Quantizer]] = Registry("activation quantizer")


def _next_float(value: float, toward: float, dtype: torch.dtype) -> float:
    """The neighbour of ``value`` in ``dtype`` on the side of ``toward`` (``value`` normal or 0).

    Plain arithmetic on ``torch.finfo``, not ``torch.nextafter(...).item()``, so it is a
    constant under ``torch.compile`` instead of a graph break.
    """
    info = torch.finfo(dtype)
    if value == 0:
        return math.copysign(info.tiny * info.eps, toward)  # the smallest subnormal
    exponent = math.frexp(abs(value))[1] - 1  # |value| = m * 2**exponent, 1 <= m < 2
    spacing = 2.0**exponent * info.eps  # between |value| and the next float away from 0
    moving_away_from_zero = (toward > value) == (value > 0)
    if not moving_away_from_zero and abs(value) == 2.0**exponent:
        spacing /= 2  # below a power of two the floats are twice as dense
    return value + math.copysign(spacing, toward - value)


def clipped_ste_grad(grad: torch.Tensor, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``grad * 1[low <= x <= high]`` in one pass, reading the saved input ``x``.

    ``hardtanh_backward`` keeps ``grad`` where ``min < x < max`` (strict), so the bounds are
    moved one float outwards in ``x``'s dtype, which makes the interval closed exactly.
    Saving ``x`` instead of a boolean mask spares the forward two passes and an allocation
    (measured in benchmarks/README.md). In the bundled networks ``x`` is the output of an
    in-place ReLU/Hardtanh, which autograd keeps for that activation's own backward, or a
    BatchNorm output that such an activation would have overwritten, so no memory is added;
    elsewhere it costs 4 bytes per element instead of the mask's 1. A model that changes ``x``
    in place after the quantizer read it gets autograd's error, not a wrong gradient.
    """
    below = _next_float(low, low - 1.0, x.dtype)
    above = _next_float(high, high + 1.0, x.dtype)
    return hardtanh_grad(grad, x, below, above)


def hardtanh_grad(grad: torch.Tensor, saved: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``grad * 1[low < saved < high]`` in one pass, laid out like ``saved``.

    ``aten.hardtanh_backward`` lays its result out like ``grad``. Gradients from a global
    average pool arrive contiguous (NCHW) while the network runs channels-last, and the
    BatchNorm backward that comes next takes its fast path only when its gradient and its
    saved input share a layout: with ``grad``'s layout it ran twice as long, which cost a
    channels-last BNN ResNet-20 about 10 % of its training step (benchmarks/README.md).
    """
    out = torch.empty_like(saved)
    return torch.ops.aten.hardtanh_backward.grad_input(grad, saved, low, high, grad_input=out)


class Quantizer(nn.Module):
    """Base: ``bits`` is what one value costs in storage; 32 means not quantized.

    ``extra_bits_per_output_channel``: storage a weight quantizer adds per output channel on
    top of ``bits`` per weight (0 unless the quantizer keeps a per-channel scale).
    """

    bits: int = 32
    extra_bits_per_output_channel: int = 0

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
    """Full precision: ``q = x``, gradient ``dq/dx = 1``; 32 bits per value."""

    def __init__(self, bits: int = 32) -> None:
        super().__init__(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
