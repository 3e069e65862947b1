"""The quantizer base class, the two registries, and full precision (the identity).

A quantizer is a parameter-free ``nn.Module`` (so hooks and ``print(model)`` show it) with
``forward(x) -> x_q`` and two storage figures used by the size metrics: ``bits`` per value, and
``extra_bits_per_output_channel`` for anything stored once per output channel of a weight
(XNOR's 32-bit scale). A new quantizer is one class registered in ``WEIGHT_QUANTIZERS`` or
``ACTIVATION_QUANTIZERS`` (``tests/quant/test_contracts.py`` then asks for its reference
values and gradient).
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.registry import Registry

WEIGHT_QUANTIZERS: Registry[type[Quantizer]] = Registry("weight quantizer")
ACTIVATION_QUANTIZERS: Registry[type[Quantizer]] = Registry("activation quantizer")


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
