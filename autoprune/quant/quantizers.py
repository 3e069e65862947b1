"""Every quantizer, in one import: loading this module fills both registries.

Families live in their own files: ``base`` (the base class, registries, full precision),
``binary`` (BNN sign, XNOR), ``dorefa`` (DoReFa weights and activations) and ``uniform``
(signed k-bit activations for the edge layers of BNN networks).
"""

from __future__ import annotations

from autoprune.quant.base import ACTIVATION_QUANTIZERS, WEIGHT_QUANTIZERS, Identity, Quantizer
from autoprune.quant.binary import Sign, XNORWeight, binary_sign
from autoprune.quant.dorefa import DoReFaActivation, DoReFaWeight, clipped_round_ste, round_ste
from autoprune.quant.uniform import SignedUniformActivation

__all__ = [
    "ACTIVATION_QUANTIZERS",
    "WEIGHT_QUANTIZERS",
    "DoReFaActivation",
    "DoReFaWeight",
    "Identity",
    "Quantizer",
    "Sign",
    "SignedUniformActivation",
    "XNORWeight",
    "binary_sign",
    "clipped_round_ste",
    "round_ste",
]
