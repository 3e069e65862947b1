"""A signed uniform activation quantizer on [-1, 1], for the inputs of BNN edge layers.

BNN networks use Hardtanh, so their activations lie in [-1, 1]; DoReFa's activation
quantizer clips at 0 and would throw the negative half away. This one maps [-1, 1] onto
[0, 1], applies DoReFa's ``quantize_k`` and maps back.
"""

from __future__ import annotations

import torch

from autoprune.quant.base import ACTIVATION_QUANTIZERS, Quantizer
from autoprune.quant.dorefa import DOREFA_BITS, clipped_round_ste


@ACTIVATION_QUANTIZERS.register("signed")
class SignedUniformActivation(Quantizer):
    """k-bit uniform quantizer on [-1, 1]: ``q = 2 * quantize_k((clip(x, -1, 1) + 1) / 2) - 1``.

    Values: {-1 + 2j/(2^k - 1), j = 0..2^k - 1} (the DoReFa weight grid). Gradient: the
    clipped STE ``dq/dx = 1[|x| <= 1]``.
    """

    def __init__(self, bits: int) -> None:
        if bits not in DOREFA_BITS:
            raise ValueError(f"signed uniform activations need 2..8 bits, got {bits}")
        super().__init__(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x/2 + 1/2 is exact at -1 and 1 in floating point, so the mask is exactly |x| <= 1
        return clipped_round_ste(x * 0.5 + 0.5, self.bits) * 2 - 1
