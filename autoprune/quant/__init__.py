"""Fake quantization for training low-precision networks: quantizers, layers, the spec."""

from autoprune.quant.convert import quantize_
from autoprune.quant.layers import (
    InplaceHardtanh,
    QuantConv2d,
    QuantLinear,
    input_bits,
    weight_bits,
    weight_scale_bits,
)
from autoprune.quant.mixed import (
    bit_layers,
    check_bit_choices,
    layer_bits,
    parse_bit_choices,
    set_layer_bits_,
    takes_mixed_bits,
)
from autoprune.quant.quantizers import (
    ACTIVATION_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    DoReFaActivation,
    DoReFaWeight,
    Identity,
    Quantizer,
    Sign,
    SignedUniformActivation,
    XNORWeight,
    round_ste,
)
from autoprune.quant.spec import (
    EDGE_CHOICES,
    EDGE_NET,
    SUPPORTED_BITS,
    QuantSpec,
    parse_edge_bits,
)

__all__ = [
    "ACTIVATION_QUANTIZERS",
    "EDGE_CHOICES",
    "EDGE_NET",
    "SUPPORTED_BITS",
    "WEIGHT_QUANTIZERS",
    "DoReFaActivation",
    "DoReFaWeight",
    "Identity",
    "InplaceHardtanh",
    "QuantConv2d",
    "QuantLinear",
    "QuantSpec",
    "Quantizer",
    "Sign",
    "SignedUniformActivation",
    "XNORWeight",
    "bit_layers",
    "check_bit_choices",
    "input_bits",
    "layer_bits",
    "parse_bit_choices",
    "parse_edge_bits",
    "quantize_",
    "round_ste",
    "set_layer_bits_",
    "takes_mixed_bits",
    "weight_bits",
    "weight_scale_bits",
]
