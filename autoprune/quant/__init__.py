"""Fake quantization for training low-precision networks: quantizers, layers, the spec."""

from autoprune.quant.convert import quantize_
from autoprune.quant.layers import (
    SUPPORTED_BITS,
    QuantConv2d,
    QuantLinear,
    QuantSpec,
    input_bits,
    weight_bits,
)
from autoprune.quant.quantizers import (
    ACTIVATION_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    DoReFaActivation,
    DoReFaWeight,
    Identity,
    Quantizer,
    Sign,
    round_ste,
)

__all__ = [
    "ACTIVATION_QUANTIZERS",
    "SUPPORTED_BITS",
    "WEIGHT_QUANTIZERS",
    "DoReFaActivation",
    "DoReFaWeight",
    "Identity",
    "QuantConv2d",
    "QuantLinear",
    "QuantSpec",
    "Quantizer",
    "Sign",
    "input_bits",
    "quantize_",
    "round_ste",
    "weight_bits",
]
