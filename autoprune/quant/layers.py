"""Quantized layers and the spec that says how a network is quantized.

``QuantConv2d`` / ``QuantLinear`` subclass the torch layers, so anything that understands a
``Conv2d`` (Torch-Pruning, ``state_dict`` loading, ONNX export) understands them too. They add
two parameter-free children: ``input_quantizer`` (applied to the incoming activation) and
``weight_quantizer`` (applied to the latent full-precision weight on every forward).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autoprune.errors import ConfigError
from autoprune.quant.quantizers import ACTIVATION_QUANTIZERS, WEIGHT_QUANTIZERS, Quantizer

SUPPORTED_BITS = (1, 2, 3, 4, 5, 6, 7, 8, 32)


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize a network: scheme and bit-width of weights and activations.

    ``edge_bits`` is the precision of the first conv and the classifier (32 = full precision,
    the literature's default); the raw image entering the first conv is never quantized.
    """

    weight_scheme: str = "fp"
    wbits: int = 32
    activation_scheme: str = "fp"
    abits: int = 32
    edge_bits: int = 32

    @classmethod
    def from_bits(cls, bits: int) -> QuantSpec:
        """``1``: BNN; ``2..8``: DoReFa with k-bit weights and activations; ``32``: float."""
        if bits not in SUPPORTED_BITS:
            raise ConfigError(
                f"unsupported bit-width {bits}: use 1 (BNN), 2..8 (DoReFa) or 32 (full precision)"
            )
        if bits == 32:
            return cls()
        scheme = "bnn" if bits == 1 else "dorefa"
        return cls(weight_scheme=scheme, wbits=bits, activation_scheme=scheme, abits=bits)

    @property
    def label(self) -> str:
        """Short human name: ``fp32``, ``bnn``, ``w2a2``."""
        if self.wbits == 32 and self.abits == 32:
            return "fp32"
        if self.weight_scheme == "bnn" and self.activation_scheme == "bnn":
            return "bnn"
        return f"w{self.wbits}a{self.abits}"

    @property
    def binary(self) -> bool:
        return self.activation_scheme == "bnn"

    def weight_quantizer(self, edge: bool = False) -> Quantizer:
        if edge and self.edge_bits == 32:
            return WEIGHT_QUANTIZERS.get("fp")()
        return WEIGHT_QUANTIZERS.get(self.weight_scheme)(self.wbits)

    def input_quantizer(self) -> Quantizer:
        return ACTIVATION_QUANTIZERS.get(self.activation_scheme)(self.abits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantSpec:
        return cls(**data)


class _Quantized(nn.Module):
    """Adds the two quantizer children to a torch layer (cooperative ``__init__``)."""

    weight: torch.Tensor

    def __init__(
        self,
        *args: Any,
        weight_quantizer: Quantizer | None = None,
        input_quantizer: Quantizer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        identity = WEIGHT_QUANTIZERS.get("fp")
        self.weight_quantizer = weight_quantizer if weight_quantizer is not None else identity()
        self.input_quantizer = input_quantizer if input_quantizer is not None else identity()

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quantizer(self.weight)


class QuantConv2d(_Quantized, nn.Conv2d):
    """``nn.Conv2d`` that convolves ``input_quantizer(x)`` with ``weight_quantizer(weight)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quantizer(x), self.quantized_weight(), self.bias)


class QuantLinear(_Quantized, nn.Linear):
    """``nn.Linear`` on ``input_quantizer(x)`` with ``weight_quantizer(weight)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.quantized_weight(), self.bias)


QuantLayer = QuantConv2d | QuantLinear


def weight_bits(layer: nn.Module) -> int:
    """Storage bits of one weight of ``layer`` (32 for plain torch layers)."""
    quantizer = getattr(layer, "weight_quantizer", None)
    return quantizer.bits if isinstance(quantizer, Quantizer) else 32


def input_bits(layer: nn.Module) -> int:
    """Bits of one input activation of ``layer`` (32 for plain torch layers)."""
    quantizer = getattr(layer, "input_quantizer", None)
    return quantizer.bits if isinstance(quantizer, Quantizer) else 32
